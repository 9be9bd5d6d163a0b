"""The fast path: typed msgspec decoders that accept a valid example in one C-level pass.

A speed-up only. The Python validators in `specs` define what is valid and write the messages: a
line the fast decoder refuses goes through orjson + the spec's validator, which either names the
problem or accepts the line. The fast path must never accept a line the spec refuses (that would
let a bad example in unseen), and should accept every line the spec accepts (else it is slow):
tests/test_intake_defects.py holds both paths to one answer on a corpus of good and bad lines. Only
specs whose shapes map cleanly onto structs have a fast path; metacog_v1 always takes the slow one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

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
    # UNSET, not None: {"text": "a", "prompt": null} must not pass here, since the spec refuses a
    # field that is present as null (tests/test_intake_defects.py checks the two paths agree).
    prompt: NonBlank | UnsetType = UNSET
    completion: NonBlank | UnsetType = UNSET
    text: NonBlank | UnsetType = UNSET
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
            if not user:  # roles out of order (specs.check_chat names it)
                return False
            assistant = True
        elif user:  # a system message after the conversation began
            return False
    return user and assistant


def _skill_ok(ex: Chat) -> bool:
    meta = ex.metadata
    if not meta or not _chat_ok(ex):
        return False
    skill, level = meta.get("skill"), meta.get("level")
    return type(skill) is str and bool(skill) and type(level) is int and level >= 1


def _completion_ok(ex: Completion) -> bool:
    if ex.text is not UNSET:
        return ex.prompt is UNSET and ex.completion is UNSET and not _blank(ex.text)
    p, c = ex.prompt, ex.completion
    return p is not UNSET and c is not UNSET and not _blank(p) and not _blank(c)


def _chat_prompts(ex: Chat) -> list[str]:
    return [m.content for m in ex.messages if m.role == "user"]


def _completion_prompts(ex: Completion) -> list[str]:
    return [ex.prompt] if ex.prompt is not UNSET else []


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
# msgspec raises UnicodeDecodeError (not DecodeError) for bytes that are not UTF-8: such a chunk
# must fall back to the per-line path too, which names the line, offset and likely encoding.
FAST_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
