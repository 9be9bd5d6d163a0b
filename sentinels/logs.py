"""Logs: one rotated file per process, bounded child output, and reading them back (`realm logs`).

Python's `RotatingFileHandler` is safe only while ONE process writes its file: when two processes
rotate the same file, lines are lost or land in a file that was just renamed away. So:

- Each long-running service writes its own `logs/<service>.log` (`guardian`, `arena`, `tavern`,
  ...) through a `RotatingFileHandler`; one process holds it because the service holds its instance
  lock in `run/`. Under `accelerate launch` every arena rank but 0 writes `arena.rank<N>.log`.
- One-shot commands (`realm quest add`, `realm status`, ...) may run many at once, so they share
  `logs/cli.log` without rotating while they write: each appends whole records (O_APPEND), and the
  file is rotated when a command starts, under an flock, once it has outgrown `logging.max_bytes`.
- A child's raw stdout/stderr (`logs/<service>.out`: tracebacks, library warnings) is rotated by the
  guardian before each start and, while the child runs, copied and truncated once it outgrows
  `logging.max_bytes` (the child writes with O_APPEND, so it carries on at the new end; lines written
  between the copy and the truncate are lost, which is the price of not restarting the child).
  The guardian sets `REALM_LOG_CONSOLE=0` for its children, so their log records go to their `.log`
  only and are not copied a second time into the `.out`.

`realm logs [SERVICE] [-n N] [-f]` reads them back (`tail` and `follow` below), across rotations.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from sentinels.realm import Realm

CLI = "cli"  # the shared log of one-shot commands
CONSOLE_ENV = "REALM_LOG_CONSOLE"  # "0": no console handler (the guardian sets it for its children)
FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class LogsError(ValueError):
    """A log that cannot be shown (unknown service); the message says which ones exist."""


def log_path(logs: Path, service: str) -> Path:
    return Path(logs) / f"{service}.log"


def out_path(logs: Path, service: str) -> Path:
    return Path(logs) / f"{service}.out"


def _backup(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def _shift_backups(path: Path, backups: int) -> None:
    """path.1 -> path.2, ... making room for a new path.1 (the oldest beyond `backups` is replaced)."""
    for n in range(backups - 1, 0, -1):
        if _backup(path, n).exists():
            os.replace(_backup(path, n), _backup(path, n + 1))


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Rename path to path.1 (path.1 to path.2, ...) if it has reached max_bytes; True if rotated.

    Taken under an flock on a sibling lock file, so processes that rotate at start never rotate
    the same file twice or lose a backup between them."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if path.stat().st_size < max_bytes:
                return False
        except FileNotFoundError:
            return False
        if backups <= 0:
            path.unlink()
            return True
        _shift_backups(path, backups)
        os.replace(path, _backup(path, 1))
        return True
    finally:
        os.close(fd)


def copy_truncate(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate a file a running process still appends to: copy it to path.1, then truncate it."""
    path = Path(path)
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    if backups > 0:
        _shift_backups(path, backups)
        shutil.copyfile(path, _backup(path, 1))
    os.truncate(path, 0)
    return True


def setup_logging(realm: Realm, service: str | None = None, console: bool = True) -> None:
    """Send this process's log records to its own file (and stderr unless REALM_LOG_CONSOLE=0).

    `service` names a long-running service (its own rotating `<service>.log`); None is a one-shot
    command, which appends to the shared `cli.log`."""
    cfg = realm.config.logging
    root = logging.getLogger()
    root.setLevel(cfg.level)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    fmt = logging.Formatter(FORMAT)
    logs = realm.home.logs
    logs.mkdir(parents=True, exist_ok=True)
    if service is None:
        rotate(log_path(logs, CLI), cfg.max_bytes, cfg.backups)
        fh: logging.Handler = logging.FileHandler(log_path(logs, CLI), encoding="utf-8")
    else:
        fh = logging.handlers.RotatingFileHandler(
            log_path(logs, service), maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8"
        )
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if console and os.environ.get(CONSOLE_ENV, "1") != "0":
        ch = logging.StreamHandler(sys.stderr)
        ch.setFormatter(fmt)
        root.addHandler(ch)


# ---- reading -----------------------------------------------------------------------------------
def services(logs: Path) -> list[str]:
    """The services that have a log in this folder (`arena`, `cli`, `guardian`, ...), sorted."""
    logs = Path(logs)
    return sorted(p.name[: -len(".log")] for p in logs.glob("*.log")) if logs.is_dir() else []


def resolve(logs: Path, service: str | None) -> dict[str, Path]:
    """{service: log path} for one service, or for every service that has a log."""
    have = services(logs)
    if service is None:
        return {s: log_path(logs, s) for s in have}
    if service not in have:
        raise LogsError(f"no log for {service!r} in {logs}; logs there: {', '.join(have) or 'none yet'}")
    return {service: log_path(logs, service)}


def tail(path: Path, n: int) -> list[str]:
    """The last n lines of a file (without their newlines)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=n)] if n > 0 else []


@dataclass
class _Followed:
    name: str
    path: Path
    file: TextIO | None = None
    inode: int | None = None
    partial: str = ""


def follow(
    paths: dict[str, Path], last: int = 10, stop: Callable[[], bool] = lambda: False, interval: float = 0.2
) -> Iterator[tuple[str, str]]:
    """Yield (service, line): the last `last` lines of each file, then every line appended, like
    `tail -F`. The end of the file is read through the same handle that then follows it, so no line
    written in between is lost. Survives rotation: when a path is renamed away (a new inode) or
    truncated, the rest of the old file is read first, then the new file from its start."""
    followed = [_Followed(name, Path(p)) for name, p in paths.items()]
    for f in followed:
        _open(f)
        for line in deque(_read_new(f), maxlen=last) if last > 0 else ():
            yield f.name, line
    while not stop():
        got = False
        for f in followed:
            for line in _read_new(f):
                got = True
                yield f.name, line
        if not got:
            time.sleep(interval)


def _open(f: _Followed) -> None:
    try:
        f.file = open(f.path, encoding="utf-8", errors="replace")  # noqa: SIM115 - held while following
    except FileNotFoundError:
        f.file, f.inode = None, None
        return
    f.inode = os.fstat(f.file.fileno()).st_ino


def _read_new(f: _Followed) -> list[str]:
    if f.file is None:
        _open(f)
        if f.file is None:
            return []
    lines = _complete_lines(f, f.file.read())
    try:
        st = os.stat(f.path)
    except FileNotFoundError:  # renamed away, its successor not created yet
        return lines
    if st.st_ino != f.inode:  # rotated by rename: the old file is read to its end above
        f.file.close()
        _open(f)
    elif st.st_size < f.file.tell():  # truncated in place (copy_truncate)
        f.file.seek(0)
    else:
        return lines
    if f.file is not None:
        lines += _complete_lines(f, f.file.read())
    return lines


def _complete_lines(f: _Followed, text: str) -> list[str]:
    """Whole lines only: a line still being written waits for its newline."""
    *lines, f.partial = (f.partial + text).split("\n")
    return lines
