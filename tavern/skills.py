"""Skill cards shaped for the Tavern's pages: the watchtower's read model plus icon URLs and links.

The cards themselves (metadata, levels, recent evals) are the watchtower's (`watchtower.skills`),
which reads the guild only through the guild's functions; this module adds only what a page needs
(an icon URL that exists under static/, the skill page's link). Runs no SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentinels.config import GuildConfig
from vault.store import Store
from watchtower import skills as read_model

STATIC_ICONS = Path(__file__).parent / "static" / "svg"


def decorate(card: dict[str, Any]) -> dict[str, Any]:
    """A watchtower card plus the page's icon URL (a generic icon when the skill has none) and link."""
    sid = card["id"]
    icon = STATIC_ICONS / f"skill-{sid}.svg"
    return {
        **card,
        "icon_url": f"/static/svg/skill-{sid}.svg" if icon.exists() else "/static/svg/skill-generic.svg",
        "url": f"/guild/{sid}",
    }


def skill_cards(store: Store, guild_cfg: GuildConfig, hero_cfg=None) -> list[dict[str, Any]]:
    return [decorate(c) for c in read_model.skill_cards(store, guild_cfg, hero_cfg)]
