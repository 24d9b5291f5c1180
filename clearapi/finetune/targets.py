"""Render a reviewed `Example` into each hosted fine-tuning service's record format.

`curate --target T` and `convert --target T` call these, so every service gets a file its
own validator accepts (`clearapi.finetune.validate` checks the same published rules; see
`clearapi.finetune.rules` for sources and dates). Keys a service does not accept are not
carried over: the output is an upload-ready file, not a copy of the input.

Supervised targets (``render``): ``openai`` (messages, optional weight), ``bedrock``
(``system`` + alternating ``messages``, Claude on Amazon Bedrock), ``together`` and
``fireworks`` (chat ``messages``), ``trl-sft`` (TRL's conversational ``messages``).

Preference targets (``render_preference``): ``openai-dpo``, ``together-dpo`` and
``fireworks-dpo`` share OpenAI's shape ``{"input": {"messages"}, "preferred_output": [..],
"non_preferred_output": [..]}``. clearapi builds them from accepted auto-corrections:
preferred = the correction, non-preferred = the dataset's original response. ``trl-dpo`` is
TRL's conversational preference shape ``{"prompt": [..], "chosen": [..], "rejected": [..]}``.

A row a service cannot represent (a tool turn for Bedrock, a conversation opening with an
assistant turn where the service requires user first) raises `RenderError`, which callers
turn into a reject for that row, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clearapi.datasets import to_openai_chat
from clearapi.errors import ConfigError
from clearapi.finetune.rules import SERVICE_RULES
from clearapi.records import Example

__all__ = ["TARGETS", "RenderError", "Target", "record_for", "render", "render_preference"]


class RenderError(ValueError):
    """This row cannot be expressed in the target's format; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Target:
    """A named output format. `preference` targets take pairs (`render_preference`)."""

    name: str
    service: str
    preference: bool
    description: str
    _render: Callable[[Example, str | None], dict[str, Any]] | None = None


def _openai(example: Example, response: str | None) -> dict[str, Any]:
    rules = SERVICE_RULES["openai"]
    rec = to_openai_chat(example, response)
    out: dict[str, Any] = {k: v for k, v in rec.items() if k in rules.top_keys}
    messages: list[dict[str, Any]] = []
    for m in rec["messages"]:
        msg = {k: v for k, v in m.items() if k in rules.message_keys}
        if "weight" in msg and (m.get("role") != "assistant" or msg["weight"] not in (0, 1)):
            del msg["weight"]  # OpenAI: weight is 0/1 on assistant messages only [oa-spec]
        messages.append(msg)
    if example.weight in (0, 1) and "weight" not in messages[-1]:
        messages[-1]["weight"] = example.weight
    out["messages"] = messages
    return out


def _turns(example: Example, response: str | None, target: str,
           messages: list[Any] | None = None) -> tuple[str | None, list[dict[str, Any]]]:
    """Leading system text and strictly alternating user/assistant turns.

    Consecutive turns of one role are joined with a blank line (services that require
    alternation reject them otherwise); `developer` is OpenAI's name for `system`.
    """
    msgs = list(messages if messages is not None else example.messages)
    texts = [(("system" if m.role == "developer" else m.role), m.content) for m in msgs]
    if response is not None and messages is None:
        texts[-1] = (texts[-1][0], response)
    system_parts: list[str] = []
    while texts and texts[0][0] == "system":
        system_parts.append(texts.pop(0)[1])
    turns: list[dict[str, Any]] = []
    for i, (role, content) in enumerate(texts):
        if role not in ("user", "assistant"):
            where = f"messages[{i + len(system_parts)}].role"
            raise RenderError(f"{target}: cannot express a {role!r} turn after the start", where)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    if turns and turns[0]["role"] != "user":
        raise RenderError(f"{target}: the conversation must start with a user turn "
                          f"(after any system prompt), not {turns[0]['role']!r}", "messages[0].role")
    return ("\n\n".join(system_parts) or None), turns


def _bedrock(example: Example, response: str | None) -> dict[str, Any]:
    system, turns = _turns(example, response, "bedrock")
    rec: dict[str, Any] = {}
    if system:
        rec["system"] = system
    rec["messages"] = turns
    return rec


def _chat(target: str) -> Callable[[Example, str | None], dict[str, Any]]:
    def render_chat(example: Example, response: str | None) -> dict[str, Any]:
        system, turns = _turns(example, response, target)
        messages = ([{"role": "system", "content": system}] if system else []) + turns
        if target == "fireworks" and example.weight in (0, 1):
            messages[-1]["weight"] = example.weight  # [fw-sft]: optional 0/1
        return {"messages": messages}
    return render_chat


def _bedrock_nova(example: Example, response: str | None) -> dict[str, Any]:
    """Amazon Nova on Bedrock: the Converse schema, text blocks, user first and assistant last."""
    system, turns = _turns(example, response, "bedrock-nova")
    rec: dict[str, Any] = {"schemaVersion": "bedrock-conversation-2024"}
    if system:
        rec["system"] = [{"text": system}]
    rec["messages"] = [{"role": t["role"], "content": [{"text": t["content"]}]} for t in turns]
    return rec


def _trl_sft(example: Example, response: str | None) -> dict[str, Any]:
    """TRL's conversational language-modeling shape (SFTTrainer, also Axolotl/Unsloth chat templates):
    ``messages`` with the system prompt first; the chat template does the rest."""
    rec = to_openai_chat(example, response)
    return {"messages": [{"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
                         for m in rec["messages"] if isinstance(m.get("content"), str)]}


TARGETS: dict[str, Target] = {
    "openai": Target("openai", "OpenAI", False, "OpenAI chat SFT: messages, optional 0/1 weight", _openai),
    "bedrock": Target("bedrock", "Amazon Bedrock", False,
                      "Claude on Bedrock: optional system + alternating user/assistant messages", _bedrock),
    "bedrock-nova": Target("bedrock-nova", "Amazon Bedrock", False,
                           "Amazon Nova on Bedrock: bedrock-conversation-2024 schema, text blocks", _bedrock_nova),
    "together": Target("together", "Together AI", False,
                       "conversational messages: system first, then user/assistant alternating",
                       _chat("together")),
    "fireworks": Target("fireworks", "Fireworks AI", False,
                        "OpenAI-compatible chat messages (system first), optional 0/1 weight",
                        _chat("fireworks")),
    "openai-dpo": Target("openai-dpo", "OpenAI", True,
                         "preference pairs: input.messages, preferred_output, non_preferred_output"),
    "together-dpo": Target("together-dpo", "Together AI", True, "preference pairs (OpenAI's shape)"),
    "fireworks-dpo": Target("fireworks-dpo", "Fireworks AI", True, "preference pairs (OpenAI's shape)"),
    "trl-sft": Target("trl-sft", "TRL (Hugging Face)", False,
                      "conversational messages for SFTTrainer, Axolotl and Unsloth chat templates", _trl_sft),
    "trl-dpo": Target("trl-dpo", "TRL (Hugging Face)", True,
                      "conversational preference rows for DPOTrainer: prompt, chosen, rejected"),
}


def _target(name: str) -> Target:
    if name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]


def render(example: Example, response: str | None = None, target: str = "openai") -> dict[str, Any]:
    """One supervised record for `target`; `response` replaces the final answer when given.

    Raises `ConfigError` for an unknown or preference target, `RenderError` for a row the
    target cannot express.
    """
    t = _target(target)
    if t._render is None:
        raise ConfigError(f"target {target!r} takes preference pairs: use render_preference()")
    return t._render(example, response)


def render_preference(example: Example, preferred: str, rejected: str,
                      target: str = "openai-dpo") -> dict[str, Any]:
    """One preference record: the example's prompt, `preferred` over `rejected`.

    For auto-corrections: ``render_preference(ex, score.correction, ex.response)``.
    """
    t = _target(target)
    if not t.preference:
        raise ConfigError(f"target {target!r} is not a preference target; use render()")
    prompt = example.prompt_messages
    if target == "trl-dpo":
        return {"prompt": [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
                           for m in prompt],
                "chosen": [{"role": "assistant", "content": preferred}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    if target == "openai-dpo":
        full = to_openai_chat(example)
        allowed = SERVICE_RULES["openai-dpo"].message_keys
        messages = [{k: v for k, v in m.items() if k in allowed} for m in full["messages"][:-1]]
        inp: dict[str, Any] = {"messages": messages}
        if "tools" in full:
            inp["tools"] = full["tools"]
    else:
        system, turns = _turns(example, None, target, messages=prompt)
        inp = {"messages": ([{"role": "system", "content": system}] if system else []) + turns}
    return {
        "input": inp,
        "preferred_output": [{"role": "assistant", "content": preferred}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


def record_for(example: Example, action: str, correction: str | None, target: str) -> dict[str, Any] | None:
    """The record a curated row contributes to `target`, or None when it contributes none.

    One call for either kind of target, for writers that walk curate's decisions:
    supervised targets get kept rows as they are and corrected rows with the correction;
    preference targets get a pair only for an accepted correction (preferred = correction,
    non-preferred = the original response); dropped rows give nothing.
    """
    t = _target(target)
    if action == "drop":
        return None
    if t.preference:
        if action != "correct" or not correction:
            return None
        return render_preference(example, correction, example.response, target)
    return render(example, correction if action == "correct" else None, target)
