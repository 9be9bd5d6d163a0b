"""The arena end to end: the real `realm arena` CLI on the default hero, checkpoints, resume, control.

The helpers used here (BIN-like chats, a tiny training config, event readers) live in tests/helpers.py;
they are imported here under the same names, which tests/test_trainer_accelerate.py still imports from
this module.
"""

from __future__ import annotations

import re

import orjson
import pytest

from tests.helpers import (
    arena,
    assert_ledger_matches_folders,
    bin_chats,
    checkpoint_dirs,
    command_done,
    enqueue,
    events,
    last_event_id,
    query,
    run_realm,
    send_command,
    start_arena,
    tiny_config,
    wait_until,
)

__all__ = [
    "arena",
    "assert_ledger_matches_folders",
    "bin_chats",
    "enqueue",
    "events",
    "query",
    "tiny_config",
]

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
    "hero",  # preset, profile, base model and its digest, trainable and total parameters
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
    ev2 = events(home, since=ev[-1]["event_id"])
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
    # The default batch geometry (16 rows x 256 tokens per step). How soon a pause lands is measured
    # by bench/control.py; this test checks what happens, not how fast.
    tiny_config(home, save_steps=1000, batch_size=16, max_length=256, threads=0)
    enqueue(home, "first.jsonl", bin_chats(3000, seed=1))
    enqueue(home, "second.jsonl", bin_chats(3000, seed=2))
    proc = start_arena(home)

    def last_step() -> int:
        return max((e["step"] for e in events(home, "step")), default=0)

    try:
        wait_until(lambda: last_step() >= 5, 120, "training steps", proc=proc)
        sent = last_event_id(home)
        assert run_realm("pause", home=home).returncode == 0
        paused = wait_until(lambda: events(home, "trainer.paused"), 60, "trainer.paused", proc=proc)[0]
        assert paused["event_id"] > sent
        assert query(home, "SELECT value FROM state WHERE key = 'battle'")[0]["value"].count('"paused"')
        held = last_step()
        # Proof that the paused loop went round without stepping: a command sent now is taken only by
        # that loop (a second pause is taken and ignored), and no step comes before it is taken.
        again = send_command(home, "pause")
        wait_until(lambda: command_done(home, again), 60, "the paused trainer to take a command", proc=proc)
        assert last_step() == held, "a step ran while paused"
        assert proc.poll() is None

        run_realm("resume", home=home, check=True)
        wait_until(lambda: last_step() > held, 60, "steps after resume", proc=proc)
        run_realm("skip", home=home, check=True)
        end = wait_until(lambda: events(home, "battle.end"), 60, "battle.end", proc=proc)[0]
        assert (end["quest_id"], end["status"]) == (1, "skipped")
        wait_until(lambda: len(events(home, "battle.start")) == 2, 60, "the next battle", proc=proc)
        assert query(home, "SELECT status FROM quests ORDER BY id") == [
            {"status": "skipped"},
            {"status": "processing"},
        ]
        wait_until(lambda: last_step() > end["step"] + 2, 60, "quest 2 steps", proc=proc)
        run_realm("stop", home=home, check=True)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    stopped = events(home, "trainer.stopped")[-1]
    last = events(home, "checkpoint.saved")[-1]
    assert last["step"] == stopped["step"] == last_step()
    assert_ledger_matches_folders(home)
    assert query(home, "SELECT value FROM state WHERE key = 'battle'")[0]["value"].count('"stopped"')
