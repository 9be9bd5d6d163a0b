"""Logs (issue 12, defect 10): each process its own rotated file, bounded child output, `realm logs`."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sentinels.config import LoggingConfig
from sentinels.guardian import Guardian, Service
from tests.helpers import (
    REALM_PY,
    REPO,
    clean_env,
    free_port,
    run_realm,
    start_tavern,
    stop,
    wait_until,
    write_home_config,
)

PID = re.compile(r"^\S+ \S+ \S+ \S+\[(\d+)\]: ")


def pids(path: Path) -> set[int]:
    """The process ids that wrote the log lines of a file."""
    return {int(m.group(1)) for line in path.read_text().splitlines() if (m := PID.match(line))}


def test_each_process_writes_its_own_log(home):
    write_home_config(home, {"guild.auto_generate": False, "training.threads": 1})
    port = free_port()
    tavern = start_tavern(home, port)
    try:
        arena = run_realm("arena", "--until-idle", home=home, check=True, timeout=300)
        run_realm("status", home=home, check=True)
    finally:
        assert stop(tavern) == 0
    logs = home / "logs"
    assert not (logs / "realm.log").exists(), "one shared file for every process is what broke rotation"
    # The Tavern's file holds the Tavern (gunicorn's master, then the worker it forked) and no one else.
    tavern_pids, arena_pids, cli_pids = (pids(logs / f"{s}.log") for s in ("tavern", "arena", "cli"))
    assert tavern.pid in tavern_pids
    assert len(arena_pids) == 1, "only the arena process writes arena.log"
    assert "arena process 0 of 1" in (logs / "arena.log").read_text()
    assert "arena stopped" in arena.stdout
    assert (logs / "cli.log").exists()  # `realm status`, a one-shot command, logs there
    assert not tavern_pids & arena_pids and not cli_pids & (tavern_pids | arena_pids)


def test_one_shot_commands_rotate_the_shared_cli_log_at_start(home):
    write_home_config(home, {"logging.max_bytes": 1000, "logging.backups": 2})
    logs = home / "logs"
    logs.mkdir()
    (logs / "cli.log").write_text("old line\n" * 200)  # 1,800 bytes: over the limit
    run_realm("status", home=home, check=True)
    assert (logs / "cli.log.1").read_text() == "old line\n" * 200
    assert "old line" not in (logs / "cli.log").read_text()
    run_realm("status", home=home, check=True)
    assert not (logs / "cli.log.2").exists()  # the new cli.log is still small: no rotation


def test_child_output_is_rotated_at_start_and_while_it_runs(realm):
    logs = realm.home.logs
    (logs / "chatty.out").write_text("from the last run\n" * 2000)
    # A child that writes to stdout without end, and reports whether its console logging is off.
    chatty = Service(
        "chatty",
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "print('console', os.environ.get('REALM_LOG_CONSOLE'), flush=True)\n"
            "while True:\n"
            "    sys.stdout.write('x' * 999 + '\\n'); sys.stdout.flush(); time.sleep(0.01)\n",
        ],
    )
    stop_event = threading.Event()
    g = Guardian(realm.home.root, [chatty], stop_event, LoggingConfig(max_bytes=20_000, backups=2))
    t = threading.Thread(target=g.run)
    t.start()
    try:
        out, one, two = logs / "chatty.out", logs / "chatty.out.1", logs / "chatty.out.2"
        # Rotated before the child started: the last run's output is the first backup.
        wait_until(
            lambda: out.exists() and out.read_text().startswith("console 0\n"), 30, "the child's output"
        )
        assert one.read_text().startswith("from the last run\n")
        # Then rotated while it runs: the first backup moves to .2, the running output to .1.
        wait_until(lambda: two.exists() and two.read_text().startswith("from the last run"), 60, "a rotation")
        wait_until(lambda: one.read_text().startswith("console 0\n"), 60, "the copied output")
        assert not (logs / "chatty.out.3").exists()  # backups=2
    finally:
        stop_event.set()
        t.join(30)
    assert not t.is_alive()
    assert chatty.proc.poll() is not None


def test_realm_logs_shows_one_or_every_service(home):
    logs = home / "logs"
    logs.mkdir()
    (logs / "arena.log").write_text("".join(f"arena line {i}\n" for i in range(100)))
    (logs / "tavern.log").write_text("tavern line\n")
    one = run_realm("logs", "arena", "-n", "5", home=home, check=True)
    assert one.stdout.splitlines() == [f"arena line {i}" for i in range(95, 100)]
    every = run_realm("logs", home=home, check=True).stdout
    assert f"==> {logs / 'arena.log'} <==" in every and f"==> {logs / 'tavern.log'} <==" in every
    assert "tavern line" in every and "arena line 99" in every
    bad = run_realm("logs", "nope", home=home)
    assert bad.returncode == 2
    assert "no log for 'nope'" in bad.stderr and "arena" in bad.stderr and "tavern" in bad.stderr


def test_realm_logs_follows_across_rotation(home):
    logs = home / "logs"
    logs.mkdir()
    log = logs / "arena.log"
    log.write_text("before 1\nbefore 2\n")
    proc = subprocess.Popen(
        [sys.executable, str(REALM_PY), "logs", "arena", "-f", "-n", "1", "--home", str(home)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in proc.stdout], daemon=True).start()

    def next_line() -> str:
        return wait_until(lambda: _get(lines), 30, "a line from `realm logs -f`")

    try:
        assert next_line() == "before 2"  # the tail first; from here the follower is at the end
        with log.open("a") as f:
            f.write("appended\npart")
            f.flush()
            f.write("ial\n")
        assert next_line() == "appended"
        assert next_line() == "partial"  # a line is printed whole, once its newline is written
        log.rename(logs / "arena.log.1")  # what RotatingFileHandler does
        log.write_text("after rotation\n")
        assert next_line() == "after rotation"
        assert lines.empty(), "a line was printed twice"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def _get(q: queue.Queue[str]) -> str | None:
    try:
        return q.get_nowait()
    except queue.Empty:
        return None
