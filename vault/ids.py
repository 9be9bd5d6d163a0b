"""Asset ids: the one place that knows their forms and parses references.

Ids are `{kind}_{slug}`: `checkpoint_{step}`, `model_{slug}` (e.g. model_qwen3_0.6b), `data_{slug}`,
`evalset_{skill}_v{version}_l{level}`, `config_{slug}`. A reference is anything a user may type for an
asset: an id, a step (`1200`, `step-1200`, `checkpoint-1200`), a canonical checkpoint name
(`checkpoint-1200-20261129-1530`), `latest`, or an alias. These functions are pure (no database);
`vault.catalog.resolve_id` turns a reference into an id with the database's help.
"""

from __future__ import annotations

import re

KINDS = ("checkpoint", "model", "data", "evalset", "config")
LATEST = "latest"

CANONICAL_RE = re.compile(r"^checkpoint-(\d+)-(\d{8})-(\d{4})$")
# Every way of naming a checkpoint by its step alone: 1200, step-1200, step_1200, checkpoint_1200,
# checkpoint-1200 (the seed's legacy folder name).
_STEP_RE = re.compile(r"^(?:(?:step|checkpoint)[-_]?)?(\d+)$")
ALIAS_RE = re.compile(r"^[a-z0-9._-]{1,64}$")
_KIND_PREFIX_RE = re.compile(r"^(?:checkpoint|model|data|evalset|config|step)(?:[-_]|$)")

VALID_FORMS = (
    "checkpoint_<step> (checkpoint_1200), a step (1200, step-1200), a canonical checkpoint name "
    "(checkpoint-1200-20261129-1530), latest, an alias (champion), model_<name>, data_<name>, "
    "evalset_<skill>_v<version>_l<level>, config_<name>"
)


def checkpoint_id(step: int) -> str:
    return f"checkpoint_{int(step)}"


def parse_step(ref: str | int) -> int | None:
    """The step a reference names by step alone or by canonical name; None for any other form."""
    if isinstance(ref, int):
        return ref if ref >= 0 else None
    s = str(ref).strip().lower()
    m = _STEP_RE.match(s) or CANONICAL_RE.match(s)
    return int(m.group(1)) if m else None


def slug(text: str) -> str:
    """Lowercase, runs of anything but [a-z0-9.] become one '_' (Qwen3-0.6B -> qwen3_0.6b)."""
    return re.sub(r"[^a-z0-9.]+", "_", text.lower()).strip("_.") or "unnamed"


def kind_of(asset_id: str) -> str | None:
    head = asset_id.split("_", 1)[0]
    return head if head in KINDS and "_" in asset_id else None


def alias_problem(name: str) -> str | None:
    """Why `name` cannot be an alias, or None when it can. Aliases must never shadow another form."""
    if name == LATEST:
        return "'latest' is computed (the newest live checkpoint) and cannot be set"
    if not ALIAS_RE.match(name):
        return "alias names are 1-64 characters of a-z, 0-9, '.', '_' and '-'"
    if parse_step(name) is not None:
        return f"{name!r} reads as a step; an alias may not shadow a checkpoint"
    if _KIND_PREFIX_RE.match(name):
        return f"{name!r} starts like an asset id ({', '.join(KINDS)}, step); an alias may not shadow one"
    return None
