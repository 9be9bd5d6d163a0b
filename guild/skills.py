"""Skill definitions: YAML files in configs/skills/ are the single source of truth.

A skill file names its generator (registered in `guild.generators`) or the URL of a remote skill
server. Files starting with "_" (the template) are never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sentinels.config import REPO_ROOT

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


def _need(data: dict, key: str, kind: type, path: Path) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SkillError(f"{path}: key '{key}' must be {kind.__name__}, got {value!r}; see _template.yaml")
    return value


def _threshold(value: Any, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise SkillError(f"{path}: key 'eval.pass_threshold' must be a number in 0..1 or null, got {value!r}")
    return float(value)


def parse_skill(data: Any, path: Path) -> SkillSpec:
    if not isinstance(data, dict):
        raise SkillError(f"{path}: expected a mapping at the top level; copy configs/skills/_template.yaml")
    gen = data.get("generator") or {}
    ev = data.get("eval") or {}
    api = data.get("api") or {}
    if not isinstance(gen, dict) or not isinstance(ev, dict) or not isinstance(api, dict):
        raise SkillError(f"{path}: 'generator', 'eval' and 'api' must be mappings")
    max_level = _need(data, "max_level", int, path)
    if max_level < 1:
        raise SkillError(f"{path}: key 'max_level' must be >= 1, got {max_level}")
    version = gen.get("version")
    if not isinstance(version, int):
        raise SkillError(f"{path}: key 'generator.version' must be an integer, got {version!r}")
    size = ev.get("size")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise SkillError(f"{path}: key 'eval.size' must be a positive integer or null, got {size!r}")
    url = api.get("url")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise SkillError(f"{path}: key 'api.url' must be an http(s) URL or null, got {url!r}")
    return SkillSpec(
        id=_need(data, "id", str, path),
        name=_need(data, "name", str, path),
        icon=str(data.get("icon", "")),
        color=str(data.get("color", "")),
        max_level=max_level,
        generator=str(gen.get("name") or data["id"]),
        generator_version=version,
        eval_size=size,
        pass_threshold=_threshold(ev.get("pass_threshold"), path),
        api_url=url.rstrip("/") if url else None,
        levels=tuple(data.get("levels") or ()),
        path=str(path),
    )


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
