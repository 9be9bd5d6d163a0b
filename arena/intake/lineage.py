"""Lineage: what intake records about where each quest came from and who refused what.

Intake writes it: every quest row carries a `lineage` JSON (sha256, size, lines, spec, original name,
time, the sidecar's generator / name / version / license / source_url / split, and the validator that
refused the file or the validators it passed). This module owns the validators' names and versions.
The read side (refusals per validator, outcomes per generator and per source, top reasons) is the
watchtower's: `watchtower.lineage`, behind `realm lineage` and the Tavern's GET /api/lineage.
"""

from __future__ import annotations

from arena.intake.specs import SPECS

# 2: chat role order (system first, a user turn before any assistant turn) and typed sidecars.
VALIDATOR_VERSION = 2
# Every validator that can refuse a file, with its version (bumped when its rules change).
VALIDATORS: dict[str, int] = {
    name: VALIDATOR_VERSION
    for name in (
        "intake.name",
        "intake.symlink",
        "intake.filetype",
        "intake.extension",
        "intake.size",
        "intake.sidecar",
        "intake.encoding",
        "intake.format",
        "intake.json",
        "intake.line_length",
        "intake.spec",
        *(f"spec.{s}" for s in SPECS),
        "content.quarantine",
        "content.leakage",
        "dedup.file",
        "intake.internal",
    )
}
