"""The guardian: runs the realm's local services as child processes and restarts any that crash.

`realm up` starts the guardian detached; `realm down` sends it SIGTERM, and it passes SIGTERM on to
each child (the arena daemon checkpoints before it exits) and waits for them. A child that exits
with an error is restarted with exponential backoff (1 s doubling to 60 s); one that ran for a
minute resets its backoff.
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

from sentinels.locks import InstanceLock

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


class Guardian:
    def __init__(self, home: Path, services: list[Service], stop: threading.Event | None = None):
        self.home = Path(home)
        self.services = services
        self.stop_event = stop or threading.Event()

    def _spawn(self, svc: Service) -> None:
        log_path = self.home / "logs" / f"{svc.name}.out"
        out = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        svc.proc = subprocess.Popen(svc.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.home)
        out.close()
        svc.started_at = time.monotonic()
        log.info("started %s (pid %s): %s", svc.name, svc.proc.pid, " ".join(svc.argv))

    def run(self) -> None:
        with InstanceLock(self.home / "run", "guardian"):
            for svc in self.services:
                self._spawn(svc)
            while not self.stop_event.wait(0.5):
                now = time.monotonic()
                for svc in self.services:
                    if svc.proc is None:
                        if now >= svc.next_start:
                            self._spawn(svc)
                        continue
                    code = svc.proc.poll()
                    if code is None:
                        if now - svc.started_at > 60:
                            svc.backoff = 1.0
                        continue
                    svc.proc = None
                    if code == 0:
                        log.info("%s exited cleanly; restarting", svc.name)
                    else:
                        log.warning(
                            "%s crashed with exit code %s; restart in %.0fs", svc.name, code, svc.backoff
                        )
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


def install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def start_detached(home: Path) -> int:
    """Start `realm guardian` in its own session so it outlives the shell; returns its pid."""
    log_path = Path(home) / "logs" / "guardian.out"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REALM_PY), "guardian", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=home,
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
