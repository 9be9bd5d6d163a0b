"""Process lifecycle (issue 12, defect 9): a clean stop under `realm up` stays stopped.

`realm stop` checkpoints the arena and it exits 0; the guardian must not restart it until
`realm resume` or the next `realm up`. Runs the real `realm up` on a temporary home with free ports
and no idle-quest training.
"""

from __future__ import annotations

import json

import pytest

from sentinels.locks import is_held
from tests.helpers import WaitTimeout, isolated_config, query, run_realm, wait_until

# The guardian restarted a cleanly exited child after its 1 s backoff; watching several times that
# long for a restart that must not come is what shows the stop held.
NO_RESTART_WINDOW_S = 5


def arena_up(home) -> bool:
    return is_held(home / "run", "arena")


def battle_state(home) -> str | None:
    rows = query(home, "SELECT value FROM state WHERE key = 'battle'")
    return json.loads(rows[0]["value"]).get("state") if rows else None


def wait_arena_ready(home) -> None:
    """The arena holds its lock and has published `idle` (a stopped one left `stopped`): it is in its
    loop, taking commands."""
    wait_until(lambda: arena_up(home), 120, "the arena to start")
    wait_until(lambda: battle_state(home) == "idle", 120, "the arena's idle state")


def stopped_lines(home) -> int:
    log = home / "logs" / "guardian.log"
    return log.read_text().count("arena stopped cleanly") if log.exists() else 0


def assert_stays_stopped(home) -> None:
    with pytest.raises(WaitTimeout):
        wait_until(lambda: arena_up(home), NO_RESTART_WINDOW_S, "a restart that must not happen")


def test_stop_under_up_stays_stopped_until_resume_or_up(home):
    isolated_config(home, {"training.threads": 1})
    up = run_realm("up", home=home, check=True, timeout=60)
    assert "the realm is up" in up.stdout
    try:
        wait_arena_ready(home)

        # 1. `realm stop`: the arena checkpoints, exits 0, and the guardian leaves it stopped.
        stop = run_realm("stop", home=home, check=True)
        assert "stays stopped until `realm resume` or `realm up`" in stop.stdout
        wait_until(lambda: not arena_up(home), 120, "the arena to stop")
        wait_until(lambda: stopped_lines(home) == 1, 30, "the guardian to see the clean stop")
        assert_stays_stopped(home)
        assert is_held(home / "run", "guardian") and is_held(home / "run", "tavern")

        # 2. A second stop, sent while no arena runs, must not stop the arena `resume` starts.
        stale = run_realm("stop", home=home, check=True)
        assert "stop sent" in stale.stdout
        resume = run_realm("resume", home=home, check=True)
        assert "starts the stopped arena again" in resume.stdout
        wait_arena_ready(home)
        expired = query(home, "SELECT action FROM commands WHERE status = 'expired' ORDER BY id")
        assert [r["action"] for r in expired] == ["stop", "resume"]
        assert arena_up(home)

        # 3. Stopped again, the next `realm up` (the guardian still runs) starts it.
        run_realm("stop", home=home, check=True)
        wait_until(lambda: not arena_up(home), 120, "the arena to stop again")
        wait_until(lambda: stopped_lines(home) == 2, 30, "the guardian to see the second stop")
        again = run_realm("up", home=home, check=True, timeout=60)
        assert "already up" in again.stdout
        wait_arena_ready(home)
    finally:
        down = run_realm("down", home=home, timeout=180)
    assert down.returncode == 0 and "the realm is down" in down.stdout, down.stdout + down.stderr
    assert not arena_up(home) and not is_held(home / "run", "guardian")

    # Every checkpointing stop left a trainer.stopped event; each arena wrote only its own log,
    # and its records went to arena.log, not a second time into the raw output file arena.out.
    assert len(query(home, "SELECT id FROM events WHERE kind = 'trainer.stopped'")) == 3
    logs = home / "logs"
    assert (logs / "arena.log").read_text().count("arena process 0 of 1") == 3
    assert "arena process 0 of 1" not in (logs / "arena.out").read_text()
