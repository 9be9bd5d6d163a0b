"""Skill cards: metadata from configs/skills/*.yaml, progress from the guild's skills and evals tables.

The guild owns the YAML files and the tables; the Tavern only reads them. A skill listed in the
config but without a YAML file still gets a card (name = its id, unknown max level), so the page
works before the guild's files land.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from sentinels.config import REPO_ROOT
from vault.store import Store

SKILLS_DIR = REPO_ROOT / "configs" / "skills"
STATIC_ICONS = Path(__file__).parent / "static" / "svg"


def skill_meta(skills_dir: Path = SKILLS_DIR) -> dict[str, dict[str, Any]]:
    metas: dict[str, dict[str, Any]] = {}
    for path in sorted(skills_dir.glob("*.yaml")):
        if path.name.startswith("_"):
            continue  # _template.yaml and friends
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        if isinstance(data, dict):
            sid = str(data.get("id") or path.stem).lower()
            metas[sid] = data
    return metas


def _card(sid: str, meta: dict[str, Any], row: dict | None, evals: list[dict], guild_cfg: Any) -> dict:
    mastered = int(row["mastered_level"]) if row else 0
    max_level = meta.get("max_level")
    working = mastered + 1 if max_level is None or mastered < int(max_level) else mastered
    at_level = [e for e in evals if e["level"] == working][-guild_cfg.level_up_window :]
    icon_svg = STATIC_ICONS / f"skill-{sid}.svg"
    return {
        "id": sid,
        "name": meta.get("name") or sid.upper(),
        "short": meta.get("short") or sid.upper(),
        "icon": meta.get("icon"),
        "icon_url": f"/static/svg/skill-{sid}.svg" if icon_svg.exists() else "/static/svg/skill-generic.svg",
        "color": meta.get("color"),
        "description": meta.get("description"),
        "level": mastered,
        "max_level": max_level,
        "working_level": working,
        "xp": int(row["xp"]) if row else 0,
        "threshold": guild_cfg.level_up_threshold,
        "window": guild_cfg.level_up_window,
        "recent": [
            {"accuracy": e["accuracy"], "step": e["step"], "level": e["level"], "id": e["id"]}
            for e in at_level
        ],
        "sparkline": [e["accuracy"] for e in evals[-40:]],
        "evals": len(evals),
        "url": f"/guild/{sid}",
    }


def skill_cards(store: Store, guild_cfg: Any, skills_dir: Path = SKILLS_DIR) -> list[dict[str, Any]]:
    metas = skill_meta(skills_dir)
    ids = list(dict.fromkeys([*guild_cfg.skills, *metas]))
    rows = {r["id"]: r for r in store.query("SELECT * FROM skills")}
    cards = []
    for sid in ids:
        evals = store.query(
            "SELECT id, ts, step, level, n, correct, accuracy FROM evals WHERE skill = ? ORDER BY id", (sid,)
        )
        cards.append(_card(sid, metas.get(sid, {}), rows.get(sid), evals, guild_cfg))
    return cards


def skill_evals(store: Store, skill: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT * FROM evals WHERE skill = ? ORDER BY id DESC LIMIT ?", (skill.lower(), int(limit))
    )
    for r in rows:
        try:
            r["items"] = orjson.loads(r["items"] or "[]")
        except orjson.JSONDecodeError:
            r["items"] = []
    return rows
