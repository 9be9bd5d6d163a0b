"""The guardian: runs the realm's local services as child processes and restarts any that crash.

`realm up` starts the guardian detached; `realm down` sends it SIGTERM, and it passes SIGTERM on to
each child (the arena daemon checkpoints before it exits) and waits for them. A child that exits
with an error is restarted: at once when it had run for `STABLE_S` (a crash, not a crash loop),
else after a backoff that starts at 1 s and doubles to 60 s while it keeps dying within `STABLE_S`
of its start. A thread waits on each child, so a death is seen at once, not at the next poll: a
`kill -9`ed Tavern, Vault or Oracle answers again after its start-up alone (1-3 s here).

Each child runs in its own process group, and a child that died takes its group with it (SIGKILL to
the group). The HTTP services are gunicorn masters: a `kill -9`ed master leaves its worker behind,
which still holds the service's lock (an inherited fd) and its port until it notices, so the new
process would fail with "already runs" and back off for seconds. Killing the group ends that worker
(and any skill server the arena started) at once.

The stuck check (`stuck_check`, every `sentinels.stuck_check_s`): a trainer that is fighting with no
step event for `sentinels.stuck_after_s` (sentinels.health) is killed with SIGKILL, and the crash
path above restarts it, from its last checkpoint like any arena start.

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
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sentinels.config import LoggingConfig
from sentinels.hosts import HOST_ENV, Host, Hosts, HostsError, load_hosts
from sentinels.locks import InstanceLock, is_held, read_pid
from sentinels.logs import CONSOLE_ENV, copy_truncate, out_path, rotate

if TYPE_CHECKING:
    from sentinels.config import RealmConfig

log = logging.getLogger("realm.guardian")

REALM_PY = Path(__file__).resolve().parent.parent / "realm.py"

INITIAL_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
STABLE_S = 10.0  # a child that ran this long was not crash-looping: it restarts at once
POLL_S = 0.5  # the loop's heartbeat (log copy-truncate, wake, stuck check); deaths wake it at once

# Set by the signal handlers below: code deep in a child (the disk guard's wait) asks it to end.
_STOP_REQUESTED = threading.Event()


def stop_requested() -> bool:
    """Whether this process received SIGTERM or SIGINT through `install_signal_handlers`."""
    return _STOP_REQUESTED.is_set()


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
    crashed_at: float | None = None  # monotonic time of the last crash, until the restart


class Guardian:
    def __init__(
        self,
        home: Path,
        services: list[Service],
        stop: threading.Event | None = None,
        logging_cfg: LoggingConfig | None = None,
        wake: threading.Event | None = None,
        stuck_check: Callable[[], str | None] | None = None,
        stuck_every_s: float = 0.0,
        on_stuck: Callable[[str], None] | None = None,
    ):
        """`stuck_check()` returns why the trainer is stuck (None when it is not); it runs every
        `stuck_every_s` seconds (0: never) while the `arena` service runs. `on_stuck(why)` is told
        after the kill (a stopped arena may hold the database's write lock until it is gone)."""
        self.home = Path(home)
        self.services = services
        self.stop_event = stop or threading.Event()
        self.wake_event = wake or threading.Event()
        self.logging_cfg = logging_cfg or LoggingConfig()
        self.stuck_check, self.stuck_every_s, self.on_stuck = stuck_check, stuck_every_s, on_stuck
        self._next_stuck_check = time.monotonic() + stuck_every_s
        self._tick = threading.Event()  # set by a child's waiter thread when it exits

    def _spawn(self, svc: Service) -> None:
        cfg = self.logging_cfg
        path = out_path(self.home / "logs", svc.name)
        rotate(path, cfg.max_bytes, cfg.backups)
        out = open(path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        # The child's records go to its own rotated .log; on the console they would fill the .out twice.
        env = {**os.environ, CONSOLE_ENV: "0"}
        # Its own process group (not a new session: it still dies with the terminal's session).
        proc = svc.proc = subprocess.Popen(
            svc.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.home, env=env, process_group=0
        )
        out.close()
        svc.started_at = time.monotonic()
        svc.stopped = False
        after = "" if svc.crashed_at is None else f", {svc.started_at - svc.crashed_at:.2f} s after its crash"
        svc.crashed_at = None
        log.info("started %s (pid %s%s): %s", svc.name, proc.pid, after, " ".join(svc.argv))
        # Popen.wait and poll share a lock, so this thread and the loop's poll() never race.
        threading.Thread(target=self._await, args=(proc,), name=f"wait-{svc.name}", daemon=True).start()

    def _await(self, proc: subprocess.Popen) -> None:
        proc.wait()
        self._tick.set()

    def _wake(self) -> None:
        for svc in self.services:
            if svc.stopped:
                log.info("%s: woken; starting it again", svc.name)
                svc.stopped, svc.backoff, svc.next_start = False, INITIAL_BACKOFF_S, 0.0

    def run(self) -> None:
        with InstanceLock(self.home / "run", "guardian"):
            for svc in self.services:
                self._spawn(svc)
            while not self.stop_event.is_set():
                self._tick.wait(self._sleep_for())
                self._tick.clear()
                if self.stop_event.is_set():
                    break
                if self.wake_event.is_set():
                    self.wake_event.clear()
                    self._wake()
                self._step(time.monotonic())
            self._stop_children()

    def _sleep_for(self) -> float:
        """Until the next heartbeat or the next scheduled restart, whichever comes first."""
        now = time.monotonic()
        due = [s.next_start - now for s in self.services if s.proc is None and not s.stopped]
        return max(0.0, min([POLL_S, *due]))

    def _step(self, now: float) -> None:
        cfg = self.logging_cfg
        for svc in self.services:
            if svc.proc is None:
                if not svc.stopped and now >= svc.next_start:
                    self._spawn(svc)
                continue
            code = svc.proc.poll()
            if code is None:
                copy_truncate(out_path(self.home / "logs", svc.name), cfg.max_bytes, cfg.backups)
                continue
            _kill_group(svc.proc.pid)  # what the child left behind (a gunicorn worker) goes too
            svc.proc = None
            if code == 0:
                svc.stopped = True
                log.info(
                    "%s stopped cleanly (exit 0); it stays stopped until `realm resume` or `realm up`",
                    svc.name,
                )
                continue
            if now - svc.started_at >= STABLE_S:  # it had been running: not a crash loop
                delay, svc.backoff = 0.0, INITIAL_BACKOFF_S
            else:
                delay, svc.backoff = svc.backoff, min(svc.backoff * 2, MAX_BACKOFF_S)
            log.warning("%s crashed with exit code %s; restart in %.0fs", svc.name, code, delay)
            svc.crashed_at = now
            svc.next_start = now + delay
            svc.restarts += 1
        if self.stuck_check is not None and self.stuck_every_s > 0 and now >= self._next_stuck_check:
            self._next_stuck_check = now + self.stuck_every_s
            self._check_stuck()

    def _check_stuck(self) -> None:
        """SIGKILL a stuck arena; the crash path restarts it from its last checkpoint."""
        arena = next((s for s in self.services if s.name == "arena" and s.proc is not None), None)
        if arena is None or arena.proc.poll() is not None or self.stuck_check is None:
            return
        try:
            why = self.stuck_check()
        except Exception:  # a check that cannot read the realm must not take the guardian down
            log.exception("the stuck check failed")
            return
        if not why:
            return
        log.error("the arena (pid %s) is stuck: %s; killing it to restart it", arena.proc.pid, why)
        arena.proc.kill()  # SIGKILL also ends a SIGSTOPped process
        if self.on_stuck is not None:
            try:
                arena.proc.wait(30)  # its database locks go with it
                self.on_stuck(why)
            except Exception:
                log.exception("reporting the stuck arena failed")

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
            _kill_group(svc.proc.pid)
        log.info("all services stopped")


# Every service the guardian can run on a host, in start order, with the `realm` arguments it takes;
# the service name is also its lock's name in run/ and its port's name in the `ports` section.
SERVICE_ARGS: dict[str, tuple[str, ...]] = {"arena": (), "tavern": (), "vault": ("serve",), "oracle": ()}
ALL_ROLES = "all"  # the role of the single host a realm without hosts.yaml describes


def this_host(hosts: Hosts) -> Host:
    """The registry's entry for this machine: the one REALM_HOST names, else the only host, else
    the host whose address is one of this machine's names or addresses."""
    named = os.environ.get(HOST_ENV)
    if named:
        return hosts.host(named)
    if len(hosts.hosts) == 1:
        return hosts.hosts[0]
    mine = {"127.0.0.1", "::1", "localhost", socket.gethostname(), socket.getfqdn()}
    try:
        mine.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass  # no resolver: the names above still count
    found = [h for h in hosts.hosts if h.address in mine or h.name in mine]
    if len(found) == 1:
        return found[0]
    raise HostsError(
        hosts.source,
        HOST_ENV,
        f"cannot tell which host this machine is (hosts: {', '.join(hosts.names())}); "
        f"set {HOST_ENV} to its name",
    )


def assigned_services(config: RealmConfig) -> list[str]:
    """The services the hosts registry assigns to this host, in start order: those its `roles` or its
    `services` name (the single host of a realm without hosts.yaml runs them all)."""
    host = this_host(load_hosts(config))
    wanted = set(host.roles) | set(host.services)
    if ALL_ROLES in host.roles:
        return list(SERVICE_ARGS)
    return [name for name in SERVICE_ARGS if name in wanted]


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left in a dead child's process group (nothing, after a clean exit)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: the usual case


def realm_service(name: str, home: Path, *args: str) -> Service:
    """A service that runs `realm NAME ... --home HOME` with this interpreter."""
    return Service(name, [sys.executable, str(REALM_PY), name, *args, "--home", str(home)])


def install_signal_handlers(stop: threading.Event, wake: threading.Event | None = None) -> None:
    """SIGTERM and SIGINT set `stop`; SIGUSR1 sets `wake` when given (the guardian's)."""

    def handler(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        _STOP_REQUESTED.set()
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
