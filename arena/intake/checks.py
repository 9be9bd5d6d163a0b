"""Content checks: one streaming pass over a quest file that validates, hashes and dedups it.

Levels: QUICK checks the schema of the first lines only; STANDARD checks every line; DEEP adds
answer leakage. Eval quarantine runs whenever it is switched on (the default), at any level.

Encoding policy, strict about meaning and lenient about noise: a UTF-8 BOM at the start and CRLF
line endings are accepted (editors on Windows write both, and neither changes a single example);
blank lines are skipped. Anything that changes meaning is refused with the line number: invalid
JSON, bytes that are not UTF-8 (Latin-1 exports), UTF-16, binary data, over-long lines.

Dedup keys are the raw JSON lines with whitespace runs collapsed (`" ".join(line.split())`), so
examples that differ only in spacing or trailing blanks count as one. Only each key's 64-bit
hash is kept, so memory stays flat on big files; the chance that two different lines of a
million-line file collide is about 1e-8, a price we take for a 3x cheaper check than BLAKE2.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from arena.intake.linecheck import BOM, LineChecker, LineIndex, blocks
from arena.intake.quarantine import quarantine_key
from arena.intake.specs import SPEC_VERSION

log = logging.getLogger("realm.intake")

LEVELS = ("quick", "standard", "deep")
_SNIFF = 8192


@dataclass
class Report:
    """What one pass found; `ok` decides queued versus failed."""

    validator: str = "intake.content"
    validator_version: int = SPEC_VERSION
    level: str = "standard"
    spec: str | None = None
    sha256: str = ""
    size_bytes: int = 0
    line_count: int = 0
    example_count: int = 0
    duplicates_dropped: int = 0
    dup_lines: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    errors_total: int = 0
    first_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.errors_total == 0

    def add(self, line: int, message: str, max_errors: int, validator: str | None = None) -> None:
        if self.errors_total == 0 and validator:
            self.validator = validator  # the first failing validator names the refusal
        self.errors_total += 1
        if len(self.errors) < max_errors:
            self.errors.append((line, message))

    def reason(self) -> str:
        line, msg = self.errors[0]
        head = f"line {line}: {msg}" if line else msg
        more = self.errors_total - 1
        return head + (f" (and {more} more error{'s' * (more > 1)})" if more else "")

    def error_body(self) -> dict[str, Any]:
        return {
            "validator": self.validator,
            "validator_version": self.validator_version,
            "level": self.level,
            "spec": self.spec,
            "lines": [n for n, _ in self.errors],
            "errors": [{"line": n, "message": m} for n, m in self.errors],
            "errors_total": self.errors_total,
        }


class EvalIndex:
    """Normalised eval prompts from `<home>/evalsets/**/*.jsonl`, reloaded when any file changes."""

    def __init__(self, root: Path):
        self.root = root
        self._sig: tuple = ()
        self._prompts: dict[str, str] = {}

    def prompts(self) -> dict[str, str]:
        files = sorted(self.root.glob("**/*.jsonl")) if self.root.is_dir() else []
        sig = tuple((str(p), *_stat_sig(p)) for p in files)
        if sig != self._sig:
            self._prompts = self._load(files)
            self._sig = sig
        return self._prompts

    def _load(self, files: list[Path]) -> dict[str, str]:
        prompts: dict[str, str] = {}
        for path in files:
            try:
                for raw in path.read_bytes().splitlines():
                    if not raw.strip():
                        continue
                    item = orjson.loads(raw)
                    if isinstance(item, dict) and isinstance(item.get("prompt"), str):
                        where = f"{item.get('skill', path.parent.parent.name)} level {item.get('level', '?')}"
                        prompts[quarantine_key(item["prompt"])] = where
            except (OSError, orjson.JSONDecodeError) as exc:
                # A broken eval file must not open the gate silently: say so loudly.
                log.error("eval set %s unreadable (%s); its items are not quarantined", path, exc)
        return prompts


def _stat_sig(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def sniff(path: Path) -> tuple[str, str] | None:
    """File-wide problems visible in the first bytes: (validator, message) or None."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
    if not head:
        return ("intake.encoding", "empty file: a quest needs at least one JSON object per line")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return ("intake.encoding", "the file is UTF-16; save it as UTF-8 (one JSON object per line)")
    if b"\x00" in head:
        return ("intake.encoding", "binary data (NUL bytes), not JSONL text")
    body = head[3:] if head.startswith(BOM) else head
    if not body.strip():
        return ("intake.encoding", "no examples: the file holds only whitespace")
    first = body.lstrip()[:1]
    if first == b"[":
        return (
            "intake.format",
            "line 1: a JSON array; quests are JSONL, one JSON object per line (not one array)",
        )
    return None


def check_file(
    path: Path,
    *,
    spec: str | None,
    level: str,
    max_errors: int,
    max_line_bytes: int,
    quarantine: dict[str, str] | None,
) -> Report:
    """Read `path` once: sha256, line count, spec check per line, dedup, leakage, quarantine."""
    rep = Report(level=level, spec=spec)
    sha = hashlib.sha256()
    checker = LineChecker(rep, spec, level, max_errors, quarantine, LineIndex(path, max_line_bytes))
    n = 0
    for kind, n0, data in blocks(path, sha, max_line_bytes):
        if kind == "lines":
            checker.block(n0, data)
            n = n0 + len(data)
        elif kind == "long":
            n = n0
            rep.add(
                n,
                f"line is {data / 2**20:.1f} MB; the longest line accepted is"
                f" {max_line_bytes / 2**20:.0f} MB (intake.max_line_mb)",
                max_errors,
                "intake.line_length",
            )
        else:
            n = n0
            checker.line(n, data, False)
    rep.example_count, rep.duplicates_dropped = checker.examples, len(rep.dup_lines)
    return _finish(rep, sha, path, n)


def _finish(rep: Report, sha: Any, path: Path, n: int) -> Report:
    rep.sha256 = sha.hexdigest()
    rep.line_count = n
    rep.size_bytes = path.stat().st_size
    if rep.ok and rep.example_count == 0:
        rep.add(0, "no examples: the file holds only blank lines", 1, "intake.encoding")
    return rep


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def keep_original(path: Path, folder: Path, sha256: str) -> Path:
    """Keep `path`'s exact bytes as `folder/<sha256>.jsonl` before anything rewrites it.

    A hard link costs no copy and survives the rewrite (which replaces the name, not the inode);
    a folder on another file system gets a real copy. The same content is kept once."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{sha256}.jsonl"
    if dest.exists():
        return dest
    tmp = folder / f".{sha256}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dest)
    return dest


def rewrite_without(path: Path, drop: list[int]) -> str:
    """Rewrite `path` without the given 1-based lines, atomically; returns the new sha256.

    The temp file sits beside the original so the final rename never crosses file systems.
    """
    drop_set = set(drop)
    tmp = path.with_name(f".{path.name}.dedup.tmp")
    sha = hashlib.sha256()
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for n, raw in enumerate(src, 1):
            if n in drop_set:
                continue
            dst.write(raw)
            sha.update(raw)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)
    return sha.hexdigest()
