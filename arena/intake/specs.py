"""Quest specs: the shapes a quest's examples may take, deny by default.

Each spec is a validator: a function from one parsed JSON value to an error message (or None),
written for people ("message 2: unknown role 'bot'; expected system, user or assistant"). The
functions are plain Python over orjson's output because that is faster than a schema library for
these tiny shapes, and the messages can say exactly what to fix.

`detect_spec` picks a spec from the first example when no sidecar names one; an example that fits
no spec is refused, never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

SPEC_VERSION = 2  # 2: chat role order is checked; formatting takes every rule from here
# Specs whose examples are chats ({"messages": [...]}); the trainer renders them with the hero's template.
CHAT_SPECS = ("chat_sft_v1", "skill_v1")
ROLES = ("system", "user", "assistant")
CHAT_KEYS = frozenset({"messages", "metadata"})
COMPLETION_KEYS = frozenset({"prompt", "completion", "text", "metadata"})
# Optional labels from the metacog data contract (seed 000).
METACOG_OPTIONAL: dict[str, tuple[type, ...]] = {
    "plan_class": (str,),
    "target_budget": (int, float),
    "correct": (bool,),
    "correctness": (bool, int, float),
    "difficulty_bin": (str, int),
    "rewrite_pair_id": (str, int),
    "style_tag": (str,),
    "metadata": (dict,),
}
METACOG_KEYS = frozenset({"text", *METACOG_OPTIONAL})
_TAG = re.compile(r"</?(?:think|answer)>")

Validator = Callable[[Any], str | None]


def type_name(value: Any) -> str:
    """Name a JSON value's type the way a person writing JSON thinks of it."""
    if value is None:
        return "null"
    return {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _unknown_keys(obj: dict, allowed: frozenset[str], spec: str) -> str | None:
    extra = [k for k in obj if k not in allowed]
    if extra:
        return (
            f"unknown field {extra[0]!r} for {spec}; allowed: {', '.join(sorted(allowed))}"
            " (put extra information under 'metadata')"
        )
    return None


def check_chat(obj: Any) -> str | None:
    if type(obj) is not dict:
        return f"expected a JSON object, got {type_name(obj)}"
    msgs = obj.get("messages")
    if msgs is None:
        return 'missing \'messages\': a chat example is {"messages": [{"role", "content"}, ...]}'
    if type(msgs) is not list:
        return f"'messages' must be a list of {{role, content}}; got {type_name(msgs)}"
    if err := _unknown_keys(obj, CHAT_KEYS, "chat_sft_v1"):
        return err
    meta = obj.get("metadata")
    if meta is not None and type(meta) is not dict:
        return f"'metadata' must be an object; got {type_name(meta)}"
    user = assistant = False
    for i, m in enumerate(msgs, 1):
        if type(m) is not dict:
            return f"message {i}: 'messages' must be a list of {{role, content}}; got {type_name(m)}"
        role = m.get("role")
        content = m.get("content")
        if len(m) != 2 or role is None or content is None:
            missing = [k for k in ("role", "content") if k not in m]
            if missing:
                return f"message {i}: missing {' and '.join(repr(k) for k in missing)}"
            extra = sorted(set(m) - {"role", "content"})
            return f"message {i}: unknown field {extra[0]!r}; a message has only 'role' and 'content'"
        if role == "user":
            user = True
        elif role == "assistant":
            assistant = True
        elif role != "system":
            return f"message {i}: unknown role {role!r}; expected system, user or assistant"
        if type(content) is not str:
            return f"message {i}: 'content' must be a string; got {type_name(content)}"
        if not content.strip():
            return f"message {i}: empty content ({role})"
        # Roles in order: system messages first, then the user speaks before the assistant answers
        # (an answer to nothing teaches the hero to talk unprompted).
        if role == "assistant" and not user:
            return f"message {i}: roles out of order: an assistant turn before any user turn"
        if role == "system" and user:
            return f"message {i}: roles out of order: a system message after the conversation began"
    if not user:
        return "no user turn: a chat example needs at least one user and one assistant message"
    if not assistant:
        return "no assistant turn: a chat example needs at least one user and one assistant message"
    return None


def check_skill(obj: Any) -> str | None:
    if err := check_chat(obj):
        return err
    meta = obj.get("metadata")
    if type(meta) is not dict:
        return "skill_v1 needs 'metadata' with 'skill' and 'level'"
    skill, level = meta.get("skill"), meta.get("level")
    if type(skill) is not str or not skill:
        return f"metadata.skill must be a non-empty string; got {type_name(skill)}"
    if type(level) is not int or level < 1:
        return f"metadata.level must be an integer >= 1; got {level!r}"
    return None


def check_completion(obj: Any) -> str | None:
    if type(obj) is not dict:
        return f"expected a JSON object, got {type_name(obj)}"
    if err := _unknown_keys(obj, COMPLETION_KEYS, "completion_v1"):
        return err
    if "text" in obj:
        if "prompt" in obj or "completion" in obj:
            return "completion_v1 is either {prompt, completion} or {text}, not both"
        text = obj["text"]
        if type(text) is not str:
            return f"'text' must be a string; got {type_name(text)}"
        if not text.strip():
            return "empty 'text'"
    else:
        for key in ("prompt", "completion"):
            value = obj.get(key)
            if value is None:
                return f'missing {key!r}: completion_v1 is {{"prompt": str, "completion": str}} or {{"text": str}}'
            if type(value) is not str:
                return f"{key!r} must be a string; got {type_name(value)}"
            if not value.strip():
                return f"empty {key!r}"
    meta = obj.get("metadata")
    if meta is not None and type(meta) is not dict:
        return f"'metadata' must be an object; got {type_name(meta)}"
    return None


def metacog_protocol(text: str) -> str | None:
    """Exactly one <think>...</think> then one <answer>...</answer>, in that order, not empty."""
    tags = _TAG.findall(text)
    counts = {t: tags.count(t) for t in ("<think>", "</think>", "<answer>", "</answer>")}
    for tag, n in counts.items():
        if n == 0:
            return f"no {tag} tag: metacog_v1 text needs exactly one <think>...</think> and one <answer>...</answer>"
        if n > 1:
            kind = tag.strip("</>")
            return f"{n} {tag} tags: metacog_v1 allows exactly one <{kind}> block"
    if tags != ["<think>", "</think>", "<answer>", "</answer>"]:
        if tags.index("<answer>") < tags.index("<think>"):
            return "<answer> comes before <think>; the order is <think>...</think> then <answer>...</answer>"
        return f"tags out of order ({' '.join(tags)}); expected <think></think><answer></answer>"
    answer = text[text.index("<answer>") + 8 : text.index("</answer>")]
    if not answer.strip():
        return "empty <answer> block"
    return None


def check_metacog(obj: Any) -> str | None:
    if type(obj) is not dict:
        return f"expected a JSON object, got {type_name(obj)}"
    text = obj.get("text")
    if text is None:
        return 'missing \'text\': metacog_v1 is {"text": "...<think>...</think><answer>...</answer>"}'
    if type(text) is not str:
        return f"'text' must be a string; got {type_name(text)}"
    if err := _unknown_keys(obj, METACOG_KEYS, "metacog_v1"):
        return err
    for key, types in METACOG_OPTIONAL.items():
        value = obj.get(key)
        if value is not None and (type(value) not in types):
            return f"{key!r} must be {' or '.join(type_name(t()) for t in types)}; got {type_name(value)}"
    # The tag protocol is the spec's required shape (seed 000), so it is checked at every level.
    return metacog_protocol(text)


SPECS: dict[str, Validator] = {
    "chat_sft_v1": check_chat,
    "completion_v1": check_completion,
    "skill_v1": check_skill,
    "metacog_v1": check_metacog,
}


def detect_spec(obj: Any) -> str | None:
    """Guess the spec from one example; None when it fits none (the file is then refused)."""
    if type(obj) is not dict:
        return None
    if "messages" in obj:
        meta = obj.get("metadata")
        if type(meta) is dict and "skill" in meta and "level" in meta:
            return "skill_v1"
        return "chat_sft_v1"
    if "text" in obj:
        text = obj["text"]
        if (type(text) is str and ("<think>" in text or "<answer>" in text)) or any(
            k in obj for k in METACOG_OPTIONAL if k != "metadata"
        ):
            return "metacog_v1"
        return "completion_v1"
    if "prompt" in obj or "completion" in obj:
        return "completion_v1"
    return None


def prompts_of(spec: str, obj: dict) -> list[str]:
    """The user-side texts of an example (what eval quarantine and leakage compare against)."""
    if spec in CHAT_SPECS:
        return [m["content"] for m in obj["messages"] if m["role"] == "user"]
    if spec == "completion_v1":
        return [obj["prompt"]] if "prompt" in obj else []
    if spec == "metacog_v1":
        head = obj["text"].split("<think>", 1)[0]
        return [head] if head.strip() else []
    return []


def answer_leak(spec: str, obj: dict, min_chars: int) -> str | None:
    """The answer appearing verbatim in the prompt: the example teaches copying, not solving.

    Answers shorter than `min_chars` are skipped: "4" inside "2+2=?" style prompts would be noise.
    """
    if spec in CHAT_SPECS:
        seen: list[str] = []
        for i, m in enumerate(obj["messages"], 1):
            content = m["content"].strip()
            if m["role"] == "assistant":
                if len(content) >= min_chars and any(content in s for s in seen):
                    return (
                        f"message {i}: the assistant answer appears verbatim in the prompt (answer leakage)"
                    )
            else:
                seen.append(m["content"])
        return None
    if spec == "completion_v1" and "prompt" in obj:
        completion = obj["completion"].strip()
        if len(completion) >= min_chars and completion in obj["prompt"]:
            return "the completion appears verbatim in the prompt (answer leakage)"
        return None
    if spec == "metacog_v1":
        text = obj["text"]
        answer = text[text.index("<answer>") + 8 : text.index("</answer>")].strip()
        head = text.split("<think>", 1)[0]
        if len(answer) >= min_chars and answer in head:
            return "the <answer> appears verbatim in the prompt before <think> (answer leakage)"
    return None
