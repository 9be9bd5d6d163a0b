"""The line engine behind `checks.check_file`: dedup and validate a quest file chunk by chunk.

Speed matters (intake must keep up with a plain `json.loads` loop), so the common case stays in
C: a 4 MB chunk with no blank lines, no odd whitespace and no duplicates is deduped with one
`map(hash, ...)` and set operations, and validated with one msgspec `decode_lines` call. Anything
else (a duplicate, a blank line, CRLF, a line the fast decoder refuses) sends that chunk down the
per-line path, whose Python validators name the line and the problem.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from arena.intake.fast import FAST, FAST_ERRORS
from arena.intake.quarantine import quarantine_key
from arena.intake.specs import SPECS, answer_leak, detect_spec, prompts_of, type_name

if TYPE_CHECKING:
    from arena.intake.checks import Report

BOM = b"\xef\xbb\xbf"
QUICK_LINES = 100
LEAK_MIN_CHARS = 8
QUARANTINE_MSG = (
    "eval quarantine: the prompt matches an eval-set item ({}); examples from eval sets must never"
    " be trained on"
)


def blocks(path: Path, sha: Any, max_line: int) -> Iterator[tuple[str, int, Any]]:
    """Yield ("lines", n0, complete lines numbered n0+1...), ("long", n, size) for a line over
    max_line (never held whole: a 500 MB line of garbage costs no memory), and finally
    ("tail", n, bytes) for text after the last newline."""
    chunk_size = min(4 << 20, max_line)
    n = 0
    carry = b""
    long_size = 0  # > 0 while inside an over-long line
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            sha.update(chunk)
            if long_size:
                cut = chunk.find(b"\n")
                if cut < 0:
                    long_size += len(chunk)
                    continue
                n += 1
                yield "long", n, long_size + cut + 1
                long_size, chunk = 0, chunk[cut + 1 :]
            parts = chunk.split(b"\n")
            parts[0] = carry + parts[0]
            carry = parts.pop()
            if len(carry) > max_line:
                long_size, carry = len(carry), b""
            if parts and len(parts[0]) > max_line:  # only the first part can be: chunks are <= max_line
                n += 1
                yield "long", n, len(parts[0]) + 1
                parts = parts[1:]
            if parts:
                yield "lines", n, parts
                n += len(parts)
    if long_size:
        yield "long", n + 1, long_size
    elif carry:
        yield "tail", n + 1, carry


def _first_bad_utf8(data: bytes) -> int:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return bad.start
    return 0


def _legacy_guess(data: bytes) -> str:
    """Bytes 0x80-0x9f are printable only in Windows-1252 (curly quotes, the euro sign)."""
    if any(0x80 <= b <= 0x9F for b in data):
        try:
            data.decode("cp1252")
            return "Windows-1252"
        except UnicodeDecodeError:
            pass
    return "Latin-1 (ISO-8859-1)"


class LineIndex:
    """Byte offsets of lines in a file, found on demand: only the error path needs them.

    Errors arrive in line order, so each lookup resumes the scan where the last one stopped and a
    whole file of bad lines still costs one read."""

    def __init__(self, path: Path, max_line: int):
        self.path, self.max_line = path, max_line
        self.n, self.pos = 1, 0  # line self.n starts at byte self.pos

    def line(self, n: int) -> tuple[int, bytes]:
        """(offset of line n, its bytes without the newline, at most max_line of them)."""
        if n < self.n:
            self.n, self.pos = 1, 0
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            base, seen = self.pos, self.n  # the next chunk starts at base; lines before it: seen - 1
            while seen < n:
                chunk = f.read(1 << 20)
                if not chunk:
                    return base, b""  # past the end: the index keeps its last good line
                need, count = n - seen, chunk.count(b"\n")
                if count < need:  # the line is further on: skip the chunk whole
                    seen, base = seen + count, base + len(chunk)
                    continue
                cut = -1
                for _ in range(need):
                    cut = chunk.index(b"\n", cut + 1)
                self.n, self.pos = n, base + cut + 1
                f.seek(self.pos)
                break
            raw = b""
            while len(raw) < self.max_line and (part := f.read(1 << 16)):
                cut = part.find(b"\n")
                if cut >= 0:
                    raw += part[:cut]
                    break
                raw += part
        return self.pos, raw[: self.max_line]


class LineChecker:
    def __init__(
        self,
        rep: Report,
        spec: str | None,
        level: str,
        max_errors: int,
        quarantine: dict | None,
        index: LineIndex | None = None,
    ):
        self.rep, self.max_errors, self.quarantine = rep, max_errors, quarantine
        self.index = index
        self.deep, self.quick = level == "deep", level == "quick"
        self.seen: set[int] = set()
        self.examples = 0
        self.halted = False
        self.spec: str | None = None
        self.validate = self.fast = None
        if spec:
            self.set_spec(spec)

    def set_spec(self, spec: str) -> None:
        self.spec = self.rep.spec = spec
        self.validate = SPECS[spec]
        # DEEP needs the dicts for leakage checks, so it always takes the per-line path.
        self.fast = None if self.deep else FAST.get(spec)

    def error(self, n: int, msg: str, validator: str) -> None:
        self.rep.add(n, msg, self.max_errors, validator)

    def checking(self) -> bool:
        """False once nothing more can be learned (spec unknown) or QUICK has seen enough lines."""
        return not self.halted and not (self.quick and self.examples > QUICK_LINES and self.rep.ok)

    # ---- a chunk of complete lines -----------------------------------------------------------
    def block(self, n0: int, parts: list[bytes]) -> None:
        if n0 == 0 and parts[0].startswith(BOM):
            parts[0] = parts[0][3:]
        i = 0
        while self.validate is None and i < len(parts):  # the first example picks the spec
            self.line(n0 + i + 1, parts[i], True)
            i += 1
        if i:
            n0, parts = n0 + i, parts[i:]
            if not parts:
                return
        blob = b"\n".join(parts)
        keys = list(map(bytes.strip, parts))
        # Whitespace runs, tabs, CRs or blank lines need the per-line dedup key; so do duplicates.
        if b"  " in blob or b"\t" in blob or b"\r" in blob or b"" in keys:
            for k, raw in enumerate(parts, n0 + 1):
                self.line(k, raw, True)
            return
        hashes = set(map(hash, keys))
        if len(hashes) != len(parts) or not self.seen.isdisjoint(hashes):
            for k, raw in enumerate(parts, n0 + 1):
                self.line(k, raw, True)
            return
        self.seen |= hashes
        before = self.examples
        self.examples += len(parts)
        if not self.checking() or (self.quick and before >= QUICK_LINES):
            return
        if self.fast is not None:
            # The decoded chunk is tens of thousands of young containers: without this pause
            # the cyclic GC scans them over and over and the decode takes twice as long.
            gc_on = gc.isenabled()
            gc.disable()
            try:
                if self.fast_block(n0, blob, before):
                    return
            finally:
                if gc_on:
                    gc.enable()
        for k, raw in enumerate(parts, n0 + 1):  # already deduped: validate each line alone
            self.validate_line(k, raw, True, before + k - n0)

    def fast_block(self, n0: int, blob: bytes, before: int) -> bool:
        """Validate a clean chunk in one decode; False sends it down the per-line path."""
        fast = self.fast
        try:
            items = fast.decode_lines(blob)
        except FAST_ERRORS:
            return False
        if not all(map(fast.ok, items)):
            return False
        if before == 0 and items[0].metadata:
            self.rep.first_meta = items[0].metadata
        if self.quarantine:
            for k, item in enumerate(items, n0 + 1):
                self.quarantined(k, fast.prompts(item))
        return True

    # ---- one line ----------------------------------------------------------------------------
    def line(self, n: int, raw: bytes, ended: bool) -> None:
        if n == 1 and raw.startswith(BOM):
            raw = raw[3:]
        line = raw.strip()
        if not line:
            return
        # Dedup key: the line with whitespace runs collapsed; clean lines skip the collapse.
        key = (
            line if b"  " not in line and b"\t" not in line and b"\r" not in line else b" ".join(line.split())
        )
        digest = hash(key)
        if digest in self.seen:
            self.rep.dup_lines.append(n)
            return
        self.seen.add(digest)
        self.examples += 1
        if self.checking():
            self.validate_line(n, line, ended, self.examples)

    def validate_line(self, n: int, line: bytes, ended: bool, example_no: int) -> None:
        fast = self.fast
        if fast is not None:
            try:
                item = fast.decode(line)
            except FAST_ERRORS:
                item = None  # the slow path below names the problem
            if item is not None and fast.ok(item):
                if example_no == 1 and item.metadata:
                    self.rep.first_meta = item.metadata
                if self.quarantine:
                    self.quarantined(n, fast.prompts(item))
                return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self.json_error(n, line, ended, exc)
            return
        if self.validate is None:
            spec = detect_spec(obj)
            if spec is None:
                if isinstance(obj, dict):
                    msg = (
                        f"no known spec fits this example (fields: {', '.join(sorted(obj)) or 'none'});"
                        f" expected one of {', '.join(SPECS)}, or name one in FILE.meta.json"
                    )
                else:
                    msg = f"expected a JSON object per line, got {type_name(obj)}"
                self.error(n, msg, "intake.spec")
                self.halted = True  # nothing more to learn; keep reading only for the sha256
                return
            self.set_spec(spec)
        assert self.validate is not None and self.spec is not None
        if err := self.validate(obj):
            self.error(n, err, f"spec.{self.spec}")
            return
        if example_no == 1 and isinstance(obj.get("metadata"), dict):
            self.rep.first_meta = obj["metadata"]
        if self.quarantine:
            self.quarantined(n, prompts_of(self.spec, obj))
        if self.deep and (err := answer_leak(self.spec, obj, LEAK_MIN_CHARS)):
            self.error(n, err, "content.leakage")

    def encoding_reason(self, n: int, line: bytes) -> str:
        """Where the first byte that is not UTF-8 sits (column, file offset) and what it looks like.

        `line` may have lost leading blanks or a BOM, so the raw line is re-read from the file:
        the message then gives the byte's true column and offset, whatever the line path was."""
        start = 0
        if self.index is not None:
            start, raw = self.index.line(n)
            line = raw or line
        bad = _first_bad_utf8(line)
        where = f"byte 0x{line[bad]:02x} at column {bad + 1}"
        if self.index is not None:
            where += f", byte offset {start + bad} in the file"
        return (
            f"not valid UTF-8 ({where}); this looks like {_legacy_guess(line)} or another legacy"
            " encoding: save the file as UTF-8"
        )

    def quarantined(self, n: int, prompts: list[str]) -> None:
        for p in prompts:
            if hit := self.quarantine.get(quarantine_key(p)):
                self.error(n, QUARANTINE_MSG.format(hit), "content.quarantine")
                return

    def json_error(self, n: int, line: bytes, ended: bool, exc: Exception) -> None:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            self.error(n, self.encoding_reason(n, line), "intake.encoding")
            return
        if not ended and n > 1:
            self.error(
                n,
                "last line is cut off (no newline at the end and not valid JSON):"
                " the file was still being written or was truncated",
                "intake.json",
            )
        else:
            self.error(n, f"invalid JSON: {exc}", "intake.json")
