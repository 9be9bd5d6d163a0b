"""Intake end to end: a watcher running on a real realm home, a corpus of bad files dropped into
the inbox, each refused with its own reason and kept; good files (BOM, CRLF, growing) queued."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from arena.intake import Intake
from arena.intake.lineage import VALIDATOR_VERSION
from arena.intake.watcher import InboxWatcher
from sentinels.config import IntakeConfig
from watchtower.lineage import lineage_stats


def chat(i: int, answer: str = "hello there") -> dict:
    return {
        "messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": answer}]
    }


def jsonl(rows: list, eol: str = "\n") -> bytes:
    return "".join(json.dumps(r) + eol for r in rows).encode()


def metacog(text: str) -> bytes:
    return jsonl([{"text": text}])


EVAL_PROMPT = "What is 101 + 11 in binary?"


def write_evalset(home: Path) -> None:
    d = home / "evalsets" / "bin" / "v1"
    d.mkdir(parents=True)
    item = {"skill": "bin", "level": 1, "prompt": EVAL_PROMPT, "expected": "1000"}
    (d / "level-01.jsonl").write_text(json.dumps(item) + "\n")


def make_intake(realm, **cfg) -> Intake:
    return Intake(realm.home, realm.store, realm.events, IntakeConfig(**cfg))


def wait_for(pred, timeout: float = 15.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {pred}")


def quest_named(realm, name: str) -> dict | None:
    return realm.store.one("SELECT * FROM quests WHERE name = ? ORDER BY id DESC LIMIT 1", (name,))


def slow_writer(path: Path, lines: list[bytes], tail: bytes, pause: float) -> threading.Thread:
    def run():
        with open(path, "wb") as f:
            for line in lines:
                f.write(line)
                f.flush()
                time.sleep(pause)
            f.write(tail)

    t = threading.Thread(target=run)
    t.start()
    return t


# name -> (bytes, expected words in the reason). Every reason must be specific to its file.
CORPUS: dict[str, tuple[bytes, str]] = {
    "invalid_json.jsonl": (b'{"messages": [}\n', "line 1: invalid JSON"),
    "array.jsonl": (json.dumps([chat(1)]).encode() + b"\n", "a JSON array; quests are JSONL"),
    "empty.jsonl": (b"", "empty file"),
    "whitespace.jsonl": (b"  \n\n\t \n", "only whitespace"),
    "latin1.jsonl": (
        json.dumps(chat(1, "café au lait"), ensure_ascii=False).encode("latin-1") + b"\n",
        "not valid UTF-8 (byte 0xe9",
    ),
    "utf16.jsonl": (json.dumps(chat(1)).encode("utf-16"), "UTF-16"),
    "garbage.jsonl": (b"\x00\x01\x02\xff" + os.urandom(4000), "binary data"),
    "wrong_type.jsonl": (
        jsonl([{"messages": [{"role": "user", "content": 5}]}]),
        "message 1: 'content' must be a string; got an integer",
    ),
    "messages_string.jsonl": (
        jsonl([{"messages": "hello"}]),
        "line 1: 'messages' must be a list of {role, content}; got a string",
    ),
    "no_assistant.jsonl": (jsonl([{"messages": [{"role": "user", "content": "hi"}]}]), "no assistant turn"),
    "unknown_role.jsonl": (jsonl([{"messages": [{"role": "bot", "content": "hi"}]}]), "unknown role 'bot'"),
    "empty_content.jsonl": (jsonl([chat(1, "  ")]), "message 2: empty content (assistant)"),
    "unknown_field.jsonl": (jsonl([{**chat(1), "score": 3}]), "unknown field 'score' for chat_sft_v1"),
    "not_object.jsonl": (b'"just a string"\n', "expected a JSON object per line, got a string"),
    "no_spec.jsonl": (jsonl([{"question": "q", "answer": "a"}]), "no known spec fits this example"),
    "completion_half.jsonl": (jsonl([{"prompt": "p"}]), "missing 'completion'"),
    "two_think.jsonl": (metacog("Q?<think>a</think><think>b</think><answer>c</answer>"), "2 <think> tags"),
    "answer_first.jsonl": (metacog("Q?<answer>c</answer><think>a</think>"), "<answer> comes before <think>"),
    "leak.jsonl": (
        jsonl(
            [
                {
                    "messages": [
                        {"role": "user", "content": "Repeat: the answer is forty-two"},
                        {"role": "assistant", "content": "the answer is forty-two"},
                    ]
                }
            ]
        ),
        "answer leakage",
    ),
    "evalitem.jsonl": (
        jsonl(
            [
                chat(0),
                {
                    "messages": [
                        {"role": "user", "content": " What is 101 +  11 in binary?"},
                        {"role": "assistant", "content": "1000"},
                    ]
                },
            ]
        ),
        "line 2: eval quarantine: the prompt matches an eval-set item (bin level 1)",
    ),
    "errors_many.jsonl": (jsonl([{"messages": i} for i in range(30)] + [chat(99)]), "(and 29 more errors)"),
    "a..b.jsonl": (jsonl([chat(1)]), "'..' is not allowed"),
    "-rf.jsonl": (jsonl([chat(2)]), "a leading '-'"),
    "notes.txt": (jsonl([chat(3)]), "extension '.txt' is not accepted"),
    "bad_spec.jsonl": (jsonl([chat(4)]), "key 'spec': expected one of"),
    "bad_priority.jsonl": (jsonl([chat(5)]), "key 'priority': expected one of"),
    "bad_sidecar.jsonl": (jsonl([chat(6)]), "sidecar bad_sidecar.jsonl.meta.json: invalid JSON"),
    "skill_no_level.jsonl": (jsonl([{**chat(7), "metadata": {"skill": "bin"}}]), "metadata.level must be"),
}
SIDECARS = {
    "bad_spec.jsonl": b'{"spec": "chat_v9"}',
    "bad_priority.jsonl": b'{"priority": "urgent"}',
    "bad_sidecar.jsonl": b"{spec: chat}",
    "skill_no_level.jsonl": b'{"spec": "skill_v1"}',
}


def test_bad_corpus_refused_with_specific_reasons_while_the_watcher_keeps_running(realm, tmp_path):
    write_evalset(realm.home.root)
    inbox = realm.home.inbox
    intake = make_intake(realm, level="deep")
    watcher = InboxWatcher(intake).start()
    try:
        good = jsonl([chat(i) for i in range(5)])
        (inbox / "good.jsonl").write_bytes(good)
        wait_for(lambda: (q := quest_named(realm, "good.jsonl")) and q["status"] == "queued")

        expected = dict(CORPUS)
        for name, side in SIDECARS.items():
            (inbox / f"{name}.meta.json").write_bytes(side)
        for name, (data, _) in CORPUS.items():
            (inbox / name).write_bytes(data)
        (inbox / "dup.jsonl").write_bytes(good)
        expected["dup.jsonl"] = (good, "duplicate file: same sha256 as quest #1 (good.jsonl, queued)")
        (inbox / "huge_line.jsonl").write_bytes(b'{"text": "' + b"x" * (50 << 20) + b'"}\n')
        expected["huge_line.jsonl"] = (b"", "line 1: line is 50.0 MB; the longest line accepted is 16 MB")
        outside = tmp_path / "outside.jsonl"
        outside.write_bytes(good + b"\n")
        os.symlink(outside, inbox / "link.jsonl")
        expected["link.jsonl"] = (b"", "symlink pointing outside the inbox")
        lines = [json.dumps(chat(100 + i)).encode() + b"\n" for i in range(8)]
        writer = slow_writer(inbox / "growing_cut.jsonl", lines, b'{"messages": [{"ro', pause=0.1)
        expected["growing_cut.jsonl"] = (b"", "line 9: last line is cut off")

        reasons = {}
        for name, (_, words) in expected.items():
            q = wait_for(lambda n=name: quest_named(realm, n))
            assert q["status"] == "failed", (name, q)
            assert words in q["reason"], (name, q["reason"])
            reasons[name] = q["reason"]
            kept = realm.home.root / q["path"]
            assert kept.exists() or kept.is_symlink(), name  # never deleted
            err = json.loads((realm.home.root / q["error_path"]).read_text())
            assert err["message"] == q["reason"] and err["validator"]
        writer.join()
        assert len(set(reasons.values())) == len(expected) >= 25
        assert outside.read_bytes() == good + b"\n"  # the link's target is never touched
        err = json.loads(
            (realm.home.root / quest_named(realm, "errors_many.jsonl")["error_path"]).read_text()
        )
        assert err["errors_total"] == 30 and len(err["errors"]) == 20 and err["lines"][:3] == [1, 2, 3]
        assert err["validator"] == "spec.chat_sft_v1" and err["spec"] == "chat_sft_v1"
        assert quest_named(realm, "growing_cut.jsonl")["line_count"] == 9

        assert watcher.is_alive()
        (inbox / "after.jsonl").write_bytes(jsonl([chat(i) for i in range(50, 53)]))
        q = wait_for(lambda: (q := quest_named(realm, "after.jsonl")) and q["status"] == "queued" and q)
        assert q["example_count"] == 3
    finally:
        watcher.stop()
    assert not watcher.is_alive()
    assert sorted(p.name for p in inbox.iterdir()) == [".claimed"]  # nothing left behind
    assert list((inbox / ".claimed").iterdir()) == []
    stats = lineage_stats(realm.store)
    assert stats["rejections_by_validator"]["intake.sidecar"] == 3
    assert stats["rejections_by_validator"]["content.quarantine"] == 1
    assert sum(stats["rejections_by_validator"].values()) == len(expected)


def test_growing_file_is_read_only_when_complete(realm):
    inbox = realm.home.inbox
    with InboxWatcher(make_intake(realm)):
        lines = [json.dumps(chat(i)).encode() + b"\n" for i in range(12)]
        writer = slow_writer(inbox / "slow.jsonl", lines[:-1], lines[-1], pause=0.1)
        writer.join()
        q = wait_for(lambda: (q := quest_named(realm, "slow.jsonl")) and q)
    assert (q["status"], q["example_count"], q["line_count"]) == ("queued", 12, 12)


def test_bom_and_crlf_are_accepted(realm):
    intake = make_intake(realm)
    path = realm.home.inbox / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl([chat(i) for i in range(4)], eol="\r\n"))
    q = intake.process_file(path)
    assert (q.status, q.spec, q.example_count, q.line_count) == ("queued", "chat_sft_v1", 4, 4)


def test_duplicate_examples_dropped_and_file_rewritten(realm):
    intake = make_intake(realm)
    rows = [chat(i) for i in range(5)]
    text = jsonl(rows) + json.dumps(rows[0]).encode() + b"\n"
    text += json.dumps(rows[1], indent=None).replace(": ", ":   ").encode() + b"  \n\n" + jsonl([rows[2]])
    path = realm.home.inbox / "dups.jsonl"
    path.write_bytes(text)
    q = intake.process_file(path)
    assert (q.status, q.example_count, q.duplicates_dropped, q.line_count) == ("queued", 5, 3, 9)
    assert q.path.read_bytes() == jsonl(rows) + b"\n"  # blank line kept, dups gone
    assert q.lineage["sha256"] == q.sha256 != q.lineage["sha256_queued"]


def test_lineage_from_sidecar_and_stats_per_generator(realm):
    intake = make_intake(realm)
    side = {
        "spec": "skill_v1",
        "priority": "high",
        "generator": {"id": "guild.bin", "version": "3"},
        "name": "bin-l2",
        "version": "1.0",
        "license": "MIT",
        "source_url": "local://guild",
        "split": "train",
    }
    rows = [{**chat(i), "metadata": {"skill": "bin", "level": 2}} for i in range(3)]
    (realm.home.inbox / "skill.jsonl.meta.json").write_text(json.dumps(side))
    (realm.home.inbox / "skill.jsonl").write_bytes(jsonl(rows))
    q = intake.process_file(realm.home.inbox / "skill.jsonl")
    assert (q.status, q.priority, q.spec, q.skill, q.level) == ("queued", "high", "skill_v1", "bin", 2)
    lin = q.lineage
    assert lin["generator"] == {"id": "guild.bin", "version": "3"}
    assert {k: lin[k] for k in ("name", "version", "license", "source_url", "split")} == {
        "name": "bin-l2",
        "version": "1.0",
        "license": "MIT",
        "source_url": "local://guild",
        "split": "train",
    }
    assert (lin["original_name"], lin["line_count"], lin["size_bytes"]) == ("skill.jsonl", 3, q.size_bytes)
    assert lin["validators"] == {"intake.content": VALIDATOR_VERSION, "spec.skill_v1": VALIDATOR_VERSION}
    assert VALIDATOR_VERSION == 2
    assert (q.path.parent / (q.path.name + ".meta.json")).exists()
    (realm.home.inbox / "bad.jsonl.meta.json").write_text(json.dumps({"generator_id": "guild.bin"}))
    (realm.home.inbox / "bad.jsonl").write_bytes(jsonl([{"messages": []}]))
    assert intake.process_file(realm.home.inbox / "bad.jsonl").status == "failed"
    stats = lineage_stats(realm.store)
    assert stats["by_generator"]["guild.bin"] == {"queued": 1, "failed": 1}
    assert stats["rejections_by_validator"] == {"spec.chat_sft_v1": 1}


def test_levels_quick_standard_deep(realm):
    rows = [chat(i) for i in range(150)] + [{"messages": "oops"}]
    leak = jsonl([{"prompt": "Say exactly: good morning DIO", "completion": "good morning DIO"}])
    write_evalset(realm.home.root)
    evalrow = jsonl([{"prompt": EVAL_PROMPT, "completion": "1000"}])
    for level, want in (
        ("quick", ("queued", "queued", "failed")),
        ("standard", ("failed", "queued", "failed")),
        ("deep", ("failed", "failed", "failed")),
    ):
        intake = make_intake(realm, level=level)
        got = []
        for i, data in enumerate((jsonl(rows), leak, evalrow)):
            path = realm.home.inbox / f"{level}{i}.jsonl"
            path.write_bytes(data)
            got.append(intake.process_file(path).status)
            if got[-1] == "queued":
                intake.queue.cancel(quest_named(realm, path.name)["id"])  # free the sha for the next level
        assert tuple(got) == want, level
    off = make_intake(realm, quarantine=False)
    path = realm.home.inbox / "noquarantine.jsonl"
    path.write_bytes(evalrow)
    assert off.process_file(path).status == "queued"


def test_valid_specs_accepted(realm):
    intake = make_intake(realm, level="deep")
    cases = {
        "completion_v1": [{"prompt": "2+2=", "completion": "4"}, {"text": "plain text to learn"}],
        "metacog_v1": [
            {
                "text": "Q: 1+1?<think>add</think><answer>2</answer>",
                "plan_class": "direct",
                "target_budget": 16,
                "correct": True,
                "difficulty_bin": 1,
                "style_tag": "terse",
            }
        ],
        "chat_sft_v1": [
            {
                "messages": [{"role": "system", "content": "be brief"}, *chat(1)["messages"]],
                "metadata": {"src": "test"},
            }
        ],
    }
    for spec, rows in cases.items():
        path = realm.home.inbox / f"{spec}.jsonl"
        path.write_bytes(jsonl(rows))
        q = intake.process_file(path)
        assert (q.status, q.spec) == ("queued", spec), q.reason


def test_accept_upload_sanitises_name_and_limits_size(realm):
    from arena.intake import UploadError

    intake = Intake(realm.home, realm.store, realm.events, IntakeConfig(), max_upload_mb=1)
    q = intake.accept_upload("../../etc/-evil name.jsonl", jsonl([chat(1)]), priority="low")
    assert (q.status, q.name, q.priority, q.source) == ("queued", "evil_name.jsonl", "low", "upload")
    import io

    with pytest.raises(UploadError, match="limit of 1 MB"):
        intake.accept_upload("big.jsonl", io.BytesIO(b"x" * (2 << 20)))
    with pytest.raises(UploadError, match="priority"):
        intake.accept_upload("p.jsonl", b"{}", priority="now")
    assert [p.name for p in realm.home.inbox.iterdir() if p.name != ".claimed"] == []
    q2 = intake.accept_upload("x.txt", b"hello")
    assert q2.status == "failed" and "extension" in q2.reason and q2.path.read_bytes() == b"hello"


def test_interrupted_claim_returns_to_inbox_on_watcher_start(realm):
    intake = make_intake(realm)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid whose process has exited: its claim was interrupted
    stale = realm.home.inbox / ".claimed" / f"{gone.pid}-0-0"
    stale.mkdir(parents=True)
    (stale / "left.jsonl").write_bytes(jsonl([chat(1)]))
    # A live claimer's file (this process's own scan, say) is work in progress, not left over.
    live = realm.home.inbox / ".claimed" / f"{os.getpid()}-9-9"
    live.mkdir(parents=True)
    (live / "busy.jsonl").write_bytes(jsonl([chat(2)]))
    assert intake.recover_claims() == [realm.home.inbox / "left.jsonl"]
    assert (live / "busy.jsonl").exists()
    (live / "busy.jsonl").unlink()
    live.rmdir()
    stale.mkdir()  # left there again, for the watcher's own recovery at start
    os.replace(realm.home.inbox / "left.jsonl", stale / "left.jsonl")
    with InboxWatcher(intake):
        q = wait_for(lambda: (q := quest_named(realm, "left.jsonl")) and q)
    assert q["status"] == "queued"
    assert not (realm.home.inbox / ".claimed").exists() or not any((realm.home.inbox / ".claimed").iterdir())
