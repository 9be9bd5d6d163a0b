"""Single-instance locks: at most one guardian and one arena daemon per realm home.

An flock on run/NAME.lock is released by the kernel when the holder dies, even by kill -9, so a
crash never leaves a stale lock behind; the pid written inside is for people and `realm down`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(RuntimeError):
    pass


class InstanceLock:
    def __init__(self, run_dir: Path, name: str):
        self.path = Path(run_dir) / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"{self.path.stem} already runs for this home (pid {read_pid(self.path)})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_pid(lock_path: Path) -> int | None:
    try:
        return int(Path(lock_path).read_text().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def is_held(run_dir: Path, name: str) -> bool:
    """True while some process holds the lock (checked without taking it for long)."""
    path = Path(run_dir) / f"{name}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
