"""Content identity: sha256 per file, a tree digest per folder, and sizes.

An asset's identity is what makes "the same bytes" checkable anywhere: two copies in two zones are the
same asset when their digests agree, and identical files across checkpoints (tokenizer, config) share a
sha256, which `asset_files` indexes. For a folder the digest is the sha256 of its sorted file list
(`relpath NUL sha256 NUL size LF` per file), so it depends only on content and names, never on mtimes
or the order a filesystem lists entries.

Hidden files are part of an asset (a checkpoint's `.ledger.json`); only in-flight temp names
(`.tmp-*`, `.partial-*`), which writers rename away when done, are skipped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
SEEN_FOLDERS = 16  # folder identities `identify` remembers in this process, most recent last
TEMP_PREFIXES = (".tmp-", ".partial-")

Progress = Callable[[int], None]  # called with the bytes just hashed


@dataclass(frozen=True)
class FileEntry:
    relpath: str
    sha256: str
    size: int
    # Not part of identity: lets a re-scan skip re-hashing a file whose size and mtime are unchanged.
    mtime_ns: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Identity:
    digest: str
    size_bytes: int
    files: tuple[FileEntry, ...]
    is_dir: bool

    @property
    def file_count(self) -> int:
        return len(self.files)


def hash_file(path: Path, chunk: int = CHUNK, progress: Progress | None = None) -> tuple[str, int]:
    """(sha256 hex, size) of one file, read in chunks (never whole into memory)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if progress:
                progress(n)
    return h.hexdigest(), size


def tree_digest(files: Iterable[FileEntry]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda e: e.relpath):
        h.update(f"{f.relpath}\0{f.sha256}\0{f.size}\n".encode())
    return h.hexdigest()


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIXES)


def list_files(root: Path) -> list[tuple[str, Path]]:
    """(posix relpath, path) of every regular file under a folder, sorted, temp names skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_temp(d)]
        for name in filenames:
            if is_temp(name):
                continue
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


_SEEN: dict[str, Identity] = {}


def identify(
    path: Path,
    known: Mapping[str, FileEntry] | None = None,
    progress: Progress | None = None,
) -> Identity:
    """The identity of a file or folder.

    `known` maps relpath -> a stored FileEntry: a file whose size and mtime_ns both match is not read
    again (the scan's fast path). A single file's relpath is its own name."""
    path = Path(path)
    known = known or {}
    if path.is_dir():
        key = str(path.resolve())
        seen = _SEEN.pop(key, None)
        if seen is not None and not known:
            # Read earlier in this process (the arena digests a new base for the sidecar, then the
            # vault registers it on landing): files whose size and mtime held are not read again.
            known = {f.relpath: f for f in seen.files}
        files = tuple(_entry(rel, p, known, progress) for rel, p in list_files(path))
        ident = Identity(tree_digest(files), sum(f.size for f in files), files, True)
        _SEEN[key] = ident
        while len(_SEEN) > SEEN_FOLDERS:
            _SEEN.pop(next(iter(_SEEN)))
        return ident
    entry = _entry(path.name, path, known, progress)
    return Identity(entry.sha256, entry.size, (entry,), False)


def needs_hash(p: Path, old: FileEntry | None, st: os.stat_result | None = None) -> bool:
    """False when the stored entry's size and mtime_ns match the file: its sha256 still holds."""
    st = st or p.stat()
    return old is None or old.size != st.st_size or old.mtime_ns != st.st_mtime_ns


def _entry(rel: str, p: Path, known: Mapping[str, FileEntry], progress: Progress | None) -> FileEntry:
    st = p.stat()
    old = known.get(rel)
    if old is not None and not needs_hash(p, old, st):
        return FileEntry(rel, old.sha256, old.size, st.st_mtime_ns)
    sha, size = hash_file(p, progress=progress)
    return FileEntry(rel, sha, size, st.st_mtime_ns)
