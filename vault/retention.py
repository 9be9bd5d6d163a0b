"""Checkpoint retention: which local checkpoint folders stay, and deleting the rest safely.

The policy keeps, in models/:
  - the last `keep_last` checkpoints (by step), which is where a resume starts;
  - every checkpoint an alias names (the champion, user aliases);
  - on a thinning schedule by age, the newest checkpoint of each bucket: one per clock hour for the
    last day, one per day for the last week, one per week beyond (`Tier`s; buckets are aligned to the
    epoch, so an hour nests in its day and a day in its week, and the checkpoint kept for an hour is
    the one later kept for its day: thinning never needs one it already deleted).
  - every checkpoint another live asset needs (`vault.deps`: the base of an adapter checkpoint
    that stays, here or in another zone), whatever `force` says.
Everything else is dropped. A dropped checkpoint leaves the disk, but its ledger row stays (marked
deleted), so the whole history stays browsable.

A checkpoint whose local folder is the last verified copy anywhere (no other zone holds it) is deleted
only with `force`; without it, it is kept and reported. `plan` never changes anything (the dry run);
`apply` deletes: ledger row marked deleted and local location dropped in one transaction, then the
folder renamed to `.trash-*` and removed, so a crash midway leaves nothing half-listed
(`Ledger.reconcile` restores a row whose folder is still there).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault import ids
from vault.catalog import LOCAL, _rel
from vault.errors import AliasError
from vault.identity import list_files
from vault.ledger import SIDECAR, created_ts, read_sidecar

if TYPE_CHECKING:
    from sentinels.config import RealmConfig
    from vault.catalog import Catalog
    from vault.ledger import Ledger

log = logging.getLogger("realm.vault.retention")

HOUR, DAY, WEEK = 3600.0, 86400.0, 7 * 86400.0


@dataclass(frozen=True)
class Tier:
    """Keep the newest checkpoint per `every_s` bucket among those younger than `until_s` (None: any
    age); a checkpoint falls in the first tier whose `until_s` it is under."""

    until_s: float | None
    every_s: float


DEFAULT_TIERS = (Tier(DAY, HOUR), Tier(WEEK, DAY), Tier(None, WEEK))


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 5
    tiers: tuple[Tier, ...] = DEFAULT_TIERS

    @classmethod
    def from_config(cls, config: RealmConfig) -> RetentionPolicy:
        """training.keep_last plus the `vault` section's schedule (hours, days, weekly)."""
        v = getattr(config, "vault", None)
        if v is None:
            return cls(config.training.keep_last)
        tiers = []
        if v.keep_hourly_h:
            tiers.append(Tier(v.keep_hourly_h * HOUR, HOUR))
        if v.keep_daily_d:
            tiers.append(Tier(v.keep_daily_d * DAY, DAY))
        if v.keep_weekly:
            tiers.append(Tier(None, WEEK))
        return cls(config.training.keep_last, tuple(tiers))


@dataclass
class Decision:
    name: str
    step: int
    asset_id: str
    path: Path
    created_ts: float
    size_bytes: int
    keep: bool = False
    reasons: list[str] = field(default_factory=list)  # why it stays (empty when it goes)
    last_copy: bool = False  # no other zone holds a verified copy

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "asset_id": self.asset_id,
            "created_at": self.created_ts,
            "size_bytes": self.size_bytes,
            "keep": self.keep,
            "reasons": self.reasons,
            "last_copy": self.last_copy,
        }


@dataclass
class RetentionPlan:
    decisions: list[Decision]

    @property
    def keep(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def drop(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def bytes_freed(self) -> int:
        return sum(d.size_bytes for d in self.drop)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep": [d.to_dict() for d in self.keep],
            "drop": [d.to_dict() for d in self.drop],
            "bytes_freed": self.bytes_freed,
        }


@dataclass
class RetentionResult:
    deleted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # last copies kept because force was not given
    needed: list[str] = field(default_factory=list)  # kept: a live asset came to need them after plan
    bytes_freed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "refused": self.refused,
            "needed": self.needed,
            "bytes_freed": self.bytes_freed,
        }


def local_checkpoints(models_dir: Path) -> list[tuple[str, int, Path, dict[str, Any]]]:
    """(name, step, folder, sidecar) of every complete checkpoint folder, oldest step first."""
    out = []
    if Path(models_dir).is_dir():
        for p in Path(models_dir).iterdir():
            m = ids.CANONICAL_RE.match(p.name)
            if m and p.is_dir() and (p / SIDECAR).is_file():
                out.append((p.name, int(m.group(1)), p, read_sidecar(p)))
    return sorted(out, key=lambda t: (t[1], t[0]))


def plan(
    ledger: Ledger, catalog: Catalog, models_dir: Path, policy: RetentionPolicy, now: float | None = None
) -> RetentionPlan:
    """What the policy keeps and drops among the local checkpoint folders; changes nothing."""
    now = time.time() if now is None else now
    aliased: dict[str, list[str]] = {}
    for name, a in ledger.aliases().items():
        if not a.get("computed"):
            aliased.setdefault(a["asset_id"], []).append(name)
    decisions = []
    for name, step, path, sidecar in local_checkpoints(models_dir):
        ts = created_ts({"created_at": sidecar.get("timestamp")}) or path.stat().st_mtime
        size = sum(p.stat().st_size for _, p in list_files(path))
        decisions.append(Decision(name, step, ids.checkpoint_id(step), path, ts, size))
    for d in decisions[-policy.keep_last :] if policy.keep_last > 0 else []:
        d.reasons.append(f"last {policy.keep_last}")
    for d in decisions:
        for alias in aliased.get(d.asset_id, []):
            d.reasons.append(f"alias {alias}")
    # Thinning: the newest checkpoint of each (tier, bucket); decisions are in step order.
    newest: dict[tuple[int, int], Decision] = {}
    for d in decisions:
        age = max(0.0, now - d.created_ts)
        for i, tier in enumerate(policy.tiers):
            if tier.until_s is None or age < tier.until_s:
                key = (i, int(d.created_ts // tier.every_s))
                if key not in newest or d.created_ts >= newest[key].created_ts:
                    newest[key] = d
                break
    for (i, _), d in newest.items():
        d.reasons.append(f"1 per {_span(policy.tiers[i].every_s)}")
    _keep_needed(catalog, decisions)
    for d in decisions:
        d.keep = bool(d.reasons)
        if not d.keep:
            d.last_copy = _is_last_copy(catalog, d)
    return RetentionPlan(decisions)


def _keep_needed(catalog: Catalog, decisions: list[Decision]) -> None:
    """Keep every checkpoint that an asset which stays needs (an adapter's base checkpoint).

    An asset stays when it is not dropped here, or when another zone also holds it; repeated until
    nothing changes, so a chain (an adapter on a checkpoint that needs another) is kept whole."""
    from vault import deps

    conn = catalog.store.connect()
    dropping = {d.asset_id for d in decisions if not d.reasons}
    changed = True
    while changed:
        changed = False
        for d in decisions:
            if d.asset_id not in dropping:
                continue
            users = deps.needed_by(conn, d.asset_id)
            staying = [u["asset_id"] for u in users if u["asset_id"] not in dropping or u["zones"] != [LOCAL]]
            if staying:
                d.reasons.append(f"needed by {', '.join(staying)}")
                dropping.discard(d.asset_id)
                changed = True


def _span(seconds: float) -> str:
    for unit, s in (("week", WEEK), ("day", DAY), ("hour", HOUR)):
        if seconds % s == 0:
            n = int(seconds // s)
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds:g} s"


def _is_last_copy(catalog: Catalog, d: Decision) -> bool:
    others = catalog.store.scalar(
        "SELECT count(*) FROM locations WHERE asset_id = ? AND zone != ? AND status = 'verified'",
        (d.asset_id, LOCAL),
    )
    return not others


def apply(
    plan_: RetentionPlan,
    ledger: Ledger,
    catalog: Catalog,
    *,
    force: bool = False,
    between: Callable[[str], None] | None = None,
) -> RetentionResult:
    """Delete what the plan drops. Last copies are refused unless `force`; a checkpoint a live asset
    needs never goes, force or not (one the plan dropped while its dependant was dropped too waits
    until that dependant has gone). `between(name)` runs after the folder is renamed to .trash- and
    before it is removed (the crash tests hook in there)."""
    from vault.deps import DependencyError

    res = RetentionResult()
    todo = []
    for d in plan_.drop:
        if d.last_copy and not force:
            res.refused.append(d.name)
        else:
            todo.append(d)
    while todo:
        waiting = []
        for d in todo:
            try:
                delete_checkpoint(ledger, catalog, d.path, force=True, force_needed=False, between=between)
            except DependencyError:
                waiting.append(d)
                continue
            res.deleted.append(d.name)
            res.bytes_freed += d.size_bytes
            log.info("retention: deleted %s (%.1f MB)", d.name, d.size_bytes / 1e6)
        if len(waiting) == len(todo):  # no progress: what is left is needed by something that stays
            res.needed += [d.name for d in waiting]
            log.warning("retention kept %s: live assets need them", ", ".join(res.needed))
            break
        todo = waiting
    if res.refused:
        log.warning(
            "retention kept %d checkpoints that no other zone holds (push them, or pass force): %s",
            len(res.refused),
            ", ".join(res.refused),
        )
    return res


def delete_checkpoint(
    ledger: Ledger,
    catalog: Catalog,
    folder: Path,
    *,
    force: bool = False,
    force_needed: bool | None = None,
    between: Callable[[str], None] | None = None,
) -> list[str]:
    """Delete one local checkpoint folder: its ledger row is marked deleted and its local location
    dropped (the asset too, when no zone holds it any more) in one transaction, then the folder goes
    to `.trash-*` and is removed. Without force, LastCopyError when it is the last verified copy and
    AliasError when an alias names it; without `force_needed` (default: `force`), DependencyError when
    a live asset needs it. Returns the dependants a forced delete went past."""
    folder = Path(folder)
    step = ids.parse_step(folder.name)
    aid = ids.checkpoint_id(step) if step is not None else None
    locpath = _rel(folder, catalog.home_root)
    if not force and aid is not None:
        names = sorted(n for n, a in ledger.aliases().items() if a["asset_id"] == aid and not a["computed"])
        if names:
            raise AliasError(f"{aid} is named by alias {', '.join(names)}; move the alias first or use force")
    overridden: list[str] = []
    with catalog.store.tx() as conn:
        held_here = (
            aid is not None
            and conn.execute(
                "SELECT 1 FROM locations WHERE asset_id = ? AND zone = ? AND path = ?", (aid, LOCAL, locpath)
            ).fetchone()
        )
        if held_here:
            overridden = catalog.remove_location(
                aid, LOCAL, force=force, force_needed=force_needed, conn=conn
            )
            if not conn.execute("SELECT 1 FROM locations WHERE asset_id = ?", (aid,)).fetchone():
                conn.execute("DELETE FROM assets WHERE id = ?", (aid,))
        ledger.mark_deleted(folder.name, conn)
    trash = folder.parent / f".trash-{folder.name}"
    os.replace(folder, trash)
    if between is not None:
        between(folder.name)
    shutil.rmtree(trash, ignore_errors=True)
    return overridden


def enforce(
    ledger: Ledger,
    catalog: Catalog,
    models_dir: Path,
    policy: RetentionPolicy,
    *,
    force: bool = False,
    between: Callable[[str], None] | None = None,
) -> RetentionResult:
    """Plan and apply in one call (what the trainer runs after each checkpoint)."""
    return apply(plan(ledger, catalog, models_dir, policy), ledger, catalog, force=force, between=between)
