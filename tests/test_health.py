"""`realm health [--json]` (sentinels/health.py) on a real realm under `realm up`, and GET /api/health.

The realm is a copy of the session's trained home, up with every service (guardian, arena, Tavern,
Vault, Oracle) on free ports and the arena fighting a long quest. Healthy first (every check ok,
exit 0, and the Tavern's /api/health says the same); then each problem the issue names, each seen
by its own check with exit 1:
  - a killed service: the guardian is SIGSTOPped (so it cannot restart anything yet) and the Oracle
    kill -9ed: `service.oracle` fails; SIGCONT, and the guardian brings it back;
  - a stuck trainer: the arena is SIGSTOPped: `trainer` fails once sentinels.stuck_after_s passed
    (the guardian's own stuck check is off here; tests/test_supervision.py has it restart one);
  - a queue file missing for a queued row: `queue` fails, naming the quest;
  - low disk: a config whose sentinels.min_free_gb is above the real free space: `disk` fails;
  - a corrupted database: a copy of the home with garbage written into one page of realm.db:
    `database` fails (and the checks that read it are skipped, not reported as noise).
The top bar's light is checked in a real browser when chromium is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
import requests
import yaml

from sentinels.diskguard import GB, free_bytes
from sentinels.locks import is_held, read_pid
from tests.helpers import bin_chats, enqueue, isolated_config, run_realm, start_tavern, stop, wait_until

TINY_TRAINING = {
    "training.batch_size": 2,
    "training.max_length": 128,
    "training.save_steps": 100_000,  # no checkpoint (and no checkpoint hook) while the test looks
    "training.eval_every": 100_000,
    "training.warmup_steps": 5,
    "training.event_interval_s": 0.0,
    "training.threads": 1,
}
SENTINELS = {
    "sentinels.stuck_after_s": 5.0,
    "sentinels.stuck_check_s": 0.0,  # health only: the guardian must not restart the stopped arena
    "sentinels.min_free_gb": 0.0,  # a nearly full CI disk must not fail the healthy baseline
    "sentinels.warn_free_gb": 0.0,
}


def health(home: Path, *checks: str, config: Path | None = None) -> tuple[int, dict]:
    args = [a for c in checks for a in ("--check", c)]
    pre = ["--config", str(config)] if config else []
    proc = run_realm(*pre, "health", "--json", *args, home=home, timeout=120)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def failing(home: Path, check: str, *checks: str) -> dict | None:
    """The report once `check` fails (for wait_until), else None."""
    code, report = health(home, *checks)
    return report if code == 1 and check in report["problems"] else None


def passing(home: Path, *checks: str) -> dict | None:
    code, report = health(home, *checks)
    return report if code == 0 else None


def lock_pid(home: Path, name: str) -> int:
    return wait_until(
        lambda: is_held(home / "run", name) and read_pid(home / "run" / f"{name}.lock"), 60, name
    )


@pytest.fixture
def realm_up(trained_copy):
    home = trained_copy
    cfg = isolated_config(home, {**TINY_TRAINING, **SENTINELS})
    enqueue(home, "long.jsonl", bin_chats(4000, seed=3))  # fights for minutes: longer than the test
    queued = enqueue(home, "waiting.jsonl", bin_chats(20, seed=4))
    run_realm("up", home=home, check=True, timeout=60)
    try:
        yield home, cfg, queued
    finally:
        for name in ("guardian", "arena"):  # nothing may stay stopped, or `down` would wait for it
            pid = read_pid(home / "run" / f"{name}.lock")
            if pid and is_held(home / "run", name):
                os.kill(pid, signal.SIGCONT)
        run_realm("down", home=home, timeout=180)


def test_health_names_each_problem_with_its_own_check(realm_up):
    home, cfg, queued = realm_up
    names = ["service.guardian", "service.arena", "service.tavern", "service.vault", "service.oracle"]
    names += ["database", "disk", "trainer", "queue", "checkpoints"]

    # Healthy: every service up and answering, the arena fighting, exit 0.
    def fighting_and_healthy():
        report = passing(home)
        return report if report and report["checks"]["trainer"].get("state") == "fighting" else None

    report = wait_until(fighting_and_healthy, 120, "a healthy realm with the arena fighting", interval=1)
    assert list(report["checks"]) == names and report["problems"] == []
    tavern = f"http://127.0.0.1:{cfg['ports']['tavern']}"
    api = requests.get(f"{tavern}/api/health", timeout=60)
    assert api.status_code == 200 and api.json()["ok"] is True
    assert sorted(api.json()["checks"]) == sorted(names)  # Flask's JSON sorts keys

    # A killed service, while the guardian cannot restart it.
    guardian, oracle = lock_pid(home, "guardian"), lock_pid(home, "oracle")
    os.kill(guardian, signal.SIGSTOP)
    try:
        os.kill(oracle, signal.SIGKILL)
        report = wait_until(lambda: failing(home, "service.oracle", "service"), 30, "service.oracle failing")
        assert report["problems"] == ["service.oracle"], report
        assert "not running" in report["checks"]["service.oracle"]["message"]
    finally:
        os.kill(guardian, signal.SIGCONT)
    wait_until(lambda: passing(home, "service"), 60, "the guardian restarting the Oracle", interval=0.5)
    assert lock_pid(home, "oracle") != oracle

    # A stuck trainer: SIGSTOP, then no step for longer than stuck_after_s.
    arena = lock_pid(home, "arena")
    os.kill(arena, signal.SIGSTOP)
    try:
        report = wait_until(lambda: failing(home, "trainer", "trainer"), 60, "trainer stuck", interval=1)
        assert report["checks"]["trainer"]["message"].startswith("stuck: fighting quest"), report
    finally:
        os.kill(arena, signal.SIGCONT)
    wait_until(lambda: passing(home, "trainer"), 60, "the trainer stepping again", interval=0.5)

    # A queued quest whose file is gone.
    path = next((home / "queue" / "normal").glob(f"{queued:06d}__*"))
    path.unlink()
    code, report = health(home, "queue", "checkpoints", "database")
    assert code == 1 and report["problems"] == ["queue"], report
    assert report["checks"]["queue"]["missing_files"] == [
        f"quest {queued} (queued): {path.relative_to(home)}"
    ]

    # Low disk: a threshold above the real free space (a config passed with --config).
    low = home / "low-disk.yaml"
    data = yaml.safe_load((home / "realm.yaml").read_text())
    data["sentinels"]["min_free_gb"] = round(free_bytes(home) / GB + 10_000, 3)
    low.write_text(yaml.safe_dump(data))
    code, report = health(home, "disk", "database", config=low)
    assert code == 1 and report["problems"] == ["disk"], report
    assert "below sentinels.min_free_gb" in report["checks"]["disk"]["message"]


def test_corrupted_database_copy(trained_home, tmp_path):
    home = tmp_path / "corrupt"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("*.lock"))
    db = home / "realm.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file, none in the WAL
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    conn.close()
    code, report = health(home, "database", "queue", "checkpoints")
    assert code == 0, report  # the copy is healthy before the garbage
    with open(db, "r+b") as f:  # garbage over the events table's root page, header byte included
        f.seek((root - 1) * page_size)
        f.write(os.urandom(page_size))
    code, report = health(home, "database", "queue", "checkpoints", "trainer", "disk")
    assert code == 1 and report["problems"] == ["database"], report
    assert report["checks"]["database"]["status"] == "fail"
    assert {report["checks"][n]["status"] for n in ("queue", "checkpoints", "trainer")} == {"skip"}


@pytest.mark.browser
def test_top_bar_shows_health(trained_copy):
    from tests.test_browser_tavern import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    port = isolated_config(trained_copy, SENTINELS)["ports"]["tavern"]
    proc = start_tavern(trained_copy, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(base_url=f"http://127.0.0.1:{port}")
            page.goto("/")
            # The Tavern runs alone: no guardian, arena, Vault or Oracle; the light says which.
            page.wait_for_selector("#health[data-ok='false']", timeout=30000)
            label = page.text_content("#health .health-label")
            assert label.startswith("unwell: service.guardian, service.arena"), label
            assert "service.tavern" not in label
            assert "OK  service.tavern" in page.get_attribute("#health", "title")
            browser.close()
    finally:
        stop(proc)
