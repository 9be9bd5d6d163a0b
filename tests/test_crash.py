"""kill -9 at exact moments (REALM_TEST_CRASH_AT) and at a random moment, then restart.

After every crash: no temp or half-deleted folder is listed and the ledger agrees with the folders;
each restart resumes at the newest complete checkpoint (its first step is that checkpoint's step + 1)
and the interrupted quest continues from the offset stored in that checkpoint. At the end every
quest is completed and the hero has trained on exactly every training example once: nothing lost,
nothing trained twice into the kept weights.
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from tests.helpers import (
    arena,
    assert_ledger_matches_folders,
    bin_chats,
    enqueue,
    events,
    last_event_id,
    query,
    start_arena,
    tiny_config,
    wait_until,
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


def quests_left(home, before) -> list[int]:
    """Ids of the quests a restart must still fight: not completed, and not the one the newest
    checkpoint finished (the restart marks that one completed without a battle)."""
    done_by_checkpoint = before["quest_id"] if before and before["quest_done"] else None
    rows = query(home, "SELECT id FROM quests WHERE status != 'completed' ORDER BY id")
    return [r["id"] for r in rows if r["id"] != done_by_checkpoint]


def run_and_check_resume(home, label: str, *args, env=None):
    """One arena run; asserts it resumed at the newest complete checkpoint. Returns the process.

    Every outcome is asserted, none skipped: the run trains iff quests were left, its first step
    follows the checkpoint's step, and its first battle resumes the checkpoint's quest at the stored
    offset when the checkpoint was inside one, or starts a quest from its beginning otherwise."""
    before = newest_checkpoint(home)
    left = quests_left(home, before)
    seen = last_event_id(home)
    proc = arena(home, *args, env=env)
    new = events(home, since=seen)
    steps = [e["step"] for e in new if e["kind"] == "step"]
    starts = [e for e in new if e["kind"] == "battle.start"]
    where = f"{label}: checkpoint {before and before['step']}, quests left {left}"
    if left:
        assert steps, f"{where}: the run trained no step\n{proc.stderr[-2000:]}"
        assert steps[0] == (before["step"] if before else 0) + 1, (where, steps[:3])
        assert starts, f"{where}: no battle started"
    else:
        assert not steps and not starts, f"{where}: nothing was left, yet the run trained {steps[:3]}"
    if before and not before["quest_done"]:
        # The checkpoint was inside a quest: the first battle continues it where it stopped.
        assert (starts[0]["quest_id"], starts[0]["resumed_at"]) == (
            before["quest_id"],
            {"epoch": before["quest_epoch"], "offset": before["quest_offset"]},
        ), (where, starts[0])
    elif starts:
        assert starts[0]["quest_id"] == left[0], (where, starts[0])
        assert starts[0]["resumed_at"] == {"epoch": 0, "offset": 0}, (where, starts[0])
    else:
        assert not left, where  # no checkpoint inside a quest, no battle: only when none was left
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
        proc = run_and_check_resume(home, point, "--until-idle", env={"REALM_TEST_CRASH_AT": point})
        assert proc.returncode == -signal.SIGKILL, f"{point} never reached:\n{proc.stderr[-2000:]}"
        # Whatever the crash left on disk, the ledger never lists an incomplete checkpoint.
        live = {r["name"] for r in query(home, "SELECT name FROM checkpoints WHERE deleted = 0")}
        for name in live:
            assert (home / "models" / name / ".ledger.json").is_file(), (point, name)
    proc = run_and_check_resume(home, "after the chain", "--until-idle")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_all_trained_once(home, 3)
    assert query(home, "SELECT count(*) AS n FROM quests WHERE progress_offset < 0") == [{"n": 0}]


@pytest.mark.slow
def test_kill_at_a_random_moment_then_resume(tmp_path, rng):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=4, keep_last=2)
    for i in range(2):
        enqueue(home, f"r{i}.jsonl", bin_chats(60, seed=20 + i))
    # The moment: once step `after` has been written, a random fraction of a step later (which lands
    # mid-step, mid-save or between them). Drawn from the test's seeded rng; the seed is printed.
    after, delay = rng.randint(1, 12), rng.uniform(0.0, 1.0)
    proc = start_arena(home, "--until-idle")
    try:
        wait_until(
            lambda: any(e["step"] >= after for e in events(home, "step")), 120, f"step {after}", proc=proc
        )
        # Not a synchronisation wait: this sleep is the random moment itself.
        time.sleep(delay * seconds_per_step(home))
        assert proc.poll() is None, "the arena ended before the kill"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc = run_and_check_resume(home, f"killed after step {after} + {delay:.2f} step", "--until-idle")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_all_trained_once(home, 2)


def seconds_per_step(home) -> float:
    """The mean time between the step events written so far (their own timestamps)."""
    ts = [e["ts"] for e in events(home, "step")]
    return (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else 0.5


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tiny_config(home, save_steps=1000)
    enqueue(home, "big.jsonl", bin_chats(1000, seed=3))
    proc = start_arena(home)
    try:
        wait_until(lambda: [e for e in events(home, "step") if e["step"] >= 3], 120, "steps", proc=proc)
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
