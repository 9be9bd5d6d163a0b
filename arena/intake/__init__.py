"""Quest intake: everything between a file landing in inbox/ and a quest row in the queue.

Owns the inbox watcher (`watcher.InboxWatcher`), the specs (`specs`, deny by default), the content
checks at QUICK / STANDARD / DEEP with eval quarantine (`checks`), names and sidecars (`sidecar`),
provenance and refusal statistics (`lineage`), and the one entry point every caller uses
(`service.Intake.process_file`, `.scan`, `.accept_upload`). Files move only through
`arena.queue.QuestQueue` (enqueue / reject), so a file ends queued or in queue/failed/ with its
FILE.error.json, never deleted. Must not train, and must not touch queue folders directly.
"""

from arena.intake.lineage import VALIDATORS, lineage_stats
from arena.intake.service import Intake, UploadError
from arena.intake.specs import SPECS

__all__ = ["SPECS", "VALIDATORS", "Intake", "UploadError", "lineage_stats"]
