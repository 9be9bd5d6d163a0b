"""The arena end to end: the real `realm arena` CLI on the default hero, checkpoints, resume, control.

Helpers here (BIN-like chats, a tiny training config, event readers) are shared by the other
tests/test_trainer*.py and tests/test_crash*.py modules.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import REALM_PY, REPO, run_realm

CKPT_FILES = {
    ".ledger.json",
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "trainer_state.json",
    "trainer_state.pt",
}
SIDECAR_KEYS = {
    "step",
    "timestamp",
    "train_loss",
    "val_loss",
    "learning_rate",
    "epoch",
    "perplexity",
    "training_file",
    "quest_id",
    "skill_name",
    "skill_level",
    "total_examples_trained",
    "size_bytes",
    "has_optimizer",
    "ledger_version",
    "name",
}


def circled(n: int) -> str:
    return "".join("⓪①"[int(b)] for b in bin(n)[2:])


def bin_chats(n: int, seed: int = 0, bits: int = 6) -> list[dict]:
    """Distinct BIN-like addition chats ("Compute: add(①⓪, ①①)" -> "①⓪①")."""
    rng = random.Random(seed)
    pairs = rng.sample([(a, b) for a in range(2**bits) for b in range(2**bits)], n)
    return [
        {
            "messages": [
                {"role": "user", "content": f"Compute: add({circled(a)}, {circled(b)})"},
                {"role": "assistant", "content": circled(a + b)},
            ]
        }
        for a, b in pairs
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_config(home: Path, **training) -> None:
    """A realm.yaml in the home: load_config picks it up for every command run on that home."""
    cfg = {
        "batch_size": 2,
        "max_length": 128,
        "save_steps": 15,
        "keep_last": 3,
        "eval_every": 1000,
        "warmup_steps": 5,
        "event_interval_s": 0.0,
        "val_fraction": 0.05,
        "threads": 1,
        **training,
    }
    (home / "realm.yaml").write_text(yaml.safe_dump({"training": cfg, "guild": {"auto_generate": False}}))


def enqueue(home: Path, name: str, records: list[dict], priority: str = "normal") -> int:
    """Put a quest straight into the queue (as intake would after its checks)."""
    from arena.queue import QuestQueue
    from realm import Realm

    realm = Realm.open(home)
    realm.init()
    src = write_jsonl(home / f".{name}.tmp", records)
    quest = QuestQueue(realm.home, realm.store, realm.events).enqueue(
        src, name=name, spec="chat_sft_v1", example_count=len(records)
    )
    realm.store.close()
    return quest.id


def events(home: Path, kind: str | None = None) -> list[dict]:
    from vault.events import EventLog
    from vault.store import Store

    store = Store.for_home(home)
    try:
        return [
            {"kind": e.kind, "ts": e.ts, **e.payload}
            for e in EventLog(store).since(0, kinds=[kind] if kind else None, limit=100_000)
        ]
    finally:
        store.close()


def query(home: Path, sql: str, params=()) -> list[dict]:
    from vault.store import Store

    store = Store.for_home(home)
    try:
        return store.query(sql, params)
    finally:
        store.close()


def checkpoint_dirs(home: Path) -> list[str]:
    return sorted((p.name for p in (home / "models").iterdir()), key=lambda n: (len(n), n))


def arena(home: Path, *args: str, env: dict | None = None, timeout: float = 300):
    return run_realm("arena", *args, home=home, env=env, timeout=timeout)


def start_arena(home: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    import os

    full = {**os.environ, **(env or {})}
    full.pop("REALM_HOME", None)
    return subprocess.Popen(
        [sys.executable, str(REALM_PY), "arena", *args, "--home", str(home)],
        cwd=REPO,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_ledger_matches_folders(home: Path) -> None:
    folders = {p.name for p in (home / "models").iterdir()}
    assert not [n for n in folders if n.startswith((".tmp-", ".trash-"))], folders
    for name in folders:
        assert (home / "models" / name / ".ledger.json").is_file(), name
    live = {r["name"] for r in query(home, "SELECT name FROM checkpoints WHERE deleted = 0")}
    assert live == folders


# ---- the end-to-end test -------------------------------------------------------------------------
@pytest.mark.slow
def test_arena_trains_checkpoints_and_resumes_exactly(tmp_path):
    homes = {k: tmp_path / k for k in ("run", "straight")}
    for h in homes.values():
        h.mkdir()
        tiny_config(h)
        enqueue(h, "bin_add.jsonl", bin_chats(400))
    home = homes["run"]

    first = arena(home, "--max-steps", "40")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "arena stopped at step 40" in first.stdout

    # Exact folders (keep_last=3 of 15, 30, 40), exact files, sidecar fields, ledger rows.
    names = checkpoint_dirs(home / "")
    assert [re.sub(r"-\d{8}-\d{4}$", "", n) for n in names] == [
        "checkpoint-15",
        "checkpoint-30",
        "checkpoint-40",
    ]
    assert all(re.fullmatch(r"checkpoint-\d+-\d{8}-\d{4}", n) for n in names)
    for n in names:
        assert {p.name for p in (home / "models" / n).iterdir()} == CKPT_FILES
    side = orjson.loads((home / "models" / names[-1] / ".ledger.json").read_bytes())
    assert set(side) == SIDECAR_KEYS
    assert (side["step"], side["quest_id"], side["training_file"]) == (40, 1, "bin_add.jsonl")
    assert side["has_optimizer"] is True and side["ledger_version"] == 1
    assert side["val_loss"] > 0 and side["train_loss"] > 0 and side["size_bytes"] > 1_000_000
    assert side["perplexity"] == pytest.approx(2.718281828 ** side["val_loss"], rel=1e-6)
    rows = query(home, "SELECT step, name, quest_id, deleted FROM checkpoints ORDER BY step")
    assert [(r["step"], r["deleted"]) for r in rows] == [(15, 0), (30, 0), (40, 0)]
    assert_ledger_matches_folders(home)

    ev = events(home)
    kinds = [e["kind"] for e in ev]
    assert kinds.count("battle.start") == 1 and "battle.end" not in kinds
    assert [e["step"] for e in ev if e["kind"] == "step"] == list(range(1, 41))
    assert [e["step"] for e in ev if e["kind"] == "checkpoint.saved"] == [15, 30, 40]
    assert kinds[-1] == "trainer.stopped"
    step = next(e for e in ev if e["kind"] == "step")
    assert set(step) >= {
        "loss",
        "lr",
        "tokens_per_s",
        "examples_per_s",
        "quest_id",
        "progress",
        "eta_s",
        "xp",
        "level",
    }

    state = orjson.loads((home / "models" / names[-1] / "trainer_state.json").read_bytes())
    quest = query(home, "SELECT status, progress_offset, progress_epoch FROM quests WHERE id = 1")[0]
    assert quest == {"status": "processing", "progress_offset": state["quest_offset"], "progress_epoch": 0}
    assert state["quest_offset"] == state["examples_trained"] > 0

    # Resume to step 80: the step count and the quest offset continue.
    second = arena(home, "--max-steps", "80")
    assert second.returncode == 0, second.stdout + second.stderr
    ev2 = events(home)[len(ev) :]
    start = next(e for e in ev2 if e["kind"] == "battle.start")
    assert start["resumed_at"] == {"epoch": 0, "offset": state["quest_offset"]}
    assert start["step"] == 40
    assert [e["step"] for e in ev2 if e["kind"] == "step"] == list(range(41, 81))
    quest2 = query(home, "SELECT progress_offset FROM quests WHERE id = 1")[0]
    assert quest2["progress_offset"] > state["quest_offset"]
    assert [re.sub(r"-\d{8}-\d{4}$", "", n) for n in checkpoint_dirs(home)] == [
        "checkpoint-60",
        "checkpoint-75",
        "checkpoint-80",
    ]
    assert_ledger_matches_folders(home)

    # Exact resume: an uninterrupted run to 80 has the same losses at every step.
    straight = arena(homes["straight"], "--max-steps", "80")
    assert straight.returncode == 0, straight.stderr
    resumed = {e["step"]: e["loss"] for e in ev + ev2 if e["kind"] == "step"}
    ref = {e["step"]: e["loss"] for e in events(homes["straight"], "step")}
    assert resumed.keys() == ref.keys()
    assert max(abs(resumed[k] - ref[k]) for k in ref) < 1e-4


@pytest.mark.slow
def test_pause_resume_skip_stop(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # The default batch geometry (16 rows x 256 tokens per step): pause must land within 2 s of it.
    tiny_config(home, save_steps=1000, batch_size=16, max_length=256, threads=0)
    enqueue(home, "first.jsonl", bin_chats(3000, seed=1))
    enqueue(home, "second.jsonl", bin_chats(3000, seed=2))
    proc = start_arena(home)
    try:
        wait_for(lambda: [e for e in events(home, "step") if e["step"] >= 5], 60, "training steps")
        t_sent = time.time()
        assert run_realm("pause", home=home).returncode == 0
        paused = wait_for(lambda: events(home, "trainer.paused"), 10, "trainer.paused")[0]
        cmd_ts = query(home, "SELECT ts FROM commands WHERE action = 'pause'")[0]["ts"]
        assert paused["ts"] - cmd_ts < 2.0, "pause took effect later than 2 s after the command"
        assert paused["ts"] - t_sent < 5.0
        assert query(home, "SELECT value FROM state WHERE key = 'battle'")[0]["value"].count('"paused"')
        held = max(e["step"] for e in events(home, "step"))
        time.sleep(1.0)
        assert max(e["step"] for e in events(home, "step")) == held  # no step while paused
        assert proc.poll() is None

        run_realm("resume", home=home, check=True)
        wait_for(lambda: max(e["step"] for e in events(home, "step")) > held, 10, "steps after resume")
        run_realm("skip", home=home, check=True)
        end = wait_for(lambda: events(home, "battle.end"), 10, "battle.end")[0]
        assert (end["quest_id"], end["status"]) == (1, "skipped")
        wait_for(lambda: len(events(home, "battle.start")) == 2, 10, "the next battle")
        assert query(home, "SELECT status FROM quests ORDER BY id") == [
            {"status": "skipped"},
            {"status": "processing"},
        ]
        wait_for(lambda: max(e["step"] for e in events(home, "step")) > end["step"] + 2, 10, "quest 2 steps")
        run_realm("stop", home=home, check=True)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    stopped = events(home, "trainer.stopped")[-1]
    last = events(home, "checkpoint.saved")[-1]
    assert last["step"] == stopped["step"] == max(e["step"] for e in events(home, "step"))
    assert_ledger_matches_folders(home)
    assert query(home, "SELECT value FROM state WHERE key = 'battle'")[0]["value"].count('"stopped"')
