"""Quest intake: everything between a file landing in inbox/ and a quest row in the queue.

Owns the inbox watcher (`watcher.InboxWatcher`), the specs (`specs`, deny by default), the content
checks at QUICK / STANDARD / DEEP with eval quarantine (`checks`), names and sidecars (`sidecar`),
provenance and refusal statistics (`lineage`), what waits in the inbox and when a file may be
claimed (`inbox`), eval quarantine's normal form (`quarantine`), and the one entry point every caller uses
(`service.Intake.process_file`, `.scan`, `.accept_upload`). Files move only through
`arena.queue.QuestQueue` (enqueue / reject), so a file ends queued or in queue/failed/ with its
FILE.error.json, never deleted. Must not train, and must not touch queue folders directly.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562), so the rooms that need only a leaf module (the guild's
# `quarantine`, the trainer's `specs`) do not pay for the service's database stack (~0.1 s).
_EXPORTS = {
    "SPECS": "arena.intake.specs",
    "VALIDATORS": "arena.intake.lineage",
    "Intake": "arena.intake.service",
    "UploadError": "arena.intake.service",
    "UploadTooLarge": "arena.intake.service",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'arena.intake' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
