"""What sits in the inbox: the one rule for "files waiting", leftovers, and when a file may be claimed.

**Waiting files.** `waiting_files(inbox)` is the single answer to "which inbox entries will become
quests": the watcher, `realm intake`, the guild's idle check, the Tavern's board and `realm status`
all call it. Hidden names (`.claimed/`, editors' and rsync's temp files), writers' temp names
(`.part`, `.tmp`, ...) and `FILE.meta.json` sidecars are not quests; neither is a directory.

**Leftovers.** A directory, or a sidecar whose data file never arrives, would otherwise sit in the
inbox forever with no word said. `leftovers(inbox, wait_s)` lists those that have not changed for
`wait_s` (intake.settle_s plus a grace period); intake refuses each like any bad file, into
queue/failed/ with FILE.error.json. A sidecar is not an orphan while a temp file carrying its data
file's name (rsync's `.NAME.xyz`, `NAME.part`) is still in the inbox: that copy is on its way.

**Claiming.** A file that has held still for settle_s may still be arriving: a copy over a slow
link can pause mid-line for longer than that. So before a file is claimed, `still_arriving` asks:

1. On Linux, is the file open for writing by any process we can see? Every `/proc/PID/fd/N` that
   points at the same inode is checked against `/proc/PID/fdinfo/N`'s access mode; a writer that
   still holds the file keeps it in the inbox however long it pauses. Checking costs one stat per
   open descriptor on the box (about 3 ms for 400), and runs only for files that look settled.
2. Where that cannot be seen (no /proc, or a file owned by another user whose processes an
   unprivileged realm cannot inspect), a file whose last byte is not a newline must hold still for
   `UNTERMINATED_SETTLE_S` (or settle_s, if longer): a copy paused mid-line almost never ends
   exactly on a line end, and a finished JSONL file almost always does.
3. Otherwise the file must not have changed for settle_s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from arena.intake.sidecar import SIDECAR_SUFFIX, is_ignored

UNTERMINATED_SETTLE_S = 10.0
_O_ACCMODE, _O_RDONLY = 0o3, 0o0
_PROC = Path("/proc")


def waiting_files(inbox: Path) -> list[Path]:
    """Inbox entries intake will take as quests, oldest first (links included: intake refuses them)."""
    try:
        entries = list(inbox.iterdir())
    except FileNotFoundError:
        return []
    out = [p for p in entries if not is_ignored(p.name) and not (p.is_dir() and not p.is_symlink())]
    return sorted(out, key=lambda p: (_mtime(p), p.name))


def leftovers(inbox: Path, wait_s: float) -> list[Path]:
    """Directories and orphan sidecars that have not changed for wait_s: refuse them with a reason."""
    try:
        entries = list(inbox.iterdir())
    except FileNotFoundError:
        return []
    names = [p.name for p in entries]
    now = time.time()
    out = []
    for p in entries:
        if p.name.startswith("."):
            continue
        if p.is_dir() and not p.is_symlink():
            pass
        elif p.name.endswith(SIDECAR_SUFFIX) and not p.is_symlink():
            data = p.name[: -len(SIDECAR_SUFFIX)]
            arriving = (n for n in names if is_ignored(n) and not n.endswith(SIDECAR_SUFFIX))
            if data in names or any(data in n for n in arriving):
                continue  # paired, or its data file is still arriving under a temp name
        else:
            continue
        if now - _last_change(p) >= wait_s:
            out.append(p)
    return sorted(out, key=lambda p: p.name)


def writers() -> set[tuple[int, int]] | None:
    """(st_dev, st_ino) of every file some visible process holds open for writing; None without /proc."""
    try:
        pids = [d for d in os.listdir(_PROC) if d.isdigit()]
    except OSError:
        return None
    if not pids:
        return None
    found: set[tuple[int, int]] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or another user's process
        for fd in fds:
            try:
                if not os.readlink(f"{fd_dir}/{fd}").startswith("/"):
                    continue  # a pipe, socket or anonymous inode
                st = os.stat(f"{fd_dir}/{fd}")
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next(int(v, 8) for k, _, v in (ln.partition(":") for ln in info) if k == "flags")
            except (OSError, StopIteration, ValueError):
                continue  # closed while we looked
            if flags & _O_ACCMODE != _O_RDONLY:
                found.add((st.st_dev, st.st_ino))
    return found


def still_arriving(path: Path, settle_s: float, open_for_writing: set | None) -> str | None:
    """Why `path` must not be claimed yet, or None when it may be (rules in the module docstring).

    `open_for_writing` is `writers()`'s answer, taken once for a pass over many files; None
    means nobody can tell, and the line-end rule applies."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None  # gone: the claim will find out
    age = time.time() - st.st_mtime
    regular = not path.is_symlink() and path.is_file()
    if regular and open_for_writing is not None and (st.st_dev, st.st_ino) in open_for_writing:
        return "a process still has it open for writing"
    need = settle_s
    if regular and (open_for_writing is None or not _writers_visible(st.st_uid)) and not _ends_line(path):
        need = max(settle_s, UNTERMINATED_SETTLE_S)
    if age < need:
        return f"changed {age:.1f}s ago; it must hold still for {need:g}s"
    return None


def _writers_visible(uid: int) -> bool:
    """Can /proc show us the processes of the user who owns the file?"""
    me = os.geteuid()
    return me == 0 or uid == me


def _ends_line(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:  # empty (seek before start) or unreadable: nothing to wait for
        return True


def _last_change(p: Path) -> float:
    """A directory changes when anything directly inside it does (a folder copy in progress)."""
    t = _mtime(p)
    if p.is_dir() and not p.is_symlink():
        try:
            for child in p.iterdir():
                t = max(t, _mtime(child))
        except OSError:
            pass
    return t


def _mtime(p: Path) -> float:
    try:
        return p.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
