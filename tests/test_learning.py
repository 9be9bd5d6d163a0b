"""DIO really learns: a fresh realm, no files dropped, levels BIN from 0 to 1 through the real daemon.

This runs `bench/learning.py`, which starts `realm arena` on a fresh home, lets the guild write idle
quests and evaluate, and stops the daemon through battle control once BIN level 1 is mastered. The
level-up comes from real evals (mean accuracy of the last 3 at level 1 >= 0.8), so the test fails
if DIO does not learn.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.helpers import LEARNING_BUDGET_MIN, LEARNING_TIMEOUT_S


@pytest.mark.slow
@pytest.mark.timeout(LEARNING_TIMEOUT_S)
def test_fresh_realm_levels_bin_up_through_the_daemon(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "learning.py"),
            "--levels",
            "1",
            "--budget-min",
            str(LEARNING_BUDGET_MIN),
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=LEARNING_TIMEOUT_S - 60,
    )
    assert proc.stdout, proc.stderr
    result = json.loads(proc.stdout)
    assert result["reached"], json.dumps(result, indent=1)
    assert "1" in result["mastered"]
    assert result["arena_exit_code"] == 0

    from sentinels.realm import Realm

    realm = Realm.open(home)
    evals = realm.store.query("SELECT level, accuracy FROM evals WHERE skill = 'bin' ORDER BY id")
    last3 = [e["accuracy"] for e in evals if e["level"] == 1][-3:]
    assert len(last3) == 3 and sum(last3) / 3 >= 0.8 - 1e-9  # the guild's own float tolerance
    assert realm.store.one("SELECT mastered_level FROM skills WHERE id = 'bin'")["mastered_level"] >= 1
    kinds = {e.kind for e in realm.events.since(0, limit=100000)}
    assert {"quest.queued", "battle.start", "eval.done", "skill.level_up", "checkpoint.saved"} <= kinds
    # Every quest was written by the guild and came through intake.
    sources = {r["source"] for r in realm.store.query("SELECT DISTINCT source FROM quests")}
    assert sources == {"guild"}, sources
