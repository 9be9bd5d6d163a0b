"""Zones: where assets live, and the transports that move bytes in and out of them.

Owns the zone registry (the `zones` table: written only here, plus zones declared in a home's or the
repo's `zones.yaml` and under hosts in `hosts.yaml`) and one transport per zone kind:

- `LocalZone`: a folder this machine can open (the realm home itself, or a mounted NAS);
- `OfficerZone`: a branch officer (vault/officer.py) on another host, over HTTP;
- `FsspecZone`: any fsspec URL (`s3://`, `sftp://`, `memory://`, `file://`).

Every transport keeps the same three rules, which is what lets a transfer be killed at any moment:

- **Paths stay inside the zone.** Every relpath passes `safe_relpath` (no absolute paths, no `..`),
  and a local folder also refuses a path whose symlinks resolve outside its root.
- **Verified before visible.** A file is streamed (never whole in memory) into a `.partial-` temp name
  beside its destination, its sha256 compared with the catalog's, and only then renamed into place.
  A killed copy leaves only a `.partial-` name, which listings skip and identity ignores.
- **Nothing is unpickled.** Transports move bytes; they never interpret what they carry.

An asset lives in a zone at `<root>/<asset name>` (a file) or `<root>/<asset name>/<relpath>` (a
folder). The push/pull/verify protocol on top of these transports is vault/transfer.py.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlsplit

import msgspec
import requests
import yaml

from sentinels.hosts import Hosts, ZoneDeclaration, convert_at
from sentinels.typed import TypedError
from vault.errors import VaultError
from vault.identity import hash_file

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # streaming unit: big enough that per-chunk Python work is noise, small enough for RAM
# write_verified's unit: the hash thread reads back and hashes at most this much at a time, writeback
# is started every this many bytes, and a stream without a faster path is copied through one buffer
# of this size. Large, so per-block Python work and syscalls are noise.
BLOCK = 4 << 20
PARTIAL_PREFIX = ".partial-"  # temp files and staging folders; vault/identity.py skips these names
TOKEN_HEADER = "X-Realm-Token"
SHA_HEADER = "X-Sha256"
DEFAULT_TOKEN_ENV = "REALM_OFFICER_TOKEN"
HASH_TIMEOUT_S = 3600  # an officer re-hashing a large file answers only when done
HOME_ZONE = "local"  # the realm home; the catalog inserts its row when it opens
KINDS = ("local", "officer", "fsspec")
# "Best zone" order when pulling, by kind of an added zone: other folders (NAS), then officers, then
# object stores. The home itself (zone `local`, priority 0, inserted by the catalog) comes first.
PRIORITY = {"local": 10, "officer": 20, "fsspec": 30}
ZONE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

Progress = Callable[[int], None]  # called with each chunk's byte count as it is moved or hashed


# ---- errors -------------------------------------------------------------------------------------
class ZoneError(VaultError):
    """A zone operation failed; the message says which zone and what to do."""


class ZoneNotFound(ZoneError, LookupError):
    """No zone of that name; the message lists the known ones."""


class UnsafePath(ZoneError, ValueError):
    """A relpath that would escape the zone's root (absolute, `..`, or a symlink out)."""


class ChecksumMismatch(ZoneError):
    """The bytes that arrived do not hash to the expected sha256; nothing was renamed into place."""


class IncompleteTransfer(ZoneError):
    """The stream ended before the announced size; nothing was renamed into place."""


class ZoneUnavailable(ZoneError):
    """The zone could not be reached (officer down, store unreachable)."""


class ZoneAuthError(ZoneError):
    """The zone refused a mutation: missing or wrong token."""


# ---- the shared rules ----------------------------------------------------------------------------
def safe_relpath(relpath: str) -> str:
    """`relpath` as a clean posix path under a zone root, or UnsafePath.

    Refused: empty, absolute, backslashes, NUL, and any `.`, `..` or empty segment. Strict on purpose:
    a path that needs normalising came from somewhere that should not be trusted."""
    if not isinstance(relpath, str) or not relpath:
        raise UnsafePath(f"empty path {relpath!r}")
    if "\\" in relpath or "\0" in relpath:
        raise UnsafePath(f"path {relpath!r} contains a backslash or NUL")
    if relpath.startswith("/"):
        raise UnsafePath(f"absolute path {relpath!r} refused: paths are relative to the zone root")
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"path {relpath!r} refused: no '..', '.' or empty segments")
    if len(relpath.encode()) > 4096 or any(len(p.encode()) > 255 for p in parts):
        raise UnsafePath(f"path {relpath[:80]!r}... is too long")
    return relpath


def stage_name(name: str) -> str:
    """The staging folder a folder asset is assembled in before it is renamed to `name`."""
    return f"{PARTIAL_PREFIX}{name}"


def read_chunks(f: BinaryIO, size: int | None = None) -> Iterator[bytes]:
    """A binary stream in CHUNK pieces; with `size`, exactly that many bytes at most."""
    left = size
    while left is None or left > 0:
        chunk = f.read(CHUNK if left is None else min(CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def hash_chunks(chunks: Iterable[bytes], progress: Progress | None = None) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    for chunk in chunks:
        h.update(chunk)
        n += len(chunk)
        if progress:
            progress(len(chunk))
    return h.hexdigest(), n


class _LandedHash:
    """The sha256 of what landed in a file, hashed on a second thread while the caller lands more.

    write_verified reports each range as it lands; the thread reads it back from the file (the page
    cache: a cheap copy) and hashes it. hashlib and pread release the GIL, so receiving and writing
    overlap hashing, and a verified write costs about what hashing alone does. Hashing what the file
    holds, rather than the buffer it was written from, also checks the write itself. Files up to one
    BLOCK are hashed inline: a thread per tiny file costs more than it saves."""

    def __init__(self, fd: int, size: int | None):
        self.fd, self.sha = fd, hashlib.sha256()
        self._landed = self._hashed = 0
        self._closed, self._error = False, None
        self._cond = threading.Condition()
        self._buf = memoryview(bytearray(BLOCK if size is None else max(1, min(BLOCK, size))))
        self._thread = None
        if size is None or size > BLOCK:
            self._thread = threading.Thread(target=self._run, name="vault-sha256", daemon=True)
            self._thread.start()

    def landed(self, n: int) -> None:
        with self._cond:
            self._landed += n
            self._cond.notify()

    def _hash_to(self, end: int) -> None:
        while self._hashed < end:
            n = os.preadv(self.fd, [self._buf[: min(len(self._buf), end - self._hashed)]], self._hashed)
            if not n:
                raise IncompleteTransfer(f"file shrank under the hash: {self._hashed} of {end} bytes")
            self.sha.update(self._buf[:n])
            self._hashed += n

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._landed > self._hashed or self._closed)
                    end, closed = self._landed, self._closed
                self._hash_to(end)
                if closed and self._hashed == end:
                    return
        except BaseException as exc:  # re-raised by hexdigest in the caller's thread
            self._error = exc

    def close(self) -> None:
        if self._thread:
            with self._cond:
                self._closed = True
                self._cond.notify()
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        self._hash_to(self._landed)  # inline mode: everything; threaded: nothing is left
        return self.sha.hexdigest()


def _land(source: Iterable[bytes] | BinaryIO, fd: int, size: int | None) -> Iterator[int]:
    """Move `source` into `fd` (at most `size` bytes), yielding each landed count: copy_file_range for
    an unbuffered regular file (the copy stays in the kernel, as `cp`'s does), else through one reused
    buffer (a stream, e.g. a request body: readinto straight from the socket) or chunk by chunk.

    (Splicing a request body socket -> pipe -> file was measured too: same speed over loopback, and
    ~10% more CPU than readinto + write.)"""
    if isinstance(source, io.FileIO) and hasattr(os, "copy_file_range"):
        return _copy_range(source, fd, size)
    if hasattr(source, "readinto"):
        return _through_buffer(source, fd, size)  # type: ignore[arg-type]
    return _chunks(source, fd)  # type: ignore[arg-type]


def _copy_range(src: io.FileIO, fd: int, left: int | None) -> Iterator[int]:
    try:
        while left is None or left > 0:
            n = os.copy_file_range(src.fileno(), fd, BLOCK if left is None else min(BLOCK, left))
            if not n:
                return
            if left is not None:
                left -= n
            yield n
    except OSError as exc:  # not between these files (filesystems, kernel): read and write instead
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        yield from _through_buffer(src, fd, left)  # both offsets are where the copy stopped


def _through_buffer(src: BinaryIO, fd: int, left: int | None) -> Iterator[int]:
    view = memoryview(bytearray(BLOCK))
    while left is None or left > 0:
        n = src.readinto(view[: BLOCK if left is None else min(BLOCK, left)])  # type: ignore[attr-defined]
        if not n:
            return
        _write_all(fd, view[:n])
        if left is not None:
            left -= n
        yield n


def _chunks(chunks: Iterable[bytes], fd: int) -> Iterator[int]:
    for chunk in chunks:
        _write_all(fd, chunk)
        yield len(chunk)


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_file_range() -> Callable[[int, int, int], Any] | None:
    """Linux's sync_file_range(2) from libc, or None where there is none (the final fsync then does
    all the work). The os module does not wrap it."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return lambda fd, offset, n: fn(fd, offset, n, SYNC_FILE_RANGE_WRITE)


SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writing the range out, do not wait for it
# Starting writeback of each BLOCK as soon as it has landed lets the disk work while later blocks are
# received and hashed, so the fsync at the end waits for the last block, not for the whole file
# (200 MB on the dev box: fsync 0.1-0.2 s -> ~0.01 s).
_start_writeback = _sync_file_range()


def write_verified(
    source: Iterable[bytes] | BinaryIO,
    dst: Path,
    sha256: str,
    *,
    size: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Stream `source` (chunks, or a binary stream: an open file, a request body) into `dst` under a
    temp name, check size and sha256, fsync, rename; bytes written. With `size`, at most that many
    are read (so a request body is read exactly and its connection stays in step).

    The one owner of "verified before visible" for every local write (LocalZone, the officer's
    /receive, pulls into the home). On any failure the temp file is removed and `dst` is untouched."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:16]}"
    n = flushed = 0
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            hasher = _LandedHash(fd, size)
            try:
                for got in _land(source, fd, size):
                    n += got
                    hasher.landed(got)
                    if _start_writeback is not None and n - flushed >= BLOCK:
                        _start_writeback(fd, flushed, n - flushed)
                        flushed = n
                    if progress:
                        progress(got)
                if size is not None and n != size:
                    raise IncompleteTransfer(f"{dst.name}: got {n} of {size} bytes")
                os.fsync(fd)  # while the hash thread finishes the last blocks
                got_sha = hasher.hexdigest()
            finally:
                hasher.close()
        finally:
            os.close(fd)
        if got_sha != sha256:
            raise ChecksumMismatch(f"{dst.name}: sha256 {got_sha} does not match the expected {sha256}")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)
    return n


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- the transport interface ---------------------------------------------------------------------
class Zone(Protocol):
    id: str
    kind: str
    url: str

    def put(self, src: Path, relpath: str, sha256: str, *, progress: Progress | None = None) -> None: ...
    def get(self, relpath: str, dst: Path, sha256: str, *, progress: Progress | None = None) -> None: ...
    def stat(self, relpath: str) -> tuple[int, str | None] | None: ...
    def files(self, relpath: str) -> dict[str, tuple[int, str | None]]: ...
    def hash(self, relpath: str, *, progress: Progress | None = None) -> str | None: ...
    def delete(self, relpath: str) -> None: ...
    def move(self, src: str, dst: str) -> None: ...
    def free_bytes(self) -> int | None: ...


class LocalZone:
    """A folder on this machine: the realm home, or a mounted NAS. Also the officer's storage."""

    kind = "local"

    def __init__(self, id: str, root: str | Path):
        self.id, self.root = id, Path(root)
        self.url = str(self.root)

    def path(self, relpath: str) -> Path:
        """The absolute path of `relpath`, refused when it (or a symlink on the way) leaves the root."""
        rel = safe_relpath(relpath)
        root = self.root.resolve()
        p = root / rel
        if not p.resolve().is_relative_to(root):
            raise UnsafePath(f"path {relpath!r} resolves outside zone {self.id!r}")
        return p

    def open(self, relpath: str, buffering: int = -1) -> BinaryIO:
        p = self.path(relpath)
        if not p.is_file():
            raise FileNotFoundError(f"zone {self.id!r} has no file {relpath!r}")
        return open(p, "rb", buffering=buffering)

    def put(self, src: Path, relpath: str, sha256: str, *, progress: Progress | None = None) -> None:
        with open(src, "rb", buffering=0) as f:  # unbuffered: write_verified copies it in the kernel
            self.receive(f, relpath, sha256, size=os.fstat(f.fileno()).st_size, progress=progress)

    def receive(
        self,
        source: Iterable[bytes] | BinaryIO,
        relpath: str,
        sha256: str,
        *,
        size: int | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Write chunks or a stream to `relpath`, verified before it becomes visible (the officer's
        /receive passes its request body with the announced size)."""
        return write_verified(source, self.path(relpath), sha256, size=size, progress=progress)

    def get(self, relpath: str, dst: Path, sha256: str, *, progress: Progress | None = None) -> None:
        with self.open(relpath, buffering=0) as f:  # unbuffered: write_verified copies it in the kernel
            write_verified(f, dst, sha256, size=os.fstat(f.fileno()).st_size, progress=progress)

    def stat(self, relpath: str) -> tuple[int, str | None] | None:
        p = self.path(relpath)
        return (p.stat().st_size, None) if p.is_file() else None

    def files(self, relpath: str) -> dict[str, tuple[int, str | None]]:
        """Every file under `relpath` (relative to it) with its size, temp names left out."""
        base = self.path(relpath)
        if base.is_file():
            return {base.name: (base.stat().st_size, None)}
        out: dict[str, tuple[int, str | None]] = {}
        if not base.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(PARTIAL_PREFIX)]
            for name in filenames:
                if name.startswith(PARTIAL_PREFIX):
                    continue
                p = Path(dirpath) / name
                if p.is_file() and not p.is_symlink():  # as vault.identity lists a folder
                    out[p.relative_to(base).as_posix()] = (p.stat().st_size, None)
        return out

    def hash(self, relpath: str, *, progress: Progress | None = None) -> str | None:
        p = self.path(relpath)
        return hash_file(p, progress=progress)[0] if p.is_file() else None

    def delete(self, relpath: str) -> None:
        p = self.path(relpath)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)

    def move(self, src: str, dst: str) -> None:
        s, d = self.path(src), self.path(dst)
        if d.exists():
            raise ZoneError(f"zone {self.id!r}: {dst!r} already exists")
        d.parent.mkdir(parents=True, exist_ok=True)
        os.rename(s, d)
        _fsync_dir(d.parent)

    def exists(self, relpath: str) -> bool:
        return self.path(relpath).exists()

    def free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return None


class OfficerZone:
    """A branch officer over HTTP (vault/officer.py holds the protocol's server side).

    Reads are plain GETs; mutations (`/receive`, `/move`, `/files` DELETE, `/scan`) carry the token in
    `X-Realm-Token`. Uploads go through http.client with `socket.sendfile`, so the bytes go from the
    page cache to the socket without passing through Python; the officer hashes them as they land."""

    kind = "officer"

    def __init__(self, id: str, url: str, token: str | None = None, timeout: float = 60):
        self.id, self.url, self.token, self.timeout = id, url.rstrip("/"), token, timeout
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ZoneError(f"zone {id!r}: officer URL {url!r} is not http(s)://host:port")
        self._parts = parts
        self._session = requests.Session()

    # -- plumbing
    def _headers(self) -> dict[str, str]:
        return {TOKEN_HEADER: self.token} if self.token else {}

    def _request(self, method: str, path: str, timeout: float | None = None, **kw: Any) -> requests.Response:
        try:
            resp = self._session.request(
                method, self.url + path, headers=self._headers(), timeout=timeout or self.timeout, **kw
            )
        except requests.RequestException as exc:
            raise ZoneUnavailable(f"zone {self.id!r}: officer at {self.url} unreachable: {exc}") from exc
        self._raise_for(resp)
        return resp

    def _raise_for(
        self, resp: requests.Response | http.client.HTTPResponse, body: bytes | None = None
    ) -> None:
        status = resp.status_code if isinstance(resp, requests.Response) else resp.status
        if status < 400 or status == 404:
            return
        if body is None:
            body = resp.content if isinstance(resp, requests.Response) else resp.read()
        try:
            message = msgspec.json.decode(body).get("error", "")
        except (msgspec.DecodeError, AttributeError):
            message = body[:200].decode(errors="replace")
        text = f"zone {self.id!r}: officer answered {status}: {message}"
        if status in (401, 403):
            raise ZoneAuthError(text)
        if status == 422:
            raise ChecksumMismatch(text)
        if status == 400 and "path" in message:
            raise UnsafePath(text)
        raise ZoneError(text)

    @staticmethod
    def _fetch_path(relpath: str) -> str:
        asset, _, rest = safe_relpath(relpath).partition("/")
        return f"/fetch/{quote(asset, safe='')}" + (f"?path={quote(rest, safe='')}" if rest else "")

    # -- the interface
    def status(self, timeout: float | None = None) -> dict[str, Any]:
        return self._request("GET", "/status", timeout=timeout).json()

    def put(self, src: Path, relpath: str, sha256: str, *, progress: Progress | None = None) -> None:
        safe_relpath(relpath)
        size = os.path.getsize(src)
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(self._parts.hostname, self._parts.port, timeout=self.timeout)
        try:
            conn.putrequest("POST", f"/receive?path={quote(relpath, safe='')}")
            for key, value in {
                **self._headers(),
                SHA_HEADER: sha256,
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
            }.items():
                conn.putheader(key, value)
            try:
                conn.endheaders()
                with open(src, "rb") as f:
                    sent = 0
                    while sent < size:
                        # sendfile in slices so progress moves while the kernel copies.
                        n = conn.sock.sendfile(f, sent, min(8 * CHUNK, size - sent))
                        if n == 0:
                            raise IncompleteTransfer(f"{src}: file shrank while sending")
                        sent += n
                        if progress:
                            progress(n)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # The officer may have refused early (bad token, no space): its answer is still readable.
                log.debug("officer closed the upload early: %s", exc)
            except OSError as exc:
                raise ZoneUnavailable(f"zone {self.id!r}: officer at {self.url} unreachable: {exc}") from exc
            try:
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                raise ZoneUnavailable(f"zone {self.id!r}: upload of {relpath!r} failed: {exc}") from exc
            self._raise_for(resp, body)
            if resp.status == 404:
                raise ZoneError(f"zone {self.id!r}: officer has no /receive ({self.url})")
        finally:
            conn.close()

    def get(self, relpath: str, dst: Path, sha256: str, *, progress: Progress | None = None) -> None:
        try:
            resp = self._session.get(
                self.url + self._fetch_path(relpath),
                headers=self._headers(),
                stream=True,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ZoneUnavailable(f"zone {self.id!r}: officer at {self.url} unreachable: {exc}") from exc
        with resp:
            self._raise_for(resp)
            if resp.status_code == 404:
                raise FileNotFoundError(f"zone {self.id!r} has no file {relpath!r}")
            size = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
            try:
                write_verified(resp.iter_content(CHUNK), dst, sha256, size=size, progress=progress)
            except requests.RequestException as exc:
                raise ZoneUnavailable(f"zone {self.id!r}: download of {relpath!r} broke: {exc}") from exc

    def stat(self, relpath: str) -> tuple[int, str | None] | None:
        resp = self._request("GET", "/stat", params={"path": safe_relpath(relpath)})
        if resp.status_code == 404:
            return None
        data = resp.json()
        return int(data["size"]), data.get("sha256")

    def files(self, relpath: str) -> dict[str, tuple[int, str | None]]:
        resp = self._request("GET", "/files", params={"path": safe_relpath(relpath)})
        if resp.status_code == 404:
            return {}
        return {f["relpath"]: (int(f["size"]), f.get("sha256")) for f in resp.json()["files"]}

    def hash(self, relpath: str, *, progress: Progress | None = None) -> str | None:
        # The officer hashes its own copy: verifying a remote file moves no bytes over the network.
        # Nothing comes back until the whole file is read there, hence the long timeout.
        resp = self._request("GET", "/hash", timeout=HASH_TIMEOUT_S, params={"path": safe_relpath(relpath)})
        if resp.status_code == 404:
            return None
        data = resp.json()
        if progress:
            progress(int(data.get("size", 0)))
        return data["sha256"]

    def delete(self, relpath: str) -> None:
        self._request("DELETE", "/files", params={"path": safe_relpath(relpath)})

    def move(self, src: str, dst: str) -> None:
        resp = self._request("POST", "/move", params={"src": safe_relpath(src), "dst": safe_relpath(dst)})
        if resp.status_code == 404:
            raise FileNotFoundError(f"zone {self.id!r} has no {src!r} to move")

    def free_bytes(self) -> int | None:
        try:
            # Short timeout: listing zones must not hang on one host that is down.
            return self.status(timeout=3).get("free_bytes")
        except ZoneError:
            return None


class FsspecZone:
    """Any fsspec URL. Credentials and endpoints come from the backend's own environment (for s3fs:
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL...), never from the realm's database."""

    kind = "fsspec"

    def __init__(self, id: str, url: str, **storage_options: Any):
        import fsspec

        self.id, self.url = id, url
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as exc:
            raise ZoneError(f"zone {id!r}: the backend for {url} is not installed ({exc})") from exc
        except Exception as exc:  # some backends connect at once (sftp): any failure means unreachable
            raise ZoneUnavailable(f"zone {id!r}: cannot open {url}: {exc}") from exc
        self.root = root.rstrip("/")

    def _p(self, relpath: str) -> str:
        return f"{self.root}/{safe_relpath(relpath)}"

    def _info(self, path: str) -> dict | None:
        # Another process may have changed the store since this one listed it.
        self.fs.invalidate_cache()
        try:
            return self.fs.info(path)
        except FileNotFoundError:
            return None

    def _hash_path(self, path: str, progress: Progress | None = None) -> str:
        with self.fs.open(path, "rb", block_size=8 * CHUNK) as f:
            return hash_chunks(read_chunks(f), progress)[0]

    def put(self, src: Path, relpath: str, sha256: str, *, progress: Progress | None = None) -> None:
        final = self._p(relpath)
        parent = final.rsplit("/", 1)[0]
        tmp = f"{parent}/{PARTIAL_PREFIX}{uuid.uuid4().hex[:16]}"
        self.fs.makedirs(parent, exist_ok=True)
        try:
            with open(src, "rb") as f, self.fs.open(tmp, "wb") as out:
                for chunk in read_chunks(f):
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
            # A remote store is not ours to trust: read back what landed before it gets its name.
            got = self._hash_path(tmp)
            if got != sha256:
                raise ChecksumMismatch(f"zone {self.id!r}: {relpath}: stored sha256 {got} != {sha256}")
            self.fs.mv(tmp, final)
        except BaseException:
            try:
                self.fs.rm(tmp)
            except (FileNotFoundError, OSError):
                pass
            raise

    def get(self, relpath: str, dst: Path, sha256: str, *, progress: Progress | None = None) -> None:
        path = self._p(relpath)
        if self._info(path) is None:
            raise FileNotFoundError(f"zone {self.id!r} has no file {relpath!r}")
        with self.fs.open(path, "rb", block_size=8 * CHUNK) as f:
            write_verified(read_chunks(f), dst, sha256, progress=progress)

    def stat(self, relpath: str) -> tuple[int, str | None] | None:
        info = self._info(self._p(relpath))
        if info is None or info.get("type") == "directory":
            return None
        return int(info["size"]), None

    def files(self, relpath: str) -> dict[str, tuple[int, str | None]]:
        base = self._p(relpath)
        info = self._info(base)
        if info is None:
            return {}
        if info.get("type") != "directory":
            return {relpath.rsplit("/", 1)[-1]: (int(info["size"]), None)}
        out = {}
        prefix = self.fs._strip_protocol(base).rstrip("/") + "/"
        for path, detail in self.fs.find(base, detail=True).items():
            rel = self.fs._strip_protocol(path)[len(prefix) :]
            if rel and not any(part.startswith(PARTIAL_PREFIX) for part in rel.split("/")):
                out[rel] = (int(detail["size"]), None)
        return out

    def hash(self, relpath: str, *, progress: Progress | None = None) -> str | None:
        path = self._p(relpath)
        info = self._info(path)
        if info is None or info.get("type") == "directory":
            return None
        return self._hash_path(path, progress)

    def delete(self, relpath: str) -> None:
        path = self._p(relpath)
        if self._info(path) is not None:
            self.fs.rm(path, recursive=True)

    def move(self, src: str, dst: str) -> None:
        s, d = self._p(src), self._p(dst)
        if self._info(d) is not None:
            raise ZoneError(f"zone {self.id!r}: {dst!r} already exists")
        info = self._info(s)
        if info is None:
            raise FileNotFoundError(f"zone {self.id!r} has no {src!r} to move")
        if info.get("type") != "directory":
            self.fs.mv(s, d)
            return
        # File by file: a recursive mv also tries to copy the directory markers object stores list,
        # which do not exist as objects (s3fs: NoSuchKey). Each file move is a server-side copy.
        prefix = self.fs._strip_protocol(s).rstrip("/") + "/"
        for path in self.fs.find(s):
            rel = self.fs._strip_protocol(path)[len(prefix) :]
            self.fs.mv(path, f"{d}/{rel}")
        if self._info(s) is not None:  # empty directories left on stores that have real ones
            self.fs.rm(s, recursive=True)

    def free_bytes(self) -> int | None:
        # Only a local file:// store can say; object stores have no "free space".
        if "file" in _protocols(self.fs):
            try:
                return shutil.disk_usage(self.root).free
            except OSError:
                return None
        return None


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


# ---- the registry ---------------------------------------------------------------------------------
class ZonesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """zones.yaml: `zones: {NAME: {url: PATH_OR_URL, token_env: VAR}}` (the same entry as under a host)."""

    zones: dict[str, Any] = msgspec.field(default_factory=dict)
    """Zone name -> ZoneDeclaration, checked one entry at a time so an error names the zone."""


def infer_kind(path_or_url: str) -> tuple[str, str]:
    """(kind, url) for what a person typed: an http(s) URL is an officer, another URL is fsspec, and
    anything else is a local folder (made absolute; it must exist, so a typo is not a new folder)."""
    text = path_or_url.strip()
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme in ("http", "https"):
        OfficerZone("probe", text)  # validates host and port
        return "officer", text.rstrip("/")
    if scheme:
        import fsspec

        try:
            fsspec.get_filesystem_class(scheme)
        except (ValueError, ImportError) as exc:
            raise ZoneError(f"no fsspec backend for {scheme}:// ({exc})") from exc
        return "fsspec", text
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise ZoneError(f"folder {path} does not exist (mount the NAS or create the folder first)")
    return "local", str(path)


def add_zone(store: Any, name: str, path_or_url: str, token_env: str | None = None) -> dict[str, Any]:
    """Register a zone (kind inferred); the row. Adding the same name and URL again is a no-op."""
    if not ZONE_NAME.match(name or ""):
        raise ZoneError(f"zone name {name!r}: use 1-64 of a-z 0-9 . _ - (starting with a letter or digit)")
    if name == HOME_ZONE:
        raise ZoneError(f"zone name {HOME_ZONE!r} is the realm home's own zone")
    if token_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", token_env):
        raise ZoneError(f"token_env {token_env!r} is not an environment variable name")
    kind, url = infer_kind(path_or_url)
    existing = store.one("SELECT * FROM zones WHERE id = ?", (name,))
    if existing is not None:
        if existing["url"] == url and existing["kind"] == kind:
            return existing
        raise ZoneError(f"zone {name!r} already points at {existing['url']}; pick another name")
    with store.tx() as conn:
        conn.execute(
            "INSERT INTO zones(id, kind, url, token_env, added_at, priority) VALUES (?, ?, ?, ?, ?, ?)",
            (name, kind, url, token_env, time.time(), PRIORITY[kind]),
        )
    log.info("zone %s added: %s %s", name, kind, url)
    return store.one("SELECT * FROM zones WHERE id = ?", (name,))


def get_zone_row(store: Any, name: str) -> dict[str, Any]:
    row = store.one("SELECT * FROM zones WHERE id = ?", (name,))
    if row is None:
        known = [r["id"] for r in store.query("SELECT id FROM zones ORDER BY priority, id")]
        raise ZoneNotFound(f"no zone {name!r}; known zones: {', '.join(known) or 'none'}")
    return row


def zone_from_row(row: dict[str, Any]) -> Zone:
    kind, url, name = row["kind"], row["url"], row["id"]
    if kind == "local":
        return LocalZone(name, url[len("file://") :] if url.startswith("file://") else url)
    if kind == "officer":
        return OfficerZone(name, url, os.environ.get(row.get("token_env") or DEFAULT_TOKEN_ENV))
    if kind == "fsspec":
        return FsspecZone(name, url)
    raise ZoneError(f"zone {name!r} has unknown kind {kind!r}")


def open_zone(store: Any, name: str) -> Zone:
    return zone_from_row(get_zone_row(store, name))


def list_zones(store: Any, *, free: bool = True) -> list[dict[str, Any]]:
    """Every zone, best first, with `free_bytes` (None where a store cannot say or is unreachable)."""
    rows = store.query("SELECT * FROM zones ORDER BY priority, id")
    for row in rows:
        row["free_bytes"] = None
        if free:
            try:
                row["free_bytes"] = zone_from_row(row).free_bytes()
            except (ZoneError, OSError, ValueError) as exc:  # one store that cannot say spoils no listing
                log.warning("zone %s: free space unknown: %s", row["id"], exc)
    return rows


def declared_zones(
    home_root: Path, repo_configs: Path, hosts: Hosts | None = None
) -> dict[str, ZoneDeclaration]:
    """Zones declared in `<home>/zones.yaml` (else `configs/zones.yaml`) and under hosts in the hosts
    registry (`hosts.zones()`); the file wins on a name both declare."""
    out: dict[str, ZoneDeclaration] = dict(hosts.zones()) if hosts is not None else {}
    path = Path(home_root) / "zones.yaml"
    if not path.is_file():
        path = Path(repo_configs) / "zones.yaml"
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ZoneError(f"{path}: not valid YAML: {exc}") from exc
        try:
            raw = convert_at(data, ZonesFile, str(path), "").zones
            zones = {
                name: convert_at(z, ZoneDeclaration, str(path), f"zones.{name}") for name, z in raw.items()
            }
        except TypedError as exc:
            raise ZoneError(str(exc)) from exc
        for name, decl in zones.items():
            if decl.url is None:
                raise ZoneError(f"{path}: key 'zones.{name}.url': missing; a zone needs a path or URL")
        out.update(zones)
    return out


def sync_declared(store: Any, declared: dict[str, ZoneDeclaration]) -> list[str]:
    """Add declared zones missing from the table; the names added. A name already registered with
    another URL is left alone (the table is what transfers use) and logged."""
    added = []
    for name, decl in declared.items():
        row = store.one("SELECT url FROM zones WHERE id = ?", (name,))
        try:
            if row is None:
                add_zone(store, name, decl.url, decl.token_env)
                added.append(name)
            elif row["url"] != infer_kind(decl.url)[1]:
                log.warning("zone %s is declared as %s but registered as %s", name, decl.url, row["url"])
        except ZoneError as exc:  # e.g. a NAS that is not mounted now: the other zones still work
            log.warning("declared zone %s skipped: %s", name, exc)
    return added


def sync_realm_zones(realm: Any) -> list[str]:
    """Register the zones a realm's zones.yaml and hosts.yaml declare (what commands call on open)."""
    from sentinels.config import REPO_ROOT
    from sentinels.hosts import load_hosts

    declared = declared_zones(realm.home.root, REPO_ROOT / "configs", load_hosts(realm.config))
    return sync_declared(realm.store, declared) if declared else []
