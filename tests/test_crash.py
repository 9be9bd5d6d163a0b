"""kill -9 at exact moments (REALM_TEST_CRASH_AT) and at a random moment, then restart.

After every crash: no temp or half-deleted folder is listed and the ledger agrees with the folders;
each restart resumes at the newest complete checkpoint (its first step is that checkpoint's step + 1)
and the interrupted quest continues from the offset stored in that checkpoint. At the end every
quest is completed and the hero has trained on exactly every training example once: nothing lost,
nothing trained twice into the kept weights.
"""

from __future__ import annotations

import random
import signal
import time

import orjson
import pytest

from tests.test_trainer import (
    arena,
    assert_ledger_matches_folders,
    bin_chats,
    enqueue,
    events,
    query,
    start_arena,
    tiny_config,
    wait_for,
)

# In order: each restart hits the next point (a prune needs a third checkpoint on disk, a battle end
# comes before the next quest's start, and so on), with quests of ~10 steps and a save every 5.
CHAIN = [
    "mid_step@7",  # inside a step, after backward, before the optimizer step
    "checkpoint_write@1",  # weights written into the temp folder, no sidecar yet
    "checkpoint_renamed@1",  # folder complete and renamed, ledger row not yet written
    "prune@1",  # retention: ledger row marked deleted, folder renamed to .trash-, not yet removed
    "battle_end@1",  # end-of-battle checkpoint saved, quest not yet marked completed
    "between_quests@1",  # quest finished, next one not yet claimed
]


def newest_checkpoint(home):
    complete = [
        p
        for p in (home / "models").iterdir()
        if p.name.startswith("checkpoint-") and (p / ".ledger.json").is_file()
    ]
    cps = sorted(complete, key=lambda p: int(p.name.split("-")[1]))
    if not cps:
        return None
    return orjson.loads((cps[-1] / "trainer_state.json").read_bytes())


def run_and_check_resume(home, *args, env=None):
    """One arena run; asserts it resumed at the newest complete checkpoint. Returns the process."""
    before = newest_checkpoint(home)
    seen = events(home)[-1]["ts"] if events(home) else 0
    proc = arena(home, *args, env=env)
    new = [e for e in events(home) if e["ts"] > seen]
    steps = [e["step"] for e in new if e["kind"] == "step"]
    if steps:
        assert steps[0] == (before["step"] if before else 0) + 1, (before, steps[:3])
    starts = [e for e in new if e["kind"] == "battle.start"]
    if before and starts and starts[0]["quest_id"] == before["quest_id"] and not before["quest_done"]:
        assert starts[0]["resumed_at"] == {"epoch": before["quest_epoch"], "offset": before["quest_offset"]}
    return proc


def assert_all_trained_once(home, n_quests):
    assert query(home, "SELECT status FROM quests") == [{"status": "completed"}] * n_quests
    train = {e["quest_id"]: e["train_examples"] for e in events(home, "battle.start")}
    final = newest_checkpoint(home)
    assert final["examples_trained"] == sum(train.values())
    assert final["completed_quests"] == n_quests
    assert_ledger_matches_folders(home)


@pytest.mark.slow
def test_kill_at_exact_moments_then_resume(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=5, keep_last=2, val_fraction=0.05)
    for i in range(3):
        enqueue(home, f"q{i}.jsonl", bin_chats(40, seed=10 + i))
    for point in CHAIN:
        proc = run_and_check_resume(home, "--until-idle", env={"REALM_TEST_CRASH_AT": point})
        assert proc.returncode == -signal.SIGKILL, f"{point} never reached:\n{proc.stderr[-2000:]}"
        # Whatever the crash left on disk, the ledger never lists an incomplete checkpoint.
        live = {r["name"] for r in query(home, "SELECT name FROM checkpoints WHERE deleted = 0")}
        for name in live:
            assert (home / "models" / name / ".ledger.json").is_file(), (point, name)
    proc = run_and_check_resume(home, "--until-idle")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_all_trained_once(home, 3)
    assert query(home, "SELECT count(*) AS n FROM quests WHERE progress_offset < 0") == [{"n": 0}]


@pytest.mark.slow
def test_kill_at_a_random_moment_then_resume(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=4, keep_last=2)
    for i in range(2):
        enqueue(home, f"r{i}.jsonl", bin_chats(60, seed=20 + i))
    proc = start_arena(home, "--until-idle")
    try:
        wait_for(lambda: events(home, "step"), 60, "the first step")
        time.sleep(random.uniform(0.2, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = run_and_check_resume(home, "--until-idle")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_all_trained_once(home, 2)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=1000)
    enqueue(home, "big.jsonl", bin_chats(1000, seed=3))
    proc = start_arena(home)
    try:
        wait_for(lambda: [e for e in events(home, "step") if e["step"] >= 3], 60, "steps")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    step = events(home, "trainer.stopped")[-1]["step"]
    assert newest_checkpoint(home)["step"] == step == events(home, "step")[-1]["step"]
    assert (
        query(home, "SELECT progress_offset FROM quests")[0]["progress_offset"]
        == newest_checkpoint(home)["quest_offset"]
    )
