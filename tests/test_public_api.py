"""The public surface: everything users need is importable from `clearapi`, and `__all__` is complete."""

from __future__ import annotations

import inspect

import clearapi
import clearapi.errors as errors


def test_all_is_sorted_and_complete() -> None:
    exported = set(clearapi.__all__)
    public = {
        name
        for name, value in vars(clearapi).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", "clearapi").startswith("clearapi")
    }
    assert public <= exported | {"annotations"}, f"public names missing from __all__: {public - exported}"
    for name in exported:
        assert hasattr(clearapi, name), name
    # plain code-point order (ruff's RUF022 keeps it so); a case-insensitive key would tie
    # `Score` (the record) with `score` (the function) and make the check depend on hashing
    assert clearapi.__all__ == sorted(set(clearapi.__all__))


def test_error_tree_matches_design() -> None:
    assert issubclass(clearapi.RateLimited, clearapi.ClearAPIError)
    assert issubclass(clearapi.TransientError, clearapi.ClearAPIError)
    for fatal in (clearapi.AuthError, clearapi.QuotaExhausted, clearapi.BadRequest, clearapi.InputError,
                  clearapi.BudgetExceeded, clearapi.CapabilityError, clearapi.ConfigError):
        assert issubclass(fatal, clearapi.FatalError)
    assert not issubclass(clearapi.RateLimited, clearapi.FatalError)
    assert not issubclass(clearapi.TransientError, clearapi.FatalError)


def test_error_messages_never_carry_keys() -> None:
    key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd"
    exc = clearapi.AuthError(f"401 from openai: Incorrect API key provided: {key}")
    assert key not in str(exc)
    assert "401 from openai" in str(exc)
    assert errors.redact(f"Authorization: Bearer {key}") == "Authorization: ***"
    assert errors.redact("custom secret hunter2x", "hunter2x") == "custom secret ***"


def test_input_error_names_file_line_and_field() -> None:
    exc = clearapi.InputError("not valid JSON", file="data.jsonl", line=7, field="messages")
    assert str(exc) == "data.jsonl:7: not valid JSON (field 'messages')"
    assert (exc.file, exc.line, exc.field) == ("data.jsonl", 7, "messages")


def test_redact_leaves_paths_and_words_alone() -> None:
    path = "/tmp/pytest-of-root/test_input_error_message_names_0/some_really_long_directory_name_over_forty/x.jsonl"
    assert errors.redact(path) == path
    assert errors.redact("for_example_this_word task-classifier") == "for_example_this_word task-classifier"
    assert errors.redact("key=sk-ant-api03-abcdefghijklmnop end") == "key=*** end"
