"""Row shapes: recognise what kind of fine-tuning row a JSON object is and reduce it to chat turns.

Kept apart from the file reading in `clearapi.datasets` so the rules for each shape sit in one
place and can be tested with plain dicts. A row that breaks a rule raises `RowProblem` naming the
field (``messages[2].role``, ``output``) and the reason in plain English; the reader turns that into
a `Reject`.

Tool use is flattened to text because every judge prompt and every provider accepts text turns,
while a ``tool`` message without its matching ``tool_calls`` is a 400 on OpenAI: an assistant tool
call becomes ``[tool call] name(arguments)`` and a tool result becomes a user turn
``[tool result] ...``. The original structure stays in `Example.raw`, which is what the writers
copy out, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson

from clearapi.errors import ConfigError

__all__ = [
    "ALPACA",
    "ANTHROPIC",
    "COLUMNS",
    "CSV",
    "FORMATS",
    "OPENAI_CHAT",
    "PROMPT_COMPLETION",
    "QUESTION_ANSWER",
    "SHAREGPT",
    "UNKNOWN_SHAPE",
    "Columns",
    "Normalised",
    "RowProblem",
    "Turn",
    "canonical_format",
    "consumed_keys",
    "describe",
    "detect_shape",
    "family",
    "kind_of",
    "normalise",
]

OPENAI_CHAT: Final = "openai_chat"
ANTHROPIC: Final = "anthropic"
ALPACA: Final = "alpaca"
PROMPT_COMPLETION: Final = "prompt_completion"
CSV: Final = "csv"
COLUMNS: Final = "columns"
SHAREGPT: Final = "sharegpt"
QUESTION_ANSWER: Final = "question_answer"
FORMATS: Final = (OPENAI_CHAT, ANTHROPIC, ALPACA, PROMPT_COMPLETION, CSV, COLUMNS, SHAREGPT, QUESTION_ANSWER)

#: the reject reason for a row whose keys announce no known shape; names the way out
UNKNOWN_SHAPE: Final = (
    "not a recognised row shape: expected 'messages' (chat), 'conversations' (ShareGPT), "
    "'instruction'/'output' (Alpaca), 'prompt'/'completion' or 'question'/'answer' keys; "
    "for other keys name them with --prompt-column and --response-column")

_ALIASES: Final[dict[str, str]] = {
    "openai": OPENAI_CHAT, "chat": OPENAI_CHAT, "messages": OPENAI_CHAT, "openai-chat": OPENAI_CHAT,
    "bedrock": ANTHROPIC, "claude": ANTHROPIC,
    "prompt-completion": PROMPT_COMPLETION, "completion": PROMPT_COMPLETION,
    "tsv": CSV,
    "share_gpt": SHAREGPT, "conversations": SHAREGPT,
    "qa": QUESTION_ANSWER, "question-answer": QUESTION_ANSWER,
}

_LABELS: Final[dict[str, str]] = {
    OPENAI_CHAT: "OpenAI chat ('messages')",
    ANTHROPIC: "Anthropic/Bedrock ('system' + 'messages')",
    ALPACA: "Alpaca ('instruction'/'input'/'output')",
    PROMPT_COMPLETION: "prompt/completion",
    CSV: "CSV",
    COLUMNS: "named columns",
    SHAREGPT: "ShareGPT ('conversations' with 'from'/'value')",
    QUESTION_ANSWER: "question/answer",
}

_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TEXT_ROLES: Final = frozenset({"system", "developer", "user", "assistant"})
_NON_TEXT_PARTS: Final = frozenset({
    "image", "image_url", "input_image", "input_audio", "audio", "file", "document", "video",
    "thinking", "redacted_thinking", "refusal",
})


class RowProblem(Exception):
    """One rule a row breaks: `field` is a path into the row (or None for the whole row)."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class Columns(NamedTuple):
    """Which keys hold the prompt, the response and the optional system prompt (CSV or JSON)."""

    prompt: str
    response: str
    system: str | None = None


Turn = dict[str, str]
"""A chat turn as a plain dict; `Example` validation turns the list into `Message`s in one call
(pydantic-core does that far faster than building each `Message` in Python)."""


class Normalised(NamedTuple):
    messages: list[Turn]
    weight: int | None


def canonical_format(name: str | None) -> str | None:
    """Map a user-given format name (or alias) to one of `FORMATS`; None/"auto" means detect."""
    if name is None:
        return None
    key = name.strip().lower().replace(" ", "_")
    if key in ("", "auto", "jsonl", "json"):
        return None
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise ConfigError(f"unknown input format {name!r}; expected one of: auto, {', '.join(FORMATS)}")
    return key


def describe(fmt: str) -> str:
    return _LABELS.get(fmt, fmt)


def family(fmt: str) -> str:
    """Shapes a file may mix: OpenAI and Anthropic rows are both lists of messages."""
    return "messages" if fmt in (OPENAI_CHAT, ANTHROPIC) else fmt


def detect_shape(obj: Mapping[str, Any]) -> str | None:
    """The shape a row's keys announce, or None if they announce none we know."""
    if "messages" in obj:
        if "system" in obj or "schemaVersion" in obj or "anthropic_version" in obj:
            return ANTHROPIC
        return OPENAI_CHAT
    if "instruction" in obj or ("output" in obj and "input" in obj):
        return ALPACA
    if "prompt" in obj and "response" in obj and "completion" not in obj:
        return COLUMNS  # prompt/response: the default named columns
    if "prompt" in obj or "completion" in obj:
        return PROMPT_COMPLETION
    if "conversations" in obj:
        return SHAREGPT
    if "question" in obj and "answer" in obj:
        return QUESTION_ANSWER
    return None


_CONSUMED: Final[dict[str, tuple[str, ...]]] = {
    OPENAI_CHAT: ("messages", "system"),
    ANTHROPIC: ("messages", "system", "schemaVersion", "anthropic_version"),
    ALPACA: ("instruction", "input", "output", "system", "context", "response"),
    PROMPT_COMPLETION: ("prompt", "completion", "system"),
    SHAREGPT: ("conversations", "system"),
    QUESTION_ANSWER: ("question", "answer", "system"),
}


def consumed_keys(fmt: str, columns: Columns | None = None) -> tuple[str, ...]:
    """Keys a format turns into messages; every other key of the row is carried over to outputs."""
    if fmt in (CSV, COLUMNS):
        if columns is None:
            return ("prompt", "response", "system")
        return tuple(k for k in columns if k is not None)
    return _CONSUMED.get(fmt, ())


def kind_of(value: object) -> str:
    """A JSON type name for error messages (`a string`, `null`, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def normalise(obj: Mapping[str, Any], fmt: str, columns: Columns | None = None) -> Normalised:
    """Reduce a row of shape `fmt` to chat turns ending with the assistant response under review."""
    if fmt in (OPENAI_CHAT, ANTHROPIC):
        return _chat_row(obj)
    if fmt == ALPACA:
        return _alpaca_row(obj)
    if fmt == PROMPT_COMPLETION:
        return _prompt_completion_row(obj)
    if fmt in (CSV, COLUMNS):
        return _columns_row(obj, columns or Columns("prompt", "response"))
    if fmt == SHAREGPT:
        return _sharegpt_row(obj)
    if fmt == QUESTION_ANSWER:
        return _columns_row(obj, Columns("question", "answer", "system"))
    raise ConfigError(f"unknown input format {fmt!r}")


# --- shared checks ---------------------------------------------------------------------------------

def _finish(messages: list[Turn], where: str) -> list[Turn]:
    """Check the turn structure every shape must end up with."""
    last = messages[-1]["role"]
    if last != "assistant":
        if not any(m["role"] == "assistant" for m in messages):
            raise RowProblem(where, "has no assistant turn, so there is no response to review")
        raise RowProblem(where, f"the last turn is {last!r}; it must be the assistant response under review")
    if not any(m["role"] == "user" for m in messages[:-1]):
        raise RowProblem(where, "has no user turn before the assistant response")
    return messages


def _required_text(obj: Mapping[str, Any], key: str, *, field: str | None = None) -> str:
    field = field or key
    if key not in obj or obj[key] is None:
        raise RowProblem(field, "is missing")
    value = obj[key]
    if not isinstance(value, str):
        raise RowProblem(field, f"must be a string, got {kind_of(value)}")
    if not value.strip():
        raise RowProblem(field, "is empty")
    return value


def _optional_text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowProblem(key, f"must be a string, got {kind_of(value)}")
    return value if value.strip() else None


def _system_messages(obj: Mapping[str, Any]) -> list[Turn]:
    """A top-level `system` (Anthropic string or blocks, Bedrock `[{"text": ...}]`)."""
    if obj.get("system") is None:
        return []
    text, _ = _content_text(obj["system"], "system")
    return [_msg("system", text)] if text.strip() else []


# --- chat (OpenAI and Anthropic/Bedrock) -------------------------------------------------------------

def _chat_row(obj: Mapping[str, Any]) -> Normalised:
    if "messages" not in obj or obj["messages"] is None:
        raise RowProblem("messages", "is missing")
    messages = _message_list(obj["messages"], "messages")
    messages = _system_messages(obj) + messages
    weight = _top_level_weight(obj)
    final = obj["messages"][-1]
    if isinstance(final, dict) and "weight" in final:
        weight = final["weight"]
    return Normalised(_finish(messages, "messages"), weight)


def _top_level_weight(obj: Mapping[str, Any]) -> int | None:
    weight = obj.get("weight")
    if weight is None:
        return None
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise RowProblem("weight", f"must be an integer, got {kind_of(weight)}")
    return weight


def _message_list(value: object, where: str) -> list[Turn]:
    if not isinstance(value, list):
        raise RowProblem(where, f"must be an array of messages, got {kind_of(value)}")
    if not value:
        raise RowProblem(where, "is an empty array")
    out: list[Turn] = []
    last = len(value) - 1
    for i, item in enumerate(value):
        # Fast path for the common `{"role": ..., "content": "text"}`; anything else gets every check.
        if type(item) is dict and len(item) == 2:
            role, content = item.get("role"), item.get("content")
            if type(content) is str and role in _TEXT_ROLES and content.strip():
                out.append(item)
                continue
        out.append(_message(item, f"{where}[{i}]", is_last=i == last))
    return out


def _msg(role: str, content: str) -> Turn:
    return {"role": role, "content": content}


def _message(item: object, where: str, *, is_last: bool) -> Turn:
    if not isinstance(item, dict):
        raise RowProblem(where, f"must be an object with 'role' and 'content', got {kind_of(item)}")
    if "role" not in item or item["role"] is None:
        raise RowProblem(f"{where}.role", "is missing")
    role = item["role"]
    if not isinstance(role, str):
        raise RowProblem(f"{where}.role", f"must be a string, got {kind_of(role)}")
    if role not in _ROLES:
        raise RowProblem(f"{where}.role",
                         f"unknown role {role!r}; expected system, developer, user, assistant or tool")
    if "weight" in item and (isinstance(item["weight"], bool) or item["weight"] not in (0, 1)):
        raise RowProblem(f"{where}.weight", f"must be 0 or 1, got {item['weight']!r}")
    calls = _tool_calls_text(item) if role == "assistant" else ""
    content = item.get("content")
    if content is None:
        if calls:
            if is_last:
                raise RowProblem(f"{where}.content", "the final assistant turn only calls tools; "
                                 "there is no text response to review")
            return _msg("assistant", calls)
        raise RowProblem(f"{where}.content", "is missing")
    text, non_text = _content_text(content, f"{where}.content")
    if not text.strip():
        if calls and not is_last:
            return _msg("assistant", calls)
        if calls:
            raise RowProblem(f"{where}.content", "the final assistant turn only calls tools; "
                             "there is no text response to review")
        if non_text:
            raise RowProblem(f"{where}.content", "has no text, only non-text parts (images, audio, files); "
                             "clearapi can only review text")
        raise RowProblem(f"{where}.content", "is empty")
    if role in ("tool", "function"):
        name = item.get("name")
        label = f"[tool result {name}]" if isinstance(name, str) and name else "[tool result]"
        return _msg("user", f"{label} {text}")
    if calls and not is_last:
        text = f"{text}\n{calls}"
    return _msg(role, text)


def _content_text(content: object, where: str) -> tuple[str, bool]:
    """Text of a string or a list of parts/blocks, and whether non-text parts were skipped."""
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        raise RowProblem(where, f"must be a string or an array of content parts, got {kind_of(content)}")
    texts: list[str] = []
    non_text = False
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise RowProblem(here, f"must be a content object, got {kind_of(part)}")
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            text = part.get("text")
            if not isinstance(text, str):
                raise RowProblem(f"{here}.text", f"must be a string, got {kind_of(text)}")
            texts.append(text)
        elif kind == "tool_use" or "toolUse" in part:
            texts.append(_render_call(part.get("toolUse", part), "input"))
        elif kind == "tool_result" or "toolResult" in part:
            body = part.get("toolResult", part)
            inner = body.get("content") if isinstance(body, dict) else None
            result = _content_text(inner, f"{here}.content")[0] if inner is not None else ""
            texts.append(f"[tool result] {result}".rstrip())
        else:
            non_text = True
    return "\n".join(t for t in texts if t), non_text


def _tool_calls_text(item: Mapping[str, Any]) -> str:
    calls = item.get("tool_calls")
    rendered: list[str] = []
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                fn = call.get("function")
                rendered.append(_render_call(fn if isinstance(fn, dict) else call, "arguments"))
    legacy = item.get("function_call")
    if isinstance(legacy, dict):
        rendered.append(_render_call(legacy, "arguments"))
    return "\n".join(rendered)


def _render_call(call: object, args_key: str) -> str:
    if not isinstance(call, dict):
        return "[tool call]"
    name = call.get("name")
    args = call.get(args_key)
    if not isinstance(args, str):
        args = orjson.dumps(args).decode() if args is not None else ""
    return f"[tool call] {name if isinstance(name, str) else '?'}({args})"


# --- Alpaca, prompt/completion, named columns ----------------------------------------------------------

def _alpaca_row(obj: Mapping[str, Any]) -> Normalised:
    """Alpaca (`instruction`/`input`/`output`), also Dolly's `context`/`response` spelling."""
    out_key = "output" if "output" in obj or "response" not in obj else "response"
    in_key = "input" if "input" in obj or "context" not in obj else "context"
    instruction = _optional_text(obj, "instruction")
    extra = _optional_text(obj, in_key)
    if instruction is None and extra is None:
        if "instruction" in obj and isinstance(obj["instruction"], str):
            raise RowProblem("instruction", "is empty")
        raise RowProblem("instruction", "is missing")
    user = "\n\n".join(t for t in (instruction, extra) if t)
    response = _required_text(obj, out_key)
    system = _optional_text(obj, "system")
    messages = [_msg("system", system)] if system else []
    messages += [_msg("user", user), _msg("assistant", response)]
    return Normalised(_finish(messages, out_key), _top_level_weight(obj))


def _prompt_completion_row(obj: Mapping[str, Any]) -> Normalised:
    """`prompt`/`completion` as strings, or TRL's conversational form (arrays of messages)."""
    messages = _system_messages(obj)
    prompt = obj.get("prompt")
    if isinstance(prompt, list):
        messages += _message_list(prompt, "prompt")
    else:
        messages.append(_msg("user", _required_text(obj, "prompt")))
    completion = obj.get("completion")
    if isinstance(completion, list):
        turns = _message_list(completion, "completion")
        for i, turn in enumerate(turns):
            if turn["role"] != "assistant":
                raise RowProblem(f"completion[{i}].role", f"must be 'assistant', got {turn['role']!r}")
        messages += turns
    else:
        messages.append(_msg("assistant", _required_text(obj, "completion")))
    return Normalised(_finish(messages, "prompt"), _top_level_weight(obj))


def _columns_row(obj: Mapping[str, Any], columns: Columns) -> Normalised:
    prompt = _required_text(obj, columns.prompt)
    response = _required_text(obj, columns.response)
    messages: list[Turn] = []
    if columns.system is not None:
        system = _optional_text(obj, columns.system)
        if system:
            messages.append(_msg("system", system))
    messages += [_msg("user", prompt), _msg("assistant", response)]
    return Normalised(messages, None)


# --- ShareGPT -------------------------------------------------------------------------------------------

#: ShareGPT speaker names (FastChat, Axolotl, LLaMA-Factory spellings) and the chat role each one is
_SHAREGPT_ROLES: Final[dict[str, str]] = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system",
    "function_call": "assistant", "observation": "tool", "tool": "tool", "function": "tool",
}


def _sharegpt_row(obj: Mapping[str, Any]) -> Normalised:
    """`conversations`: a list of ``{"from": "human"|"gpt"|..., "value": text}`` turns."""
    value = obj.get("conversations")
    if value is None:
        raise RowProblem("conversations", "is missing")
    if not isinstance(value, list):
        raise RowProblem("conversations", f"must be an array of turns, got {kind_of(value)}")
    if not value:
        raise RowProblem("conversations", "is an empty array")
    messages = _system_messages(obj)
    for i, turn in enumerate(value):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RowProblem(where, f"must be an object with 'from' and 'value', got {kind_of(turn)}")
        speaker = turn.get("from", turn.get("role"))
        if not isinstance(speaker, str):
            raise RowProblem(f"{where}.from", "is missing" if speaker is None else
                             f"must be a string, got {kind_of(speaker)}")
        role = _SHAREGPT_ROLES.get(speaker.lower())
        if role is None:
            raise RowProblem(f"{where}.from", f"unknown speaker {speaker!r}; expected human, gpt or system")
        key = "value" if "value" in turn or "content" not in turn else "content"
        text = _required_text(turn, key, field=f"{where}.{key}")
        if speaker.lower() == "function_call":
            text = f"[tool call] {text}"
        if role == "tool":
            role, text = "user", f"[tool result] {text}"
        messages.append(_msg(role, text))
    return Normalised(_finish(messages, "conversations"), _top_level_weight(obj))
