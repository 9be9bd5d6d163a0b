"""A terminal progress line for long vault work (scan, push, pull, verify): bytes, rate, ETA.

`progress_line(label, enabled)` returns a callback `(done_bytes, total_bytes)`, or None when disabled
(not a terminal, or `--json`, where a command prints one JSON result and nothing else). The line goes
to stderr, redrawn at most ten times a second; `finish()` ends it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class ProgressLine:
    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.t0 = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        rate = done / max(now - self.t0, 1e-6)
        pct = f"{100 * done / total:5.1f}%" if total else "  -  "
        eta = f"ETA {max(0.0, (total - done) / rate):.0f}s" if rate > 0 and total else ""
        line = f"{self.label} {pct} {human_bytes(done)} / {human_bytes(total)}  {human_bytes(rate)}/s  {eta}"
        self.stream.write("\r" + line.ljust(79))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress_line(label: str, enabled: bool = True) -> ProgressLine | None:
    """A progress callback on a terminal; None when disabled or stderr is not a terminal."""
    return ProgressLine(label) if enabled and sys.stderr.isatty() else None


ProgressFn = Callable[[int, int], None]
