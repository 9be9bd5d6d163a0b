"""Lineage: what the realm knows about where each quest came from and who refused what.

Every quest row carries a `lineage` JSON (sha256, size, lines, spec, original name, time, and the
sidecar's generator / name / version / license / source_url / split). `lineage_stats` answers the
questions /api/lineage will ask without another table: refusals per validator and outcomes per
generator, straight from the quests table.
"""

from __future__ import annotations

from typing import Any

from arena.intake.specs import SPECS
from vault.store import Store

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


def lineage_stats(store: Store) -> dict[str, Any]:
    """Refusals per validator, quest outcomes per generator, and the validator versions."""
    by_validator = {
        r["v"]: r["n"]
        for r in store.query(
            "SELECT json_extract(lineage, '$.validator') AS v, count(*) AS n FROM quests"
            " WHERE status = 'failed' AND v IS NOT NULL GROUP BY v ORDER BY n DESC"
        )
    }
    by_generator: dict[str, dict[str, int]] = {}
    for r in store.query(
        "SELECT coalesce(json_extract(lineage, '$.generator.id'), '(none)') AS g, status, count(*) AS n"
        " FROM quests GROUP BY g, status"
    ):
        by_generator.setdefault(str(r["g"]), {})[r["status"]] = r["n"]
    return {"rejections_by_validator": by_validator, "by_generator": by_generator, "validators": VALIDATORS}
