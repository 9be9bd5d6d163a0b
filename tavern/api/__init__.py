"""The /api blueprint: curl-able JSON for everything the pages show and do.

Reads: GET /health, /api/state, /api/events, /api/metrics, /api/quests, /api/skills,
/api/skills/ID/evals, /api/config, /api/compare, /api/lineage, /api/champion, /api/vault. Writes (token rule in tavern/auth.py): POST /api/quests
(upload, 201 + Location), POST /api/quests/ID/{retry,priority,cancel}, POST /api/control,
PUT /api/config. Routes live in small modules by concern; they share this one blueprint.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

api = Blueprint("api", __name__)


def realm() -> Any:
    return current_app.config["REALM"]


from tavern.api import champion, game, quests, vault  # noqa: E402,F401  (route modules register on `api`)
