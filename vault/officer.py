"""The branch officer: one zone on a storage host, served over HTTP.

    realm officer --zone NAME [--port 8768] --base-dir DIR [--bind 127.0.0.1] [--token-env VAR]

The officer owns the server side of the officer protocol; `vault.zones.OfficerZone` is its client.
JSON in and out (errors are `{"error": message}`), file bytes streamed both ways:

| route | what |
| --- | --- |
| `GET /health`, `GET /status` | zone name, base dir, free and total bytes, asset count |
| `GET /assets`, `GET /assets/<id>[?hash=1]` | top-level entries (assets) with sizes; one asset's files (with sha256 when known, or computed with `hash=1`) |
| `GET /fetch/<id>[?path=REL]` | the bytes of a file asset, or of file REL inside a folder asset; `X-Sha256` when known |
| `GET /stat?path=`, `GET /files?path=`, `GET /hash?path=` | one file's size (and sha256 when known); every file under a path; re-hash a stored file here, so verifying moves no bytes |
| `POST /receive?path=` | streamed upload with `X-Sha256` and `Content-Length`: temp name, hashed as it lands, renamed only when it matches (422 when not) |
| `POST /move?src=&dst=`, `DELETE /files?path=`, `DELETE /assets/<id>`, `POST /scan` | commit a staged folder, delete, re-hash everything |

Security: mutations (POST, DELETE) need `X-Realm-Token` equal to the token from the environment
variable named by `--token-env` (`REALM_OFFICER_TOKEN` by default); without a token the officer
serves only on a loopback address. Every id and path passes `vault.zones.safe_relpath` and must
resolve inside the base dir, symlinks included. Bytes are stored and served, never interpreted.

Standard-library HTTP (like the guild's skill server): a dozen routes. Streaming stays fast without a
framework: files go out with `socket.sendfile`, and an upload is read straight from the socket into
one reused buffer, written, and hashed on a second thread (`vault.zones.write_verified`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from vault.zones import (
    PARTIAL_PREFIX,
    SHA_HEADER,
    TOKEN_HEADER,
    ChecksumMismatch,
    IncompleteTransfer,
    LocalZone,
    UnsafePath,
    ZoneError,
    read_chunks,
    safe_relpath,
)

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
TEMP_FILE = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}[0-9a-f]{{16}}$")  # write_verified's temp names
# The officer's own lock inside the base dir; the partial prefix keeps it out of every listing.
LOCK_NAME = f"{PARTIAL_PREFIX}officer"
DRAIN_LIMIT = 1 << 20  # a refused upload's body is read up to this much, so the client sees the answer


class OfficerError(ZoneError):
    """A request the officer refuses: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Officer:
    """The storage side: a LocalZone on the base dir plus a cache of sha256 by (size, mtime)."""

    def __init__(self, zone: str, base_dir: Path, token: str | None = None):
        self.name = zone
        self.store = LocalZone(zone, Path(base_dir).resolve())
        self.token = token
        self._hashes: dict[str, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    @property
    def base(self) -> Path:
        return self.store.root

    # -- hashes
    def _remember(self, relpath: str, sha256: str) -> None:
        st = self.store.path(relpath).stat()
        with self._lock:
            self._hashes[relpath] = (st.st_size, st.st_mtime_ns, sha256)

    def known_sha(self, relpath: str) -> str | None:
        """The sha256 of a stored file if this officer hashed or received it and it has not changed."""
        with self._lock:
            hit = self._hashes.get(relpath)
        if hit is None:
            return None
        try:
            st = self.store.path(relpath).stat()
        except OSError:
            return None
        return hit[2] if (st.st_size, st.st_mtime_ns) == hit[:2] else None

    def hash(self, relpath: str) -> dict[str, Any] | None:
        """Re-hash a stored file (always reads it: this is what `verify` asks for)."""
        sha = self.store.hash(relpath)
        if sha is None:
            return None
        self._remember(relpath, sha)
        return {"path": relpath, "sha256": sha, "size": self.store.path(relpath).stat().st_size}

    # -- listings
    def files(self, relpath: str, *, compute: bool = False) -> list[dict[str, Any]] | None:
        """Every file under `relpath` (relative to it; a file lists itself by its name)."""
        p = self.store.path(relpath)
        if not p.exists():
            return None
        out = []
        for rel, (size, _) in sorted(self.store.files(relpath).items()):
            full = relpath if p.is_file() else f"{relpath}/{rel}"
            sha = self.hash(full)["sha256"] if compute else self.known_sha(full)
            out.append({"relpath": rel, "size": size, "sha256": sha})
        return out

    def assets(self) -> list[dict[str, Any]]:
        out = []
        for entry in sorted(self.base.iterdir()):
            if entry.name.startswith(PARTIAL_PREFIX):
                continue
            out.append(self.asset(entry.name, files=False))
        return [a for a in out if a is not None]

    def asset(self, asset_id: str, *, files: bool = True, compute: bool = False) -> dict[str, Any] | None:
        if "/" in safe_relpath(asset_id) or asset_id.startswith(PARTIAL_PREFIX):
            raise UnsafePath(f"bad asset id {asset_id!r}")
        p = self.store.path(asset_id)
        listing = self.files(asset_id, compute=compute)
        if listing is None:
            return None
        out = {
            "id": asset_id,
            "is_dir": p.is_dir(),
            "size_bytes": sum(f["size"] for f in listing),
            "file_count": len(listing),
        }
        if files:
            out["files"] = listing
        return out

    def status(self) -> dict[str, Any]:
        usage = shutil.disk_usage(self.base)
        return {
            "ok": True,
            "zone": self.name,
            "base_dir": str(self.base),
            "free_bytes": usage.free,
            "total_bytes": usage.total,
            "assets": sum(1 for e in self.base.iterdir() if not e.name.startswith(PARTIAL_PREFIX)),
            "protocol": PROTOCOL_VERSION,
        }

    def scan(self) -> list[dict[str, Any]]:
        """Hash every stored file (fills the cache so later stats carry sha256)."""
        return [self.asset(a["id"], compute=True) for a in self.assets()]

    # -- mutations
    def receive(self, relpath: str, body: BinaryIO, sha256: str, size: int) -> dict[str, Any]:
        """Store `size` bytes of a request body, verified before they become visible."""
        self.store.receive(body, relpath, sha256, size=size)
        self._remember(relpath, sha256)
        return {"path": relpath, "sha256": sha256, "size": size}

    def move(self, src: str, dst: str) -> None:
        if not self.store.exists(src):
            raise OfficerError(404, f"nothing at {src!r}")
        if self.store.exists(dst):
            raise OfficerError(409, f"{dst!r} already exists")
        self.store.move(src, dst)
        with self._lock:  # a rename keeps size and mtime, so the hashes stay good under the new name
            for key in [k for k in self._hashes if k == src or k.startswith(src + "/")]:
                self._hashes[dst + key[len(src) :]] = self._hashes.pop(key)

    def delete(self, relpath: str) -> bool:
        if not self.store.exists(relpath):
            return False
        self.store.delete(relpath)
        with self._lock:
            for key in [k for k in self._hashes if k == relpath or k.startswith(relpath + "/")]:
                del self._hashes[key]
        return True

    def clean_temp_files(self) -> int:
        """Remove the temp files of uploads cut off by a crash (staging folders stay: a retried push
        resumes from the verified files in them)."""
        n = 0
        for dirpath, _dirs, names in os.walk(self.base):
            for name in names:
                if TEMP_FILE.match(name):
                    (Path(dirpath) / name).unlink(missing_ok=True)
                    n += 1
        return n


def make_handler(officer: Officer, bind: str) -> type[BaseHTTPRequestHandler]:
    open_without_token = officer.token is None and is_loopback(bind)

    class Handler(BaseHTTPRequestHandler):
        server_version = "RealmOfficer/1"
        protocol_version = "HTTP/1.1"  # keep-alive: a push is many small requests and a few big ones
        # A JSON answer goes out as two writes (headers, then body). With Nagle's algorithm the body
        # waits for the client to ACK the headers, which a delayed ACK holds back ~40 ms: every
        # /receive, /files and /move answered 40 ms late, a quarter of a 200 MB push.
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s " + fmt, self.address_string(), *args)

        # -- responses
        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client is gone (e.g. a killed push)
                self.close_connection = True

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def _send_file(self, relpath: str) -> None:
            p = officer.store.path(relpath)
            if not p.is_file():
                raise OfficerError(404, f"no file {relpath!r}")
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                sha = officer.known_sha(relpath)
                if sha:
                    self.send_header(SHA_HEADER, sha)
                self.end_headers()
                if self.command != "HEAD":
                    self.connection.sendfile(f, 0, size)

        # -- request pieces
        def _drain(self) -> None:
            """Read a refused upload's body (up to DRAIN_LIMIT) and close, so the client can read why."""
            n = int(self.headers.get("Content-Length") or 0)
            if 0 < n <= DRAIN_LIMIT:
                for _ in read_chunks(self.rfile, n):
                    pass
            elif n:
                self.close_connection = True

        def _check_token(self) -> None:
            origin = self.headers.get("Origin")
            if origin and urlsplit(origin).netloc != self.headers.get("Host"):
                raise OfficerError(403, f"cross-origin request from {origin} refused")
            if open_without_token:
                return
            given = self.headers.get(TOKEN_HEADER, "")
            if not officer.token or not hmac.compare_digest(given.encode(), officer.token.encode()):
                raise OfficerError(401, f"missing or wrong {TOKEN_HEADER} header")

        # -- routing
        def _route(self) -> None:
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = [unquote(p) for p in url.path.split("/")[1:]]
            method = self.command
            try:
                if method in ("POST", "DELETE"):
                    try:
                        self._check_token()
                    except OfficerError:
                        self._drain()
                        raise
                self._dispatch(method, parts, q)
            except OfficerError as exc:
                self._error(exc.status, str(exc))
            except UnsafePath as exc:
                if method == "POST":
                    self._drain()
                self._error(400, f"path refused: {exc}")
            except ChecksumMismatch as exc:
                self._error(422, str(exc))
            except IncompleteTransfer as exc:
                log.warning("upload cut off: %s", exc)
                self.close_connection = True
                self._error(400, str(exc))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception as exc:  # an answer beats a dropped connection; the log keeps the trace
                log.exception("officer %s %s failed", method, self.path)
                self.close_connection = True
                self._error(500, f"{type(exc).__name__}: {exc}")

        def _dispatch(self, method: str, parts: list[str], q: dict[str, str]) -> None:
            head = parts[0] if parts else ""
            if method in ("GET", "HEAD") and head in ("health", "status") and len(parts) == 1:
                self._json(200, officer.status())
            elif method == "GET" and parts == ["assets"]:
                self._json(200, {"zone": officer.name, "assets": officer.assets()})
            elif method == "GET" and head == "assets" and len(parts) == 2:
                found = officer.asset(parts[1], compute=q.get("hash") in ("1", "true"))
                if found is None:
                    raise OfficerError(404, f"no asset {parts[1]!r}")
                self._json(200, found)
            elif method in ("GET", "HEAD") and head == "fetch" and len(parts) == 2:
                asset = parts[1]
                if "/" in safe_relpath(asset):
                    raise UnsafePath(f"bad asset id {asset!r}")
                self._send_file(f"{asset}/{safe_relpath(q['path'])}" if q.get("path") else asset)
            elif method == "GET" and parts == ["stat"]:
                rel = safe_relpath(q.get("path", ""))
                p = officer.store.path(rel)
                if not p.is_file():
                    raise OfficerError(404, f"no file {rel!r}")
                self._json(200, {"path": rel, "size": p.stat().st_size, "sha256": officer.known_sha(rel)})
            elif method == "GET" and parts == ["files"]:
                rel = safe_relpath(q.get("path", ""))
                listing = officer.files(rel)
                if listing is None:
                    raise OfficerError(404, f"nothing at {rel!r}")
                self._json(200, {"path": rel, "files": listing})
            elif method == "GET" and parts == ["hash"]:
                rel = safe_relpath(q.get("path", ""))
                found = officer.hash(rel)
                if found is None:
                    raise OfficerError(404, f"no file {rel!r}")
                self._json(200, found)
            elif method == "POST" and parts == ["receive"]:
                self._receive(q)
            elif method == "POST" and parts == ["move"]:
                officer.move(safe_relpath(q.get("src", "")), safe_relpath(q.get("dst", "")))
                self._json(200, {"moved": q["src"], "to": q["dst"]})
            elif method == "POST" and parts == ["scan"]:
                self._json(200, {"zone": officer.name, "assets": officer.scan()})
            elif method == "DELETE" and (parts == ["files"] or (head == "assets" and len(parts) == 2)):
                rel = safe_relpath(q.get("path", "") if head == "files" else parts[1])
                self._json(200, {"deleted": rel, "existed": officer.delete(rel)})
            else:
                raise OfficerError(404, f"no route {method} {'/' + '/'.join(parts)}")

        def _receive(self, q: dict[str, str]) -> None:
            rel = safe_relpath(q.get("path", ""))
            sha = (self.headers.get(SHA_HEADER) or "").lower()
            length = self.headers.get("Content-Length")
            if not SHA_RE.match(sha):
                self._drain()
                raise OfficerError(400, f"{SHA_HEADER} header must be a sha256 hex digest")
            if length is None or not length.isdigit():
                self.close_connection = True
                raise OfficerError(411, "Content-Length is required (chunked uploads are not accepted)")
            size = int(length)
            officer.store.path(rel)  # refuses an escaping path before any byte is read
            if shutil.disk_usage(officer.base).free < size:
                self._drain()
                raise OfficerError(507, f"not enough free space for {size} bytes")
            t0 = time.perf_counter()
            try:
                result = officer.receive(rel, self.rfile, sha, size)
            except ChecksumMismatch:
                log.warning("upload of %s refused: sha256 mismatch", rel)
                raise
            log.info("received %s (%d bytes in %.3f s)", rel, size, time.perf_counter() - t0)
            self._json(201, result)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._route()

        def do_HEAD(self) -> None:  # noqa: N802
            self._route()

        def do_POST(self) -> None:  # noqa: N802
            self._route()

        def do_DELETE(self) -> None:  # noqa: N802
            self._route()

    return Handler


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def make_server(officer: Officer, host: str = "127.0.0.1", port: int = 8768) -> ThreadingHTTPServer:
    if officer.token is None and not is_loopback(host):
        raise ZoneError(
            f"refusing to serve on {host} without a token: set the token variable, or bind to loopback"
        )
    cls = _V6Server if ":" in host else ThreadingHTTPServer  # an IPv6 address (::1, ::)
    server = cls((host, port), make_handler(officer, host))
    server.daemon_threads = True
    return server


def serve(officer: Officer, host: str, port: int, stop: threading.Event) -> None:
    """Serve until `stop` is set (SIGTERM/SIGINT in the CLI)."""
    removed = officer.clean_temp_files()
    if removed:
        log.info("removed %d temp files of cut-off uploads", removed)
    server = make_server(officer, host, port)
    thread = threading.Thread(target=server.serve_forever, name="officer-http", daemon=True)
    thread.start()
    log.info("officer for zone %s on http://%s:%s/ serving %s", officer.name, host, port, officer.base)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        log.info("officer for zone %s stopped", officer.name)
