"""The verified write under every transfer (vault/zones.py `write_verified`) and the push bench.

`write_verified` lands bytes by the cheapest way each source allows (a file copied with
copy_file_range, a stream such as a request body through one reused buffer, chunks) while a second
thread hashes what landed. These tests drive each way with real files and a real loopback TCP connection,
with sizes on both sides of one block (inline hash, hash thread), and check the rules that make a
transfer safe to kill: byte-identical on success; on a wrong sha256 or a short body, no file and no
temp name; and a request body read exactly, so a keep-alive connection stays in step. The last test
runs bench/vault.py small and checks the push bench really moves every byte in every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import REPO
from vault.zones import (
    BLOCK,
    ChecksumMismatch,
    IncompleteTransfer,
    read_chunks,
    write_verified,
)

SIZES = (0, 10, BLOCK + 7, 2 * BLOCK + 12345)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".partial-"))


def sources(path: Path):
    """Each kind of source write_verified takes, over the bytes of `path` (name, opener)."""
    yield "unbuffered file (copy_file_range)", lambda: open(path, "rb", buffering=0)
    yield "buffered stream (readinto)", lambda: open(path, "rb")
    yield "chunks", lambda: read_chunks(open(path, "rb"))


@pytest.mark.parametrize("size", SIZES)
def test_every_source_lands_byte_identical(tmp_path, size):
    src = tmp_path / "src.bin"
    data = os.urandom(size)
    src.write_bytes(data)
    out = tmp_path / "out"
    for name, opener in sources(src):
        dst = out / name.split()[0] / "a.bin"
        seen = []
        source = opener()
        try:
            assert write_verified(source, dst, sha(data), size=size, progress=seen.append) == size, name
        finally:
            getattr(source, "close", lambda: None)()
        assert dst.read_bytes() == data, name
        assert sum(seen) == size, name
        assert leftovers(dst.parent) == [], name


@pytest.mark.parametrize("size", (10, 2 * BLOCK + 12345))
def test_a_wrong_hash_or_a_short_source_leaves_nothing(tmp_path, size):
    src = tmp_path / "src.bin"
    data = os.urandom(size)
    src.write_bytes(data)
    for name, opener in sources(src):
        dst = tmp_path / "out" / name.split()[0] / "a.bin"
        with pytest.raises(ChecksumMismatch):
            write_verified(opener(), dst, sha(data[:-1] + b"x"), size=size)
        with pytest.raises(IncompleteTransfer):
            write_verified(opener(), dst, sha(data + b"more"), size=size + 4)
        assert not dst.exists(), name
        assert leftovers(dst.parent) == [], name


def serve_once(handler) -> tuple[int, threading.Thread, list]:
    """A loopback TCP server that accepts one connection and runs `handler(conn, rfile)` on it."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    result: list = []

    def run() -> None:
        conn, _ = server.accept()
        server.close()
        with conn, conn.makefile("rb") as rfile:
            try:
                result.append(handler(conn, rfile))
            except Exception as exc:  # the test thread asserts on it
                result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread, result


def read_head(rfile) -> int:
    """Read request headers as http.server does (through the buffered rfile); the Content-Length."""
    length = 0
    while (line := rfile.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return length


def test_a_request_body_is_read_exactly_and_the_connection_stays_in_step(tmp_path):
    """Two uploads and a trailing line on one connection, the first body's start already buffered
    by rfile with the headers (as in the officer): each lands whole, a corrupt one is refused, and
    the bytes after each body are still there for the next request."""
    good, bad = os.urandom(2 * BLOCK + 999), os.urandom(BLOCK + 5)

    def handler(conn, rfile):
        landed = []
        for name, want in (("good.bin", sha(good)), ("bad.bin", sha(bad[:-1] + b"x"))):
            size = read_head(rfile)
            try:
                write_verified(rfile, tmp_path / name, want, size=size)
                landed.append(name)
            except ChecksumMismatch:
                landed.append("refused")
        return landed, rfile.readline()

    port, thread, result = serve_once(handler)
    with socket.create_connection(("127.0.0.1", port)) as client:
        for body in (good, bad):
            head = f"POST /receive HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            client.sendall(head + body[:1000])  # the server's first read takes headers and body
            client.sendall(body[1000:])
        client.sendall(b"NEXT REQUEST\r\n")
        thread.join(60)
    assert result == [(["good.bin", "refused"], b"NEXT REQUEST\r\n")], result
    assert (tmp_path / "good.bin").read_bytes() == good
    assert not (tmp_path / "bad.bin").exists() and leftovers(tmp_path) == []


def test_a_body_cut_off_midway_leaves_nothing(tmp_path):
    body = os.urandom(2 * BLOCK)

    def handler(conn, rfile):
        size = read_head(rfile)
        write_verified(rfile, tmp_path / "a.bin", sha(body), size=size)

    port, thread, result = serve_once(handler)
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(f"POST / HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        client.sendall(body[: BLOCK + 3])
    thread.join(60)
    assert len(result) == 1 and isinstance(result[0], IncompleteTransfer), result
    assert not (tmp_path / "a.bin").exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_the_push_bench_moves_every_byte_in_every_run(tmp_path):
    """bench/vault.py, small: every push run sends the whole checkpoint to the real officer and gets a
    verified location (not `held`), cp and push alternate over the same runs, the repeat moves nothing."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "vault.py"),
            *("--assets", "40", "--samples", "20", "--push-mb", "6", "--runs", "5"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    push = json.loads(proc.stdout)["push"]
    assert push["every_push_moved_every_byte"], push
    assert {k: len(v) for k, v in push["runs_s"].items()} == {
        k: 5 for k in ("cp", "push", "cp_fsync", "sha256", "folder_push")
    }
    assert push["repeat_bytes_moved"] == 0 and push["repeat_status"] == "held"
    assert push["ratio_cp_over_push"] == pytest.approx(push["cp_s"] / push["push_s"], rel=0.05)
