"""The fast path: typed msgspec decoders that accept a valid example in one C-level pass.

A speed-up only. The Python validators in `specs` define what is valid and write the messages: a
line the fast decoder refuses goes through orjson + the spec's validator, which either names the
problem or accepts the line (so the two can never disagree in the user's disfavour). Only
specs whose shapes map cleanly onto structs have a fast path; metacog_v1 always takes the slow one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

# min_length is checked in C; a pattern like r"\S" costs a regex per string (2x the decode), so
# whitespace-only strings are caught by the cheap Python checks below instead.
NonBlank = Annotated[str, msgspec.Meta(min_length=1)]


# gc=False: these structs never form reference cycles; untracked, 50k of them per chunk cost the
# cyclic collector nothing.
class Message(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: Literal["system", "user", "assistant"]
    content: NonBlank


class Chat(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    messages: list[Message]
    metadata: dict[str, Any] | None = None


class Completion(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    prompt: NonBlank | None = None
    completion: NonBlank | None = None
    text: NonBlank | None = None
    metadata: dict[str, Any] | None = None


def _blank(s: str) -> bool:
    return s[-1].isspace() and not s.strip()  # a blank string ends in whitespace: test that first


def _chat_ok(ex: Chat) -> bool:
    user = assistant = False
    for m in ex.messages:
        c = m.content
        if c[-1].isspace() and not c.strip():  # _blank, inlined: this runs once per message
            return False
        if m.role == "user":
            user = True
        elif m.role == "assistant":
            assistant = True
    return user and assistant


def _skill_ok(ex: Chat) -> bool:
    meta = ex.metadata
    if not meta or not _chat_ok(ex):
        return False
    skill, level = meta.get("skill"), meta.get("level")
    return type(skill) is str and bool(skill) and type(level) is int and level >= 1


def _completion_ok(ex: Completion) -> bool:
    if ex.text is not None:
        return ex.prompt is None and ex.completion is None and not _blank(ex.text)
    p, c = ex.prompt, ex.completion
    return p is not None and c is not None and not _blank(p) and not _blank(c)


def _chat_prompts(ex: Chat) -> list[str]:
    return [m.content for m in ex.messages if m.role == "user"]


def _completion_prompts(ex: Completion) -> list[str]:
    return [ex.prompt] if ex.prompt is not None else []


class FastSpec:
    def __init__(self, struct: type, ok: Callable[[Any], bool], prompts: Callable[[Any], list[str]]):
        dec = msgspec.json.Decoder(struct)
        self.decode, self.decode_lines = dec.decode, dec.decode_lines
        self.ok, self.prompts = ok, prompts


FAST: dict[str, FastSpec] = {
    "chat_sft_v1": FastSpec(Chat, _chat_ok, _chat_prompts),
    "skill_v1": FastSpec(Chat, _skill_ok, _chat_prompts),
    "completion_v1": FastSpec(Completion, _completion_ok, _completion_prompts),
}
FAST_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)
