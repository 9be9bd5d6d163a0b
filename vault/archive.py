"""Exporting an asset as a tar archive, streamed: the bytes leave as they are read, never whole in memory.

`tar_stream(path)` yields a POSIX (pax) tar of a file or a folder, named `<folder name>/<relpath>`
inside the archive, in the order `vault.identity.list_files` gives (sorted, in-flight temp names left
out), so an export holds exactly the files the asset's identity covers. Python's `tarfile` writes
each member through a file object and would buffer a whole member before a generator could hand it
on; here each header comes from `TarInfo.tobuf` and the file's bytes follow in CHUNK pieces, which is
all the tar format is (a 512-byte header, the data padded to 512, two zero blocks at the end).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

from vault.identity import list_files

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # readers expect the archive padded to whole 10 KiB records


class ArchiveError(OSError):
    """A file changed size while it was being exported; the archive would be corrupt."""


def _member(arcname: str, p: Path) -> tarfile.TarInfo:
    st = p.stat()
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
    return info


def tar_stream(path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """The tar archive of `path` (a file or a folder) as a stream of byte chunks."""
    path = Path(path)
    files = list_files(path) if path.is_dir() else [(path.name, path)]
    written = 0
    for rel, p in files:
        arcname = f"{path.name}/{rel}" if path.is_dir() else rel
        info = _member(arcname, p)
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        yield header
        written += len(header)
        left = info.size
        with open(p, "rb") as f:
            while left > 0:
                data = f.read(min(chunk, left))
                if not data:
                    raise ArchiveError(f"{p} shrank while it was being exported")
                left -= len(data)
                written += len(data)
                yield data
        pad = -info.size % BLOCK
        if pad:
            yield b"\0" * pad
            written += pad
    end = 2 * BLOCK
    end += -(written + end) % RECORD
    yield b"\0" * end
