"""Skill cards: each skill's metadata and progress, as every reader shows them.

The guild owns the skill files and its tables (`skills`, `evals`); this read model takes them only
through the guild's functions (`guild.guild.skill_catalog`, which honours `guild.skills_dir`, and the
read functions of `guild.progression`, which hold the training-level and threshold rules). A skill
listed in the config whose file is missing or invalid still gets a card (name = its id, unknown max
level), so readers work while the guild's files are being fixed. Presentation (icon URLs, page
links) is the Tavern's (`tavern/skills.py`). Must not write: no `progression.skill_row`, which
creates missing rows.
"""

from __future__ import annotations

from typing import Any

from guild import progression
from guild.guild import skill_catalog
from guild.skills import SkillSpec, ready_for
from sentinels.config import GuildConfig, HeroConfig
from vault.store import Store


def _card(
    sid: str,
    spec: SkillSpec | None,
    row: dict | None,
    evals: list[dict],
    guild_cfg: GuildConfig,
    hero_cfg: HeroConfig,
    levels: dict[str, int],
) -> dict[str, Any]:
    mastered = int(row["mastered_level"]) if row else 0
    max_level = spec.max_level if spec else None
    working = progression.training_level(mastered, max_level)
    at_level = [e for e in evals if e["level"] == working][-guild_cfg.level_up_window :]
    return {
        "id": sid,
        "name": spec.name if spec else sid.upper(),
        "short": sid.upper(),
        "icon": spec.icon if spec else None,
        "color": spec.color if spec else None,
        # Skill files have no description field; pages fall back to the name.
        "description": None,
        "level": mastered,
        "max_level": max_level,
        "working_level": working,
        "xp": int(row["xp"]) if row else 0,
        "threshold": progression.level_up_threshold(
            spec.pass_threshold if spec else None, guild_cfg.level_up_threshold
        ),
        "window": guild_cfg.level_up_window,
        "recent": [
            {"accuracy": e["accuracy"], "step": e["step"], "level": e["level"], "id": e["id"]}
            for e in at_level
        ],
        "sparkline": [e["accuracy"] for e in evals[-40:]],
        "evals": len(evals),
        "active": sid in guild_cfg.skills,
        # Why the guild lists an active skill but neither trains nor evaluates it (None: it does).
        "waiting": ready_for(spec, guild_cfg, hero_cfg, levels) if spec and sid in guild_cfg.skills else None,
    }


def skill_cards(
    store: Store, guild_cfg: GuildConfig, hero_cfg: HeroConfig | None = None
) -> list[dict[str, Any]]:
    """One card per skill the guild can show: the active ones first, then any other skill file."""
    levels = progression.skill_levels(store)
    hero_cfg = hero_cfg or HeroConfig()
    mastered = {sid: int(v["mastered_level"]) for sid, v in levels.items()}
    return [
        _card(sid, spec, levels.get(sid), progression.eval_history(store, sid), guild_cfg, hero_cfg, mastered)
        for sid, spec in skill_catalog(guild_cfg).items()
    ]


def skill_evals(store: Store, skill: str, limit: int = 200) -> list[dict[str, Any]]:
    """The newest evals of a skill, newest first, each with its scored items."""
    return progression.recent_evals(store, skill.lower(), limit)
