"""Static eval sets: generated once per skill, level and generator version into the realm home.

Layout (the contract with intake, which quarantines every prompt found here):
    <home>/evalsets/<skill>/v<generator_version>/level-<NN>.jsonl
one JSON object per line: {"skill", "level", "prompt", "expected", "key"}. Each set comes from the
fixed EVAL_SEED, so every realm gets byte-identical files; a new generator version gets a new folder
and the old one stays (old evals remain readable and quarantined).

Imported versions (`realm skill import-evals SKILL SOURCE`, the original system's eval files) sit
beside them as `<home>/evalsets/<skill>/import-<name>/level-<NN>.jsonl`, rows with the same fields
plus `metadata`. Intake quarantines every `*.jsonl` under `evalsets/`, and `quarantine_set` reads
every version folder, so imported prompts are held out of training like generated ones. A version
is selected per skill in `<home>/evalsets/<skill>/selected.json` (`{"version": "import-x"}`): the
guild's evals then read its levels, and the generated version for levels it lacks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from guild.client import open_skill
from guild.generators import norm_prompt
from guild.skills import SkillSpec, load_skill
from sentinels.config import REPO_ROOT, GuildConfig

log = logging.getLogger(__name__)

IMPORT_PREFIX = "import-"
SELECTED = "selected.json"


def skills_dir(cfg: GuildConfig) -> Path:
    d = Path(cfg.skills_dir)
    return d if d.is_absolute() else REPO_ROOT / d


def eval_size(spec: SkillSpec, cfg: GuildConfig) -> int:
    return spec.eval_size or cfg.eval_size


def eval_path(home_root: Path, spec: SkillSpec, level: int) -> Path:
    return Path(home_root) / "evalsets" / spec.id / f"v{spec.generator_version}" / f"level-{level:02d}.jsonl"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # readers (intake) never see half a file


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ensure_level(home_root: Path, spec: SkillSpec, level: int, n: int, client=None):
    """Write one level's file when missing or smaller than n; returns the client it opened (or None)."""
    path = eval_path(home_root, spec, level)
    if path.is_file() and len(_read(path)) >= n:
        return client
    client = client or open_skill(spec)
    rows = [
        {
            "skill": spec.id,
            "level": level,
            "prompt": it["prompt"],
            "expected": it["expected"],
            "key": it.get("key"),
        }
        for it in client.eval_items(level, n)
    ]
    # Same seed, so a larger set starts with the smaller one's items: earlier evals stay comparable.
    _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    log.info("wrote eval set %s (%d items)", path, len(rows))
    return client


def ensure_skill_eval_sets(home_root: Path, spec: SkillSpec, n: int) -> list[Path]:
    """Write missing (or too small) level files for one skill; existing full files are kept."""
    client = None
    for level in range(1, spec.max_level + 1):
        client = _ensure_level(Path(home_root), spec, level, n, client)
    return [eval_path(home_root, spec, level) for level in range(1, spec.max_level + 1)]


def ensure_eval_sets(home_root: Path, cfg: GuildConfig) -> list[Path]:
    """Every active skill's eval sets exist in the home; idempotent. Returns all level files."""
    out: list[Path] = []
    for skill_id in cfg.skills:
        spec = load_skill(skill_id, skills_dir(cfg))
        out += ensure_skill_eval_sets(Path(home_root), spec, eval_size(spec, cfg))
    return out


def load_eval_set(
    home_root: Path, skill_id: str, level: int, cfg: GuildConfig | None = None
) -> list[dict[str, Any]]:
    """The eval items of one level (current generator version); generated first if missing."""
    cfg = cfg or GuildConfig()
    spec = load_skill(skill_id, skills_dir(cfg))
    if not 1 <= level <= spec.max_level:
        raise ValueError(f"level {level} is outside 1..{spec.max_level} for skill {skill_id!r}")
    chosen = selected_version(home_root, skill_id)
    picked = Path(home_root) / "evalsets" / skill_id / str(chosen) / f"level-{level:02d}.jsonl"
    if chosen and picked.is_file():
        return _read(picked)[: eval_size(spec, cfg)]
    _ensure_level(Path(home_root), spec, level, eval_size(spec, cfg))
    return _read(eval_path(home_root, spec, level))[: eval_size(spec, cfg)]


def quarantine_set(home_root: Path, skill_id: str) -> set[str]:
    """Normalised prompts of every eval item of a skill (all versions): training never emits them.

    Only the exact prompts are held out, the same rule intake's quarantine applies. The problem
    behind an eval item may still appear in training in another phrasing (a difficulty tag, the
    symbol language): BIN L1 has 31 problems in all, and a hero cannot be asked to generalise
    addition from the 26 left after holding five out (measured: it memorised all 26 and scored
    0.2 on the five). So low-level evals test mastery of the level's problems, not transfer to
    unseen ones; from L4 (5-bit operands, thousands of problems) eval items are unseen in practice.
    """
    out: set[str] = set()
    for path in (Path(home_root) / "evalsets" / skill_id).glob("*/level-*.jsonl"):
        for row in _read(path):
            out.add(norm_prompt(row["prompt"]))
    return out


# --- imported versions -------------------------------------------------------------------------------
def import_version_name(name: str | None, content: bytes) -> str:
    """`import-<name>` (slugged), or `import-<sha256 of the files' bytes, 12 hex>` without a name."""
    if name:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        if not slug:
            raise ValueError(f"import name {name!r} has no letters or digits")
        return IMPORT_PREFIX + slug
    return IMPORT_PREFIX + hashlib.sha256(content).hexdigest()[:12]


def write_imported(home_root: Path, skill_id: str, version: str, levels: dict[int, list[dict]]) -> list[Path]:
    """Write one imported version's level files (replacing that version's files, atomically each)."""
    if not version.startswith(IMPORT_PREFIX):
        raise ValueError(f"imported versions are named {IMPORT_PREFIX}*, got {version!r}")
    paths = []
    for level, rows in sorted(levels.items()):
        path = Path(home_root) / "evalsets" / skill_id / version / f"level-{level:02d}.jsonl"
        _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        paths.append(path)
    log.info("imported eval set %s/%s: %d levels", skill_id, version, len(paths))
    return paths


def select_version(home_root: Path, skill_id: str, version: str | None) -> None:
    """Make `version` the one the guild's evals read for `skill_id` (None: back to generated)."""
    path = Path(home_root) / "evalsets" / skill_id / SELECTED
    if version is None:
        path.unlink(missing_ok=True)
        return
    if not (path.parent / version).is_dir():
        raise ValueError(f"no eval-set version {version!r} for skill {skill_id!r}")
    _write_atomic(path, json.dumps({"version": version}) + "\n")


def selected_version(home_root: Path, skill_id: str) -> str | None:
    path = Path(home_root) / "evalsets" / skill_id / SELECTED
    try:
        return json.loads(path.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
