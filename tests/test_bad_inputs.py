"""The bad-input corpus: every kind of bad drop a user can make, each into its own realm with the
daemon's inbox watcher running. For each kind: where the file ends (queue/failed/ with its
.error.json), the words of the reason, the original bytes kept (sha256), and the watcher still
alive and taking a good file afterwards."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from arena.intake import Intake
from arena.intake.inbox import waiting_files
from arena.intake.watcher import InboxWatcher
from sentinels.config import IntakeConfig
from tests.helpers import wait_until

EVAL_PROMPT = "What is 101 + 11 in binary?"
BOM = b"\xef\xbb\xbf"


def chat(i: int, answer: str = "hello there") -> dict:
    return {
        "messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": answer}]
    }


def msgs(*turns: tuple[str, object]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def latin1_mid_file() -> bytes:
    rows = [json.dumps(chat(i)).encode() for i in range(50)]
    rows[30] = rows[30].replace(b"hello there", "crème brûlée".encode("latin-1"))
    return b"\n".join(rows) + b"\n"


@dataclass
class Kind:
    data: bytes | None  # the dropped file's bytes (None: `make` builds the entry)
    words: tuple[str, ...]  # in the reason
    validator: str
    side: bytes | None = None  # FILE.meta.json, dropped first
    cfg: dict = field(default_factory=dict)
    name: str = "quest.jsonl"


SIDE_CHAT = b'{"spec": "chat_sft_v1"}'
KINDS: dict[str, Kind] = {
    # the bytes themselves
    "binary": Kind(
        b"\x7fELF\x02\x01\x00\x00" + bytes(range(256)) * 8, ("binary data (NUL bytes)",), "intake.encoding"
    ),
    "nul_bytes": Kind(jsonl({"text": "a"}) + b"\x00" * 16 + b"\n", ("binary data",), "intake.encoding"),
    "latin1_at_start": Kind(
        json.dumps(chat(1, "café")).encode().replace(b"caf\\u00e9", "café".encode("latin-1")) + b"\n",
        ("line 1: not valid UTF-8 (byte 0xe9", "byte offset", "Latin-1"),
        "intake.encoding",
    ),
    "invalid_utf8_mid_file": Kind(
        latin1_mid_file(),
        ("line 31: not valid UTF-8 (byte 0xe8", "byte offset", "Latin-1"),
        "intake.encoding",
    ),
    "utf16": Kind(json.dumps(chat(1)).encode("utf-16"), ("the file is UTF-16",), "intake.encoding"),
    "empty": Kind(b"", ("empty file",), "intake.encoding"),
    "whitespace_only": Kind(b"  \n\t\n\n", ("only whitespace",), "intake.encoding"),
    "bom_and_garbage": Kind(BOM + b"garbage, not json\n", ("line 1: invalid JSON",), "intake.json"),
    "not_json": Kind(b'{"messages": [}\n', ("line 1: invalid JSON",), "intake.json"),
    "json_array": Kind(json.dumps([chat(1), chat(2)]).encode() + b"\n", ("a JSON array",), "intake.format"),
    "not_an_object": Kind(
        b'"just a string"\n', ("expected a JSON object per line, got a string",), "intake.spec"
    ),
    "empty_object": Kind(b"{}\n", ("no known spec fits this example (fields: none)",), "intake.spec"),
    "no_spec_fits": Kind(jsonl({"question": "q", "answer": "a"}), ("no known spec fits",), "intake.spec"),
    "truncated_last_line": Kind(
        jsonl(chat(1), chat(2)) + b'{"messages": [{"role": "us',
        ("line 3: last line is cut off",),
        "intake.json",
    ),
    "line_too_long": Kind(
        jsonl({"text": "x" * (2 << 20)}),
        ("line 1: line is 2.0 MB; the longest line accepted is 1 MB",),
        "intake.line_length",
        cfg={"max_line_mb": 1},
    ),
    "file_too_large": Kind(
        jsonl(*(chat(i, "y" * 1000) for i in range(1200))),
        ("the largest quest accepted is 1 MB",),
        "intake.size",
        cfg={"max_file_mb": 1},
    ),
    # the spec's shapes
    "unknown_field": Kind(
        jsonl({**chat(1), "score": 3}), ("unknown field 'score' for chat_sft_v1",), "spec.chat_sft_v1"
    ),
    "wrong_type_content": Kind(
        jsonl(msgs(("user", 5), ("assistant", "a"))),
        ("message 1: 'content' must be a string",),
        "spec.chat_sft_v1",
    ),
    "messages_not_a_list": Kind(
        jsonl({"messages": "hi"}), ("'messages' must be a list",), "spec.chat_sft_v1"
    ),
    "missing_messages": Kind(
        jsonl({"metadata": {}}), ("line 1: missing 'messages'",), "spec.chat_sft_v1", SIDE_CHAT
    ),
    "empty_content": Kind(
        jsonl(chat(1, "   ")), ("message 2: empty content (assistant)",), "spec.chat_sft_v1"
    ),
    "unknown_role": Kind(
        jsonl(msgs(("bot", "hi"), ("assistant", "a"))), ("unknown role 'bot'",), "spec.chat_sft_v1"
    ),
    "assistant_first": Kind(
        jsonl(msgs(("assistant", "a"), ("user", "q"))),
        ("message 1: roles out of order: an assistant turn before any user turn",),
        "spec.chat_sft_v1",
    ),
    "system_mid_chat": Kind(
        jsonl(msgs(("user", "q"), ("assistant", "a"), ("system", "s"))),
        ("message 3: roles out of order: a system message",),
        "spec.chat_sft_v1",
    ),
    "no_assistant_turn": Kind(jsonl(msgs(("user", "q"))), ("no assistant turn",), "spec.chat_sft_v1"),
    "mixed_specs": Kind(
        jsonl(chat(1), {"prompt": "p", "completion": "c"}),
        ("line 2: missing 'messages'",),
        "spec.chat_sft_v1",
    ),
    "completion_half": Kind(jsonl({"prompt": "p"}), ("missing 'completion'",), "spec.completion_v1"),
    "completion_and_text": Kind(
        jsonl({"prompt": "p", "completion": "c", "text": "t"}), ("not both",), "spec.completion_v1"
    ),
    "skill_without_level": Kind(
        jsonl({**chat(1), "metadata": {"skill": "bin"}}),
        ("metadata.level must be an integer",),
        "spec.skill_v1",
        b'{"spec": "skill_v1"}',
    ),
    "metacog_two_think": Kind(
        jsonl({"text": "Q?<think>a</think><think>b</think><answer>c</answer>"}),
        ("2 <think> tags",),
        "spec.metacog_v1",
    ),
    "metacog_answer_first": Kind(
        jsonl({"text": "Q?<answer>c</answer><think>a</think>"}),
        ("<answer> comes before <think>",),
        "spec.metacog_v1",
    ),
    "metacog_empty_answer": Kind(
        jsonl({"text": "Q?<think>a</think><answer> </answer>"}), ("empty <answer> block",), "spec.metacog_v1"
    ),
    "metacog_prompt_field": Kind(
        jsonl({"text": "<think>a</think><answer>b</answer>", "prompt": "Q"}),
        ("unknown field 'prompt' for metacog_v1",),
        "spec.metacog_v1",
    ),
    "many_errors": Kind(
        jsonl(*({"messages": i} for i in range(30)), chat(99)), ("(and 29 more errors)",), "spec.chat_sft_v1"
    ),
    # content rules
    "eval_prompt_leak": Kind(
        jsonl(chat(1), msgs(("user", "  what is 101 +\t11 IN BINARY? "), ("assistant", "1000"))),
        ("line 2: eval quarantine", "bin level 1"),
        "content.quarantine",
    ),
    "answer_leak": Kind(
        jsonl(msgs(("user", "Repeat: the answer is forty-two"), ("assistant", "the answer is forty-two"))),
        ("answer leakage",),
        "content.leakage",
        cfg={"level": "deep"},
    ),
    "duplicate_file": Kind(
        jsonl(chat(7), chat(8)), ("duplicate file: same sha256 as quest #1",), "dedup.file"
    ),
    # names and sidecars
    "bad_extension": Kind(
        jsonl(chat(1)), ("extension '.txt' is not accepted",), "intake.extension", name="notes.txt"
    ),
    "no_extension": Kind(
        jsonl(chat(1)), ("extension '(none)' is not accepted",), "intake.extension", name="README"
    ),
    "leading_dash": Kind(jsonl(chat(1)), ("a leading '-'",), "intake.name", name="-rf.jsonl"),
    "dot_dot": Kind(jsonl(chat(1)), ("'..' is not allowed",), "intake.name", name="a..b.jsonl"),
    "sidecar_unknown_spec": Kind(
        jsonl(chat(1)), ("key 'spec'", "got 'chat_v9'"), "intake.sidecar", b'{"spec": "chat_v9"}'
    ),
    "sidecar_bad_priority": Kind(
        jsonl(chat(1)), ("key 'priority'", "got 'urgent'"), "intake.sidecar", b'{"priority": "urgent"}'
    ),
    "sidecar_invalid_json": Kind(
        jsonl(chat(1)), ("quest.jsonl.meta.json: invalid JSON",), "intake.sidecar", b"{spec: chat}"
    ),
    "sidecar_not_an_object": Kind(
        jsonl(chat(1)), ("expected a mapping, got a list",), "intake.sidecar", b"[1, 2]"
    ),
    "sidecar_huge_level": Kind(
        jsonl(chat(1)),
        ("key 'level': expected an integer from 1 to 1000",),
        "intake.sidecar",
        b'{"level": 99999}',
    ),
    "sidecar_level_as_text": Kind(
        jsonl(chat(1)), ("key 'level'", "got '3'"), "intake.sidecar", b'{"level": "3"}'
    ),
    "sidecar_zero_epochs": Kind(
        jsonl(chat(1)), ("key 'epochs'", "got 0"), "intake.sidecar", b'{"epochs": 0}'
    ),
    # entries that are not files
    "symlink": Kind(None, ("symlink pointing outside the inbox",), "intake.symlink"),
    "directory": Kind(None, ("is a directory, not a quest file",), "intake.filetype", name="folder.jsonl"),
    "orphan_sidecar": Kind(
        None, ("arrived without its data file 'ghost.jsonl'",), "intake.sidecar", name="ghost.jsonl.meta.json"
    ),
}


def _quest(realm, name: str) -> dict | None:
    return realm.store.one("SELECT * FROM quests WHERE name = ? ORDER BY id DESC LIMIT 1", (name,))


def _queued(realm, name: str) -> dict | None:
    q = _quest(realm, name)
    return q if q and q["status"] == "queued" else None


def _drop(kind_id: str, kind: Kind, inbox: Path, outside: Path) -> dict[str, bytes]:
    """Put the bad entry into the inbox; returns relative path -> bytes that must be kept."""
    if kind_id == "symlink":
        outside.write_bytes(jsonl(chat(1)))
        os.symlink(outside, inbox / kind.name)
        return {}
    if kind_id == "directory":
        (inbox / kind.name).mkdir()
        (inbox / kind.name / "inside.jsonl").write_bytes(jsonl(chat(1)))
        return {"inside.jsonl": jsonl(chat(1))}
    if kind_id == "orphan_sidecar":
        (inbox / kind.name).write_bytes(b'{"priority": "high"}')
        return {"": b'{"priority": "high"}'}
    keep = {"": kind.data}
    if kind.side is not None:
        (inbox / f"{kind.name}.meta.json").write_bytes(kind.side)
        keep[".meta.json"] = kind.side
    tmp = inbox / f".{kind.name}.tmp"  # written whole, then renamed in, as a careful copier does
    tmp.write_bytes(kind.data)
    os.replace(tmp, inbox / kind.name)
    return keep


def test_the_corpus_has_at_least_thirty_kinds():
    assert len(KINDS) >= 30


@pytest.mark.parametrize("kind_id", list(KINDS))
def test_bad_input_is_refused_kept_and_the_watcher_lives_on(kind_id, realm, tmp_path):
    kind = KINDS[kind_id]
    root, inbox = realm.home.root, realm.home.inbox
    evals = root / "evalsets" / "bin" / "v1"
    evals.mkdir(parents=True)
    (evals / "level-01.jsonl").write_text(
        json.dumps({"skill": "bin", "level": 1, "prompt": EVAL_PROMPT}) + "\n"
    )
    cfg = IntakeConfig(**{"settle_s": 0.05, "leftover_grace_s": 0.1, **kind.cfg})
    intake = Intake(realm.home, realm.store, realm.events, cfg)
    with InboxWatcher(intake) as watcher:
        if kind_id == "duplicate_file":
            (inbox / "first.jsonl").write_bytes(kind.data)
            wait_until(lambda: _queued(realm, "first.jsonl"), 15, "the first copy queued")
        keep = _drop(kind_id, kind, inbox, tmp_path / "outside.jsonl")
        q = wait_until(lambda: _quest(realm, kind.name), 15, f"the refusal of {kind.name}")

        # where it ends: queue/failed/<id>__<name>, with <id>__<name>.error.json beside it
        assert q["status"] == "failed", q
        assert q["path"] == f"queue/failed/{q['id']:06d}__{kind.name}"
        err = json.loads((root / f"{q['path']}.error.json").read_text())
        assert q["error_path"] == f"{q['path']}.error.json" and err["message"] == q["reason"]
        # the reason's words, and which rule refused it
        for words in kind.words:
            assert words in q["reason"], (kind_id, q["reason"])
        assert err["validator"] == json.loads(q["lineage"])["validator"] == kind.validator, err
        assert "internal error" not in q["reason"]
        # the original bytes kept, the sidecar beside its file
        kept = root / q["path"]
        if kind_id == "symlink":
            assert kept.is_symlink() and os.readlink(kept) == str(tmp_path / "outside.jsonl")
            assert (tmp_path / "outside.jsonl").read_bytes() == jsonl(chat(1))  # the target untouched
        for suffix, data in keep.items():
            path = kept / suffix if kind_id == "directory" else kept.with_name(kept.name + suffix)
            assert sha(path.read_bytes()) == sha(data), (kind_id, suffix)

        # the process alive: the same watcher takes a good file next
        good = jsonl(*(chat(1000 + i) for i in range(3)))
        (inbox / "after.jsonl").write_bytes(good)
        after = wait_until(lambda: _queued(realm, "after.jsonl"), 15, "the good file after the bad one")
        assert after["example_count"] == 3 and watcher.is_alive()
    assert waiting_files(inbox) == [] and sorted(p.name for p in inbox.iterdir()) == [".claimed"]
