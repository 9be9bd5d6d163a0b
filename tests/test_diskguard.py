"""The disk guard (sentinels/diskguard.py) before every checkpoint, with thresholds, never a full disk.

One real arena on a copy of the session's trained home (checkpoints at steps 10, 20, 30) with
`sentinels.min_free_gb` set far above the disk's real free space and keep_last 1:
  - before the step-40 checkpoint, retention runs first (the vault's policy deletes the old
    checkpoints), the disk is still short, so training pauses: a `disk.low` event whose message says
    what to free, `trainer.paused` (disk_low), the battle state paused, and nothing written: no
    `.tmp-` folder, no new checkpoint, the ledger still equal to the folders;
  - `realm health` does not call that pause stuck (stuck_after_s is 2 s), but fails its disk check;
  - lowering the threshold in realm.yaml (what freeing space does) resumes it: `disk.ok`, the
    checkpoint lands, the run ends normally;
then a second arena, short of space again, gets SIGTERM while paused: it exits, and still nothing
partial is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sentinels.diskguard import GB, free_bytes
from tests.helpers import (
    REALM_PY,
    REPO,
    assert_ledger_matches_folders,
    bin_chats,
    clean_env,
    enqueue,
    events,
    last_event_id,
    run_realm,
    tiny_config,
    wait_until,
)


def configure(home: Path, min_free_gb: float) -> None:
    tiny_config(home, save_steps=10, keep_last=1)
    data = yaml.safe_load((home / "realm.yaml").read_text())
    data["sentinels"] = {"min_free_gb": min_free_gb, "warn_free_gb": 0.0, "stuck_after_s": 2.0}
    (home / "realm.yaml").write_text(yaml.safe_dump(data))


def far_above_free(home: Path) -> float:
    return round(free_bytes(home) / GB + 10_000, 3)  # 10 TB more than the disk has


def start_arena(home: Path, max_steps: int) -> subprocess.Popen:
    log = open(home / "arena-test.out", "ab")  # noqa: SIM115 - the child keeps it; a PIPE could fill
    return subprocess.Popen(
        [sys.executable, str(REALM_PY), "arena", "--max-steps", str(max_steps), "--home", str(home)],
        cwd=REPO,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def first(home: Path, kind: str, since: int, proc: subprocess.Popen, timeout: float = 180) -> dict:
    return wait_until(lambda: next(iter(events(home, kind, since)), None), timeout, kind, proc=proc)


def nothing_partial(home: Path, steps_before: set[int]) -> None:
    names = [p.name for p in (home / "models").iterdir()]
    assert not [n for n in names if n.startswith((".tmp-", ".trash-"))], names
    steps = {int(n.split("-")[1]) for n in names}
    assert steps <= steps_before, f"a checkpoint was written while short of disk: {names}"
    assert_ledger_matches_folders(home)


def test_retention_first_then_pause_then_resume_and_stop_without_partial(trained_copy):
    home = trained_copy
    before = {int(p.name.split("-")[1]) for p in (home / "models").iterdir()}
    assert before == {10, 20, 30}
    configure(home, far_above_free(home))
    enqueue(home, "more.jsonl", bin_chats(400, seed=7))
    since = last_event_id(home)
    proc = start_arena(home, max_steps=50)
    try:
        low = first(home, "disk.low", since, proc)
        # Retention ran first: keep_last 1 leaves the newest (and any aliased one).
        deleted = set(low["retention_deleted"])
        assert deleted and all(not (home / "models" / n).exists() for n in deleted), low
        assert "Free at least" in low["message"] and "sentinels.min_free_gb" in low["message"], low
        assert low["short"] > 0 and low["free"] < low["min_free"]
        paused = first(home, "trainer.paused", since, proc)
        assert paused["reason"] == "disk_low"
        st = json.loads(run_realm("status", "--json", home=home, check=True).stdout)
        assert st["battle"]["state"] == "paused" and st["battle"]["paused_reason"] == "disk_low"
        nothing_partial(home, before)
        # Past stuck_after_s with no step: paused, not stuck. The disk check fails.
        time.sleep(3)
        health = run_realm("health", "--json", "--check", "trainer", "--check", "disk", home=home)
        report = json.loads(health.stdout)
        assert health.returncode == 1 and report["problems"] == ["disk"], report
        assert report["checks"]["trainer"]["state"] == "paused", report
        nothing_partial(home, before)
        # What freeing space does: the threshold now fits; the guard sees it on its next look.
        configure(home, 0.0)
        first(home, "disk.ok", since, proc)
        assert proc.wait(180) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    saved = [e["step"] for e in events(home, "checkpoint.saved", since)]
    assert saved[:1] == [40] and saved[-1] == 50, saved
    assert_ledger_matches_folders(home)

    # Short again, and stopped (SIGTERM, as `realm down` sends) while paused: nothing partial.
    configure(home, far_above_free(home))
    before = {int(p.name.split("-")[1]) for p in (home / "models").iterdir()}
    since = last_event_id(home)
    proc = start_arena(home, max_steps=70)
    try:
        first(home, "trainer.paused", since, proc)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) != 0  # the stop could not checkpoint: not a clean stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = [e["message"] for e in events(home, "trainer.error", since)]
    assert any("DiskLow" in m and "Free at least" in m for m in errors), errors
    nothing_partial(home, before)
