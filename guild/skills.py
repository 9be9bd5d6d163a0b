"""Skill definitions: YAML files in configs/skills/ are the single source of truth.

A skill file names its generator (registered in `guild.generators`) or the URL of a remote skill
server. Files starting with "_" (the template) are never loaded. The file is checked against
`SkillFile` by `sentinels.typed` (the same typed mechanism as the realm config), so a bad key is
refused with the file and the dotted key; `SkillSpec` is the flattened form the guild uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from sentinels.config import REPO_ROOT
from sentinels.typed import TypedError, convert

SKILLS_DIR = REPO_ROOT / "configs" / "skills"


class SkillError(ValueError):
    """A skill that cannot be loaded or used; the message says which file or key and what to do."""


@dataclass(frozen=True)
class SkillSpec:
    id: str
    """Short id used everywhere (file name, events, eval-set folder)."""
    name: str
    """Display name."""
    icon: str
    """An emoji for the Tavern."""
    color: str
    """A CSS colour for the Tavern."""
    max_level: int
    """Highest level; levels run 1..max_level."""
    generator: str
    """Name of the registered generator (local skills) or of the remote generator (informational)."""
    generator_version: int
    """Eval sets are versioned by it: bump it whenever the problems change."""
    eval_size: int | None = None
    """Problems per level in the eval set; None means guild.eval_size."""
    pass_threshold: float | None = None
    """Per-skill level-up threshold; None means guild.level_up_threshold."""
    api_url: str | None = None
    """Base URL of a remote skill server; None means the local generator."""
    levels: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """Level table (titles and parameters) from the YAML."""
    path: str = ""
    """The YAML file it came from."""
    needs_pretrained: bool = False
    """Only a pretrained hero (hero.base_model or hero.preset) can learn it; see `ready_for`."""
    needs_why: str = ""
    """Why, in the skill file's words: what the Tavern shows while the skill waits."""
    needs_skills: tuple[tuple[str, int], ...] = ()
    """(skill, level) pairs: it is scheduled once each of those active skills has mastered that level."""
    stall_evals: int | None = None
    """Evals at a level, none above 0, before the planner calls it stalled; None: guild.planner's."""

    @property
    def remote(self) -> bool:
        return bool(self.api_url)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "icon": self.icon,
            "color": self.color,
            "max_level": self.max_level,
            "generator": {"name": self.generator, "version": self.generator_version},
            "eval": {"size": self.eval_size, "pass_threshold": self.pass_threshold},
            "api": {"url": self.api_url},
        }


# The skill file's schema (configs/skills/_template.yaml), checked by the realm's one typed mechanism.
Positive = Annotated[int, msgspec.Meta(ge=1)]
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://", description="an http(s) URL")]


class _Part(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every mapping in a skill file: a key it does not declare is an error."""


class GeneratorPart(_Part):
    version: int
    """Eval sets are versioned by it: bump it whenever the problems change."""
    name: str | None = None
    """Registered generator name; None means the skill's id."""


class EvalPart(_Part):
    size: Positive | None = None
    """Problems per level in the eval set; None means guild.eval_size."""
    stall_evals: Positive | None = None
    """Evals at a level with none above 0 before the planner backs off; None means its default."""
    pass_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    """Per-skill level-up threshold; None means guild.level_up_threshold."""


class ApiPart(_Part):
    url: HttpUrl | None = None
    """Base URL of a remote skill server; None means the local generator."""


class NeedsPart(_Part):
    pretrained_hero: bool = False
    """True: a hero built from nothing (DIO) cannot learn this skill; it waits for a pretrained one."""
    skills: dict[str, Positive] = msgspec.field(default_factory=dict)
    """Skill id -> level: the skill unlocks once each of these (when active) has mastered that level."""
    why: str = ""
    """The measured reason, shown to the player while the skill waits."""


class SkillFile(_Part):
    """A skill YAML file as written."""

    id: str
    name: str
    max_level: Positive
    generator: GeneratorPart
    icon: str = ""
    color: str = ""
    eval: EvalPart = msgspec.field(default_factory=EvalPart)
    api: ApiPart = msgspec.field(default_factory=ApiPart)
    levels: tuple[dict[str, Any], ...] = ()
    needs: NeedsPart = msgspec.field(default_factory=NeedsPart)


class SkillFileError(TypedError, SkillError):
    """A skill file whose key does not fit the schema: names the file and the key."""

    def __init__(self, source: str, key: str, problem: str):
        super().__init__(source, key, f"{problem}; see configs/skills/_template.yaml")


def parse_skill(data: Any, path: Path) -> SkillSpec:
    f = convert(data, SkillFile, source=str(path), error=SkillFileError)
    return SkillSpec(
        id=f.id,
        name=f.name,
        icon=f.icon,
        color=f.color,
        max_level=f.max_level,
        generator=f.generator.name or f.id,
        generator_version=f.generator.version,
        eval_size=f.eval.size,
        pass_threshold=f.eval.pass_threshold,
        api_url=f.api.url.rstrip("/") if f.api.url else None,
        levels=f.levels,
        path=str(path),
        needs_pretrained=f.needs.pretrained_hero,
        needs_why=f.needs.why,
        needs_skills=tuple(f.needs.skills.items()),
        stall_evals=f.eval.stall_evals,
    )


def hero_is_pretrained(hero_cfg) -> bool:
    """A hero that starts from a pretrained model folder (hero.base_model or hero.preset), not from a
    description (DIO, random weights)."""
    return bool(hero_cfg.base_model or hero_cfg.preset)


def ready_for(spec: SkillSpec, guild_cfg, hero_cfg, mastered: Mapping[str, int] | None = None) -> str | None:
    """None when the guild schedules this skill now; else why it waits.

    The one rule for "is this skill scheduled": a skill that needs a pretrained hero waits while the
    hero is built from nothing; a skill that needs other skills' levels (`needs.skills`, a skill
    tree) waits until each of those that is active has mastered its level (`mastered`: skill id ->
    mastered level). guild.train_unready schedules every active skill at once. The configs are
    sentinels.config's GuildConfig and HeroConfig."""
    if guild_cfg.train_unready:
        return None
    why = f" {spec.needs_why}" if spec.needs_why else ""
    if spec.needs_pretrained and not hero_is_pretrained(hero_cfg):
        return (
            f"waiting for a pretrained hero:{why or ' this skill needs one.'} "
            "Set hero.base_model (or hero.preset) to a pretrained model, or guild.train_unready: true."
        ).strip()
    mastered = mastered or {}
    missing = [
        f"{sid.upper()} level {lvl} (now {mastered.get(sid, 0)})"
        for sid, lvl in spec.needs_skills
        if sid in guild_cfg.skills and sid != spec.id and mastered.get(sid, 0) < lvl
    ]
    if missing:
        return f"unlocks at {' and '.join(missing)}.{why}".strip()
    return None


def skill_path(skill_id: str, skills_dir: Path | None = None) -> Path:
    return (skills_dir or SKILLS_DIR) / f"{skill_id}.yaml"


def load_skill(skill_id: str, skills_dir: Path | None = None) -> SkillSpec:
    path = skill_path(skill_id, skills_dir)
    if not path.is_file():
        known = ", ".join(list_skills(skills_dir)) or "none"
        raise SkillError(f"unknown skill {skill_id!r}: no {path}; known skills: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SkillError(f"{path}: not valid YAML: {exc}") from exc
    spec = parse_skill(data, path)
    if spec.id != skill_id:
        raise SkillError(f"{path}: key 'id' is {spec.id!r} but the file is named {skill_id}.yaml")
    return spec


def list_skills(skills_dir: Path | None = None) -> list[str]:
    d = skills_dir or SKILLS_DIR
    return sorted(p.stem for p in d.glob("*.yaml") if not p.name.startswith("_"))
