"""The game's snapshot for GET /api/state: the watchtower's snapshot, shaped for the page.

The page renders it, then applies events newer than `last_event_id`. The read model (hero card,
battle, quest counts, pending commands, skills, achievements) is the watchtower's
(`watchtower.status.snapshot`); the Tavern adds only what is its own: the skill cards' icon URLs and
links (`tavern.skills.decorate`) and the caller's auth status. The Tavern runs no SQL of its own
(tests/test_room_sql.py checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tavern.skills import decorate
from watchtower import status

# Re-exported: the Tavern's callers and older imports (`from tavern.game import hero_card`).
from watchtower.status import achievements, hero_card, pending_commands, quest_counts  # noqa: F401

if TYPE_CHECKING:
    from sentinels.realm import Realm


def snapshot(realm: Realm, auth: dict[str, Any]) -> dict[str, Any]:
    snap = status.snapshot(realm)
    snap["skills"] = [decorate(c) for c in snap["skills"]]
    snap["auth"] = auth
    return snap
