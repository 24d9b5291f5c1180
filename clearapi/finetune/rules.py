"""Each fine-tuning service's published data rules, as data, and the per-record checks.

Each rule names its source by a tag (``[oa-sft]``, ``[br-cook]``, ...); the sources, when
they were read and how sure each rule is are in docs/finetune.md. Rules read from memory
rather than re-read in the docs are warnings unless noted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "RULE_IDS",
    "SERVICE_RULES",
    "Finding",
    "ModelLimit",
    "ServiceRules",
    "Severity",
    "check_record",
    "rules_for",
]

Severity = Literal["error", "warning"]
Kind = Literal["chat", "bedrock", "nova", "preference"]

#: Every rule id a finding can carry, with what it means (shown by `validate --list-rules`).
RULE_IDS: dict[str, str] = {
    "json": "the line is not valid JSON",
    "utf8": "the line is not valid UTF-8",
    "bom": "the file starts with a UTF-8 byte-order mark",
    "blank-line": "an empty line inside the file",
    "not-object": "a line must be one JSON object",
    "missing-key": "a required key is missing",
    "type": "a value has the wrong JSON type",
    "unknown-key": "a key the service does not recognise",
    "role": "a role the service does not accept",
    "content-type": "content must be text (or the service's content parts)",
    "content-empty": "content is empty",
    "weight-value": "weight must be 0 or 1",
    "weight-role": "weight is only allowed on assistant messages",
    "no-assistant": "the example has no assistant message to train on",
    "nothing-trained": "every assistant message has weight 0",
    "role-order": "roles are not in the order the service requires",
    "last-not-assistant": "messages after the last assistant turn are not trained on",
    "too-few-messages": "fewer messages than the service requires",
    "preference-output": "a preference output must be exactly one assistant message",
    "reserved-word": "a prompt holds a keyword the service reserves (Amazon Nova: User:, Bot:, [EOS]...)",
    "preference-identical": "preferred and non-preferred outputs are identical",
    "example-tokens": "the example is longer than the model's training context",
    "min-examples": "fewer examples than the service's minimum",
    "max-examples": "more examples than the service's maximum",
    "file-size": "the file is larger than the service accepts",
    "file-extension": "the service only accepts .jsonl files",
}


class Finding(BaseModel):
    """One linter-style finding: `file:line: field: message [rule]`."""

    model_config = ConfigDict(extra="forbid")

    file: str
    line: int | None = None
    field: str | None = None
    rule: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        fld = f" {self.field}:" if self.field else ""
        return f"{where}:{fld} {self.severity}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class ModelLimit:
    """Per-model numbers. `price_per_mtok` is the training price in USD per 1M tokens."""

    max_tokens: int | None
    price_per_mtok: float | None
    source: str


@dataclass(frozen=True)
class ServiceRules:
    target: str
    service: str
    kind: Kind
    default_model: str
    min_examples: int
    max_examples: int | None
    max_file_bytes: int | None
    roles: frozenset[str]
    top_keys: frozenset[str]
    message_keys: frozenset[str]
    models: Mapping[str, ModelLimit]
    unknown_key_severity: Severity = "warning"
    message_key_severity: Severity = "warning"
    weight_allowed: bool = False
    weight_assistant_only: bool = True
    content_parts: bool = False  # OpenAI accepts a list of typed content parts
    system_first_only: bool = False
    alternate_after_system: bool = False
    over_limit_severity: Severity = "error"
    jsonl_only: bool = False
    input_keys: frozenset[str] = field(default_factory=frozenset)  # preference `input` object

    def limit_for(self, model: str | None) -> tuple[str, ModelLimit | None]:
        """The model used and its limits: exact name, then the longest matching prefix."""
        name = model or self.default_model
        base = name[3:].split(":")[0] if name.startswith("ft:") else name
        if base in self.models:
            return name, self.models[base]
        best = max((k for k in self.models if base.startswith(k)), key=len, default=None)
        return name, (self.models[best] if best else None)


_MB = 1024 * 1024
_OPENAI_MODELS = {
    "gpt-4.1-nano": ModelLimit(65_536, 1.50, "memory"),
    "gpt-4.1-mini": ModelLimit(65_536, 5.00, "memory"),
    "gpt-4.1": ModelLimit(65_536, 25.00, "memory"),
    "gpt-4o-mini": ModelLimit(65_536, 3.00, "limit confirmed (forum quote of docs); price memory"),
    "gpt-4o": ModelLimit(65_536, 25.00, "memory"),
    "gpt-3.5-turbo": ModelLimit(16_385, 8.00, "cookbook PR #1178 (16,385); price memory"),
    "gpt-3.5-turbo-0613": ModelLimit(4_096, 8.00, "forum quote of docs"),
}
_OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_OPENAI_MSG_KEYS = frozenset({"role", "content", "name", "weight", "function_call", "tool_calls",
                              "tool_call_id", "refusal"})

SERVICE_RULES: dict[str, ServiceRules] = {
    "openai": ServiceRules(
        target="openai", service="OpenAI supervised fine-tuning", kind="chat",
        default_model="gpt-4.1-mini-2025-04-14", min_examples=10, max_examples=None,
        max_file_bytes=512 * _MB, roles=_OPENAI_ROLES,
        top_keys=frozenset({"messages", "tools", "functions", "parallel_tool_calls"}),
        message_keys=_OPENAI_MSG_KEYS, models=_OPENAI_MODELS,
        message_key_severity="error", weight_allowed=True, content_parts=True,
        over_limit_severity="warning", jsonl_only=True,
    ),
    "openai-dpo": ServiceRules(
        target="openai-dpo", service="OpenAI preference fine-tuning (DPO)", kind="preference",
        default_model="gpt-4.1-mini-2025-04-14", min_examples=10, max_examples=None,
        max_file_bytes=512 * _MB, roles=_OPENAI_ROLES,
        top_keys=frozenset({"input", "preferred_output", "non_preferred_output"}),
        message_keys=_OPENAI_MSG_KEYS - {"weight"}, models=_OPENAI_MODELS,
        message_key_severity="error", content_parts=True, over_limit_severity="warning",
        jsonl_only=True, input_keys=frozenset({"messages", "tools", "parallel_tool_calls"}),
    ),
    "bedrock": ServiceRules(
        target="bedrock", service="Amazon Bedrock (Anthropic Claude fine-tuning)", kind="bedrock",
        default_model="anthropic.claude-3-haiku-20240307-v1:0:200k", min_examples=32,
        max_examples=10_000, max_file_bytes=10 * 1024 * _MB, roles=frozenset({"user", "assistant"}),
        top_keys=frozenset({"system", "messages"}), message_keys=frozenset({"role", "content"}),
        models={"anthropic.claude-3-haiku": ModelLimit(32_000, 4.00, "memory")},
        unknown_key_severity="error", message_key_severity="error",
    ),
    "bedrock-nova": ServiceRules(
        target="bedrock-nova", service="Amazon Bedrock (Amazon Nova fine-tuning)", kind="nova",
        default_model="amazon.nova-lite-v1:0:300k", min_examples=1, max_examples=None,
        max_file_bytes=None, roles=frozenset({"user", "assistant"}),
        top_keys=frozenset({"schemaVersion", "system", "messages"}), message_keys=frozenset({"role", "content"}),
        models={}, unknown_key_severity="error", message_key_severity="error",
    ),
    "together": ServiceRules(
        target="together", service="Together AI fine-tuning (conversational)", kind="chat",
        default_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", min_examples=1,
        max_examples=None, max_file_bytes=100 * 1024 * 1024 * _MB,
        roles=frozenset({"system", "user", "assistant"}), top_keys=frozenset({"messages"}),
        message_keys=frozenset({"role", "content", "weight"}),
        models={"meta-llama/Meta-Llama-3.1-8B": ModelLimit(None, 0.48, "memory")},
        weight_allowed=True, system_first_only=True, alternate_after_system=True,
    ),
    "together-dpo": ServiceRules(
        target="together-dpo", service="Together AI preference fine-tuning", kind="preference",
        default_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", min_examples=1,
        max_examples=None, max_file_bytes=100 * 1024 * 1024 * _MB,
        roles=frozenset({"system", "user", "assistant"}),
        top_keys=frozenset({"input", "preferred_output", "non_preferred_output"}),
        message_keys=frozenset({"role", "content"}), models={},
        input_keys=frozenset({"messages"}),
    ),
    "fireworks": ServiceRules(
        target="fireworks", service="Fireworks AI supervised fine-tuning", kind="chat",
        default_model="accounts/fireworks/models/llama-v3p1-8b-instruct", min_examples=3,
        max_examples=3_000_000, max_file_bytes=None,
        roles=frozenset({"system", "user", "assistant"}), top_keys=frozenset({"messages", "tools", "weight"}),
        message_keys=frozenset({"role", "content", "weight", "tool_calls", "reasoning_content"}),
        models={"accounts/fireworks/models/llama-v3p1-8b": ModelLimit(None, 0.0, "docs: <16B free")},
        weight_allowed=True, weight_assistant_only=False, system_first_only=True, jsonl_only=True,
    ),
    "fireworks-dpo": ServiceRules(
        target="fireworks-dpo", service="Fireworks AI preference fine-tuning (DPO)",
        kind="preference", default_model="accounts/fireworks/models/llama-v3p1-8b-instruct",
        min_examples=3, max_examples=3_000_000, max_file_bytes=None,
        roles=frozenset({"system", "user", "assistant"}),
        top_keys=frozenset({"input", "preferred_output", "non_preferred_output"}),
        message_keys=frozenset({"role", "content"}), models={}, jsonl_only=True,
        input_keys=frozenset({"messages"}),
    ),
}


def rules_for(target: str) -> ServiceRules:
    if target not in SERVICE_RULES:
        from clearapi.errors import ConfigError

        raise ConfigError(f"unknown target {target!r}; known: {', '.join(sorted(SERVICE_RULES))}")
    return SERVICE_RULES[target]


class _Sink:
    """Collects findings for one line so checks read as a list of rules."""

    def __init__(self, file: str, line: int) -> None:
        self.file, self.line = file, line
        self.items: list[Finding] = []

    def add(self, field: str | None, rule: str, message: str, severity: Severity = "error") -> None:
        self.items.append(Finding(file=self.file, line=self.line, field=field, rule=rule,
                                  message=message, severity=severity))


def _check_content(sink: _Sink, rules: ServiceRules, where: str, msg: Mapping[str, Any]) -> None:
    role = msg.get("role")
    if "content" not in msg or msg["content"] is None:
        # OpenAI: an assistant turn may carry tool/function calls instead of text [oa-cook]
        if role == "assistant" and (msg.get("tool_calls") or msg.get("function_call")):
            return
        sink.add(f"{where}.content", "missing-key", "message has no content")
        return
    content = msg["content"]
    if isinstance(content, str):
        if not content.strip():
            sink.add(f"{where}.content", "content-empty", "content is empty", "warning")
        return
    if rules.content_parts and isinstance(content, list):
        for j, part in enumerate(content):
            pw = f"{where}.content[{j}]"
            if not isinstance(part, Mapping):
                sink.add(pw, "content-type", "a content part must be an object")
            elif part.get("type") == "text":
                if not isinstance(part.get("text"), str):
                    sink.add(f"{pw}.text", "content-type", "a text part needs a string `text`")
            elif part.get("type") == "image_url" and role == "user" and rules.kind == "chat":
                continue  # vision fine-tuning: images in user turns only
            else:
                sink.add(f"{pw}.type", "content-type",
                         f"content part type {part.get('type')!r} is not accepted in a {role} message")
        return
    allowed = "a string or a list of content parts" if rules.content_parts else "a string"
    sink.add(f"{where}.content", "content-type", f"content must be {allowed}, got {type(content).__name__}")


def _check_messages(sink: _Sink, rules: ServiceRules, where: str, messages: Any,
                    *, need_assistant: bool) -> list[str]:
    """Checks a messages array; returns the roles seen (for order checks)."""
    if not isinstance(messages, list):
        sink.add(where, "type", f"must be a list, got {type(messages).__name__}")
        return []
    if not messages:
        sink.add(where, "too-few-messages", "messages is empty")
        return []
    roles: list[str] = []
    for i, msg in enumerate(messages):
        mw = f"{where}[{i}]"
        if not isinstance(msg, Mapping):
            sink.add(mw, "type", "a message must be an object")
            roles.append("?")
            continue
        role = msg.get("role")
        if role is None:
            sink.add(f"{mw}.role", "missing-key", "message has no role")
        elif role not in rules.roles:
            hint = ("; put the system prompt in the top-level `system` field"
                    if rules.kind == "bedrock" and role == "system" else "")
            sink.add(f"{mw}.role", "role",
                     f"role {role!r} is not accepted; use one of {', '.join(sorted(rules.roles))}{hint}")
        roles.append(role if isinstance(role, str) else "?")
        for key in msg:
            if key not in rules.message_keys:
                sink.add(f"{mw}.{key}", "unknown-key", f"unrecognised message key {key!r}",
                         rules.message_key_severity)
        _check_content(sink, rules, mw, msg)
        if "weight" in msg and rules.weight_allowed:
            w = msg["weight"]
            if isinstance(w, bool) or w not in (0, 1):
                sink.add(f"{mw}.weight", "weight-value", f"weight must be 0 or 1, got {w!r}")
            elif role != "assistant" and rules.weight_assistant_only:
                sink.add(f"{mw}.weight", "weight-role",
                         f"weight is only allowed on assistant messages, not {role!r}")
    if need_assistant:
        assistants = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "assistant"]
        if not assistants:
            sink.add(where, "no-assistant", "no assistant message to train on")
        elif all(m.get("weight") == 0 for m in assistants):
            sink.add(where, "nothing-trained", "every assistant message has weight 0", "warning")
        elif roles[-1] != "assistant":
            sink.add(f"{where}[{len(roles) - 1}]", "last-not-assistant",
                     "the last message is not from the assistant; it is not trained on", "warning")
    if rules.system_first_only:
        for i, r in enumerate(roles):
            if r == "system" and i != 0:
                sink.add(f"{where}[{i}].role", "role-order", "a system message is only allowed first")
    if rules.alternate_after_system:
        rest = roles[1:] if roles and roles[0] == "system" else roles
        offset = len(roles) - len(rest)
        expected = "user"
        for i, r in enumerate(rest):
            if r == "system":
                continue  # reported above
            if r != expected:
                sink.add(f"{where}[{i + offset}].role", "role-order",
                         f"expected {expected!r} here: turns must alternate user/assistant"
                         f"{' after the system message' if offset else ''}, starting with user")
                break
            expected = "assistant" if r == "user" else "user"
    return roles


def _check_bedrock(sink: _Sink, rules: ServiceRules, obj: Mapping[str, Any]) -> None:
    if "system" in obj and not isinstance(obj["system"], str):
        sink.add("system", "type", "system must be a string")
    if "messages" not in obj:
        sink.add("messages", "missing-key", "record has no messages")
        return
    roles = _check_messages(sink, rules, "messages", obj["messages"], need_assistant=False)
    if not roles:
        return
    if len(roles) < 2:
        sink.add("messages", "too-few-messages", "at least two messages are required")
    if roles[0] != "user" and roles[0] in rules.roles:
        sink.add("messages[0].role", "role-order", "the first message must be from the user")
    if roles[-1] != "assistant" and roles[-1] in rules.roles:
        sink.add(f"messages[{len(roles) - 1}].role", "role-order",
                 "the last message must be from the assistant")
    for i in range(1, len(roles)):
        if roles[i] == roles[i - 1]:
            sink.add(f"messages[{i}].role", "role-order", "user and assistant messages must alternate")
            break


#: [nova-data]: a user or system prompt must not hold these
NOVA_RESERVED = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")


def _nova_texts(sink: _Sink, where: str, blocks: Any) -> list[str]:
    if not isinstance(blocks, list) or not blocks:
        sink.add(where, "type", "must be a non-empty list of {\"text\": ...} blocks")
        return []
    texts = []
    for j, block in enumerate(blocks):
        text = block.get("text") if isinstance(block, Mapping) else None
        if not isinstance(text, str):
            sink.add(f"{where}[{j}].text", "content-type", "each block must be {\"text\": a string}")
        elif not text.strip():
            sink.add(f"{where}[{j}].text", "content-empty", "text is empty")
        else:
            texts.append(text)
    return texts


def _check_nova(sink: _Sink, rules: ServiceRules, obj: Mapping[str, Any]) -> None:
    if not isinstance(obj.get("schemaVersion"), str):
        sink.add("schemaVersion", "missing-key", "record needs a schemaVersion string (bedrock-conversation-2024)")
    prompts: list[tuple[str, str]] = []
    if "system" in obj:
        prompts += [("system", t) for t in _nova_texts(sink, "system", obj["system"])]
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        sink.add("messages", "missing-key", "record needs a non-empty messages list")
        return
    roles = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role") if isinstance(msg, Mapping) else None
        if role not in rules.roles:
            sink.add(f"{where}.role", "role", f"role must be user or assistant, got {role!r}")
            continue
        roles.append(role)
        texts = _nova_texts(sink, f"{where}.content", msg.get("content"))
        if role == "user":
            prompts += [(f"{where}.content", t) for t in texts]
    if roles and roles[0] != "user":
        sink.add("messages[0].role", "role-order", "the first message must be from the user")
    if roles and roles[-1] != "assistant":
        sink.add(f"messages[{len(messages) - 1}].role", "role-order", "the last message must be from the assistant")
    for where, text in prompts:
        found = [w for w in NOVA_RESERVED if w in text]
        if found:
            sink.add(where, "reserved-word", f"holds {', '.join(found)}, reserved by Amazon Nova; the job fails "
                     "on it (rephrase, e.g. 'user said')")
            break


def _check_preference(sink: _Sink, rules: ServiceRules, obj: Mapping[str, Any]) -> None:
    inp = obj.get("input")
    if inp is None:
        sink.add("input", "missing-key", "record has no input")
    elif not isinstance(inp, Mapping):
        sink.add("input", "type", "input must be an object with messages")
    else:
        for key in inp:
            if key not in rules.input_keys:
                sink.add(f"input.{key}", "unknown-key", f"unrecognised input key {key!r}",
                         rules.unknown_key_severity)
        if "messages" not in inp:
            sink.add("input.messages", "missing-key", "input has no messages")
        else:
            _check_messages(sink, rules, "input.messages", inp["messages"], need_assistant=False)
    texts: list[Any] = []
    for key in ("preferred_output", "non_preferred_output"):
        out = obj.get(key)
        if out is None:
            sink.add(key, "missing-key", f"record has no {key}")
            continue
        if (not isinstance(out, list) or len(out) != 1 or not isinstance(out[0], Mapping)
                or out[0].get("role") != "assistant"):
            sink.add(key, "preference-output", f"{key} must be a list of exactly one assistant message")
            continue
        _check_messages(sink, rules, key, out, need_assistant=False)
        texts.append(out[0].get("content"))
    if len(texts) == 2 and texts[0] == texts[1]:
        sink.add("preferred_output", "preference-identical",
                 "preferred and non-preferred outputs are identical: nothing to learn", "warning")


def check_record(obj: Any, rules: ServiceRules, *, file: str, line: int) -> list[Finding]:
    """Every per-record rule of `rules` applied to one parsed JSONL line."""
    sink = _Sink(file, line)
    if not isinstance(obj, Mapping):
        sink.add(None, "not-object", f"expected a JSON object, got {type(obj).__name__}")
        return sink.items
    for key in obj:
        if key not in rules.top_keys:
            sink.add(str(key), "unknown-key", f"unrecognised key {key!r} for {rules.service}",
                     rules.unknown_key_severity)
    if rules.kind == "chat":
        if "messages" not in obj:
            sink.add("messages", "missing-key", "example has no messages list")
        else:
            _check_messages(sink, rules, "messages", obj["messages"], need_assistant=True)
    elif rules.kind == "bedrock":
        _check_bedrock(sink, rules, obj)
    elif rules.kind == "nova":
        _check_nova(sink, rules, obj)
    else:
        _check_preference(sink, rules, obj)
    return sink.items
