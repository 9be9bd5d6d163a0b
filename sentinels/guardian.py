"""The guardian: runs the realm's local services as child processes and restarts any that crash.

`realm up` starts the guardian detached; `realm down` sends it SIGTERM, and it passes SIGTERM on to
each child (the arena daemon checkpoints before it exits) and waits for them. A child that exits
with an error is restarted with exponential backoff (1 s doubling to 60 s); one that ran for a
minute resets its backoff.

A child that exits with code 0 finished on purpose (`realm stop` checkpoints the arena and exits 0),
so it stays stopped: restarting it would undo the stop. SIGUSR1 (`wake()`, sent by `realm resume`
and by `realm up` when the guardian already runs) starts the stopped services again.

Each child's stdout/stderr goes to `logs/<service>.out`, kept bounded as sentinels.logs describes;
its log records go to its own `logs/<service>.log`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sentinels.config import LoggingConfig
from sentinels.locks import InstanceLock, is_held, read_pid
from sentinels.logs import CONSOLE_ENV, copy_truncate, out_path, rotate

log = logging.getLogger("realm.guardian")

REALM_PY = Path(__file__).resolve().parent.parent / "realm.py"


@dataclass
class Service:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    backoff: float = 1.0
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = field(default=0.0)
    stopped: bool = False  # exited 0: stays down until woken (SIGUSR1)


class Guardian:
    def __init__(
        self,
        home: Path,
        services: list[Service],
        stop: threading.Event | None = None,
        logging_cfg: LoggingConfig | None = None,
        wake: threading.Event | None = None,
    ):
        self.home = Path(home)
        self.services = services
        self.stop_event = stop or threading.Event()
        self.wake_event = wake or threading.Event()
        self.logging_cfg = logging_cfg or LoggingConfig()

    def _spawn(self, svc: Service) -> None:
        cfg = self.logging_cfg
        path = out_path(self.home / "logs", svc.name)
        rotate(path, cfg.max_bytes, cfg.backups)
        out = open(path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        # The child's records go to its own rotated .log; on the console they would fill the .out twice.
        env = {**os.environ, CONSOLE_ENV: "0"}
        svc.proc = subprocess.Popen(svc.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.home, env=env)
        out.close()
        svc.started_at = time.monotonic()
        svc.stopped = False
        log.info("started %s (pid %s): %s", svc.name, svc.proc.pid, " ".join(svc.argv))

    def _wake(self) -> None:
        for svc in self.services:
            if svc.stopped:
                log.info("%s: woken; starting it again", svc.name)
                svc.stopped, svc.backoff, svc.next_start = False, 1.0, 0.0

    def run(self) -> None:
        cfg = self.logging_cfg
        with InstanceLock(self.home / "run", "guardian"):
            for svc in self.services:
                self._spawn(svc)
            while not self.stop_event.wait(0.5):
                if self.wake_event.is_set():
                    self.wake_event.clear()
                    self._wake()
                now = time.monotonic()
                for svc in self.services:
                    if svc.proc is None:
                        if not svc.stopped and now >= svc.next_start:
                            self._spawn(svc)
                        continue
                    code = svc.proc.poll()
                    if code is None:
                        if now - svc.started_at > 60:
                            svc.backoff = 1.0
                        copy_truncate(out_path(self.home / "logs", svc.name), cfg.max_bytes, cfg.backups)
                        continue
                    svc.proc = None
                    if code == 0:
                        svc.stopped = True
                        log.info(
                            "%s stopped cleanly (exit 0); it stays stopped until `realm resume` or `realm up`",
                            svc.name,
                        )
                        continue
                    log.warning("%s crashed with exit code %s; restart in %.0fs", svc.name, code, svc.backoff)
                    svc.next_start = now + svc.backoff
                    svc.backoff = min(svc.backoff * 2, 60.0)
                    svc.restarts += 1
            self._stop_children()

    def _stop_children(self, timeout: float = 60.0) -> None:
        for svc in self.services:
            if svc.proc and svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for svc in self.services:
            if svc.proc is None:
                continue
            try:
                svc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", svc.name, timeout)
                svc.proc.kill()
                svc.proc.wait()
        log.info("all services stopped")


def realm_service(name: str, home: Path, *args: str) -> Service:
    """A service that runs `realm NAME ... --home HOME` with this interpreter."""
    return Service(name, [sys.executable, str(REALM_PY), name, *args, "--home", str(home)])


def install_signal_handlers(stop: threading.Event, wake: threading.Event | None = None) -> None:
    """SIGTERM and SIGINT set `stop`; SIGUSR1 sets `wake` when given (the guardian's)."""

    def handler(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if wake is not None:
        signal.signal(signal.SIGUSR1, lambda _signum, _frame: wake.set())


def wake(run_dir: Path) -> int | None:
    """Ask the running guardian to start again the services that stopped cleanly; its pid, or None.

    The guardian installs its SIGUSR1 handler before it takes its lock, so a held lock means the
    signal is understood (it never falls to the default action, which would end the process)."""
    if not is_held(run_dir, "guardian"):
        return None
    pid = read_pid(Path(run_dir) / "guardian.lock")
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return None
    return pid


def start_detached(home: Path, logging_cfg: LoggingConfig | None = None) -> int:
    """Start `realm guardian` in its own session so it outlives the shell; returns its pid."""
    cfg = logging_cfg or LoggingConfig()
    path = out_path(Path(home) / "logs", "guardian")
    rotate(path, cfg.max_bytes, cfg.backups)
    with open(path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REALM_PY), "guardian", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=home,
            env={**os.environ, CONSOLE_ENV: "0"},
        )
    return proc.pid


def stop_pid(pid: int, timeout: float = 90.0) -> bool:
    """SIGTERM a process and wait for it to go; True if it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
