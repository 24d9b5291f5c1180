"""The cassette format: round trip, matching rules, and that secrets never reach disk."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from clearapi_testing.cassettes import (
    Cassette,
    CassettePlayer,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    RecordedWith,
    load_cassette,
    request_key,
    save_cassette,
)

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


def _cassette(*interactions: Interaction) -> Cassette:
    return Cassette(recorded_with=RecordedWith(server="llama_cpp.server", model="smollm2",
                                               versions={"openai": "3.57.0"}),
                    how="test fixture", rerecord_command="python -m tests.rerecord",
                    interactions=list(interactions))


def _inter(body: dict[str, object], answer: str, status: int = 200,
           headers: dict[str, str] | None = None) -> Interaction:
    return Interaction(request=RecordedRequest(method="POST", path="/v1/chat/completions", body=body),
                       response=RecordedResponse(status=status, headers=headers or {},
                                                 body={"answer": answer}))


def test_round_trip(tmp_path: Path) -> None:
    c = _cassette(_inter({"model": "m", "messages": []}, "hello"))
    path = save_cassette(tmp_path / "sub" / "c.json", c)
    loaded = load_cassette(path)
    assert loaded == c
    assert loaded.format_version == 1
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_key_ignores_key_order_and_volatile_fields() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "user": "alice", "metadata": {"a": 1}}
    b = {"messages": [{"role": "user", "content": "x"}], "model": "m"}
    assert request_key("post", "/v1/chat/completions", a) == request_key("POST", "/v1/chat/completions?x=1", b)
    assert request_key("POST", "/v1/chat/completions", b) != request_key("POST", "/v1/messages", b)
    assert request_key("POST", "/v1/chat/completions", b) != request_key(
        "POST", "/v1/chat/completions", {**b, "temperature": 0})


def test_save_refuses_secret_headers(tmp_path: Path) -> None:
    for name in ("Authorization", "x-api-key", "api-key", "Cookie"):
        c = _cassette(_inter({"model": "m"}, "x", headers={name: "secret"}))
        with pytest.raises(ValueError, match="secret header"):
            save_cassette(tmp_path / "c.json", c)
    assert not (tmp_path / "c.json").exists()


def test_save_redacts_key_looking_strings(tmp_path: Path) -> None:
    c = _cassette(_inter({"model": "m", "note": f"key {KEY}"}, f"I saw {KEY}",
                         headers={"x-debug": f"Bearer {KEY}"}))
    path = save_cassette(tmp_path / "c.json", c)
    text = path.read_text()
    assert KEY not in text
    assert "***" in text


def test_player_replays_in_order_then_repeats_last() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    player = CassettePlayer([_cassette(_inter(body, "one"), _inter(body, "two"))])
    got = [player.lookup("POST", "/v1/chat/completions", body) for _ in range(3)]
    assert [r.body["answer"] for r in got if r is not None] == ["one", "two", "two"]
    assert player.lookup("POST", "/v1/chat/completions", {**body, "n": 2}) is None
    player.rewind()
    first = player.lookup("POST", "/v1/chat/completions", body)
    assert first is not None and first.body["answer"] == "one"


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_cassette(bad)
    old = tmp_path / "old.json"
    old.write_bytes(orjson.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="format_version"):
        load_cassette(old)
    missing = tmp_path / "nokeys.json"
    missing.write_bytes(orjson.dumps({"format_version": 1, "interactions": []}))
    with pytest.raises(ValueError, match=r"nokeys\.json: invalid cassette"):
        load_cassette(missing)
