"""Asset dependencies: which asset needs which (an adapter checkpoint needs its base model).

Owns the `asset_deps` table (vault/schema.py m006); nothing outside `vault/` writes it. It never
deletes an asset or a file: it records dependencies and answers whether a removal may go ahead.

A LoRA or QLoRA checkpoint holds only its adapter, so its `.ledger.json` sidecar names the base model
folder and that folder's tree digest (`hero.base_model`, `hero.base_sha256`). Landing it
(`Ledger.land`) registers the base as a catalog asset (kind `model`, id `model_<name>`: the id a scan
and the Oracle's `dio@base` give the same folder; `checkpoint_<step>` when the base is itself a
checkpoint) and records adapter -> base, in the landing's transaction. A full checkpoint holds every
weight and needs nothing.

A dependant is live while some zone holds it (a location that is not `missing`). Removing a copy that
a live dependant needs is refused without force (`check`), naming the dependants: the home's copy
(the path the adapter's `adapter_config.json` points at) and the last verified copy anywhere. A spare
copy in another zone may go. When a dependant is deleted its rows go with it (ON DELETE CASCADE), so
the base becomes removable again; it is never deleted for that reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.catalog import LOCAL, Candidate, _rel, classify
from vault.errors import LastCopyError, VaultError
from vault.identity import Identity, identify

if TYPE_CHECKING:
    import sqlite3

    from vault.catalog import Catalog

log = logging.getLogger("realm.vault.deps")

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_PROFILES = ("lora", "qlora")
ADAPTER_BASE = "adapter base"


class DependencyError(LastCopyError):
    """Refused: a live asset needs this one (an adapter its base model); force overrides.

    A LastCopyError, so every entry point already maps it (409 in the API, exit 1 in the CLI)."""

    def __init__(self, message: str, dependants: list[str]):
        super().__init__(message)
        self.dependants = dependants


@dataclass(frozen=True)
class BaseLink:
    """What landing a checkpoint records: the asset it needs, and the base folder to (re)register
    in the same transaction when the catalog did not already hold those bytes."""

    needs: str
    reason: str
    candidate: Candidate | None = None
    identity: Identity | None = None


def adapter_base(folder: Path, sidecar: dict[str, Any]) -> tuple[Path, str | None] | None:
    """(base folder, its digest from the sidecar) when the checkpoint is an adapter; else None."""
    hero = sidecar.get("hero")
    if not isinstance(hero, dict) or not hero.get("base_model"):
        return None  # DIO built from its description, or a sidecar from before issue #17
    if not ((Path(folder) / ADAPTER_CONFIG).is_file() or hero.get("profile") in ADAPTER_PROFILES):
        return None  # a full checkpoint holds every weight: it needs no base
    return Path(str(hero["base_model"])).expanduser(), hero.get("base_sha256") or None


def prepare(catalog: Catalog, folder: Path, sidecar: dict[str, Any]) -> BaseLink | None:
    """The dependency a checkpoint folder's sidecar declares, resolved to an asset id.

    Runs before the landing's transaction, since a base the catalog has never seen is hashed here
    (once: a multi-GB folder). A sidecar digest that matches a catalogued asset is trusted without
    reading the folder; a folder already catalogued under its id is re-read only where a file's size
    or mtime changed (`identify`'s fast path)."""
    found = adapter_base(folder, sidecar)
    if found is None:
        return None
    base, sha = found
    if not base.is_absolute():
        base = catalog.home_root / base
    cand = _candidate(base, catalog.home_root) if base.is_dir() else None
    if sha:
        row = catalog.store.one(
            "SELECT id FROM assets WHERE digest = ? ORDER BY id = ? DESC, kind = 'model' DESC, registered_at"
            " LIMIT 1",
            (sha, cand.asset_id if cand else None),
        )
        if row:
            return BaseLink(row["id"], ADAPTER_BASE)
    if cand is None:
        log.warning(
            "%s names base model %s, which is neither on disk nor catalogued: no dependency recorded",
            Path(folder).name,
            base,
        )
        return None
    try:
        ident = identify(base, known=catalog._known(cand.asset_id))
    except OSError as exc:  # a file vanished mid-read: the checkpoint still lands
        log.warning(
            "%s: cannot read base model %s (%s): no dependency recorded", Path(folder).name, base, exc
        )
        return None
    if sha and ident.digest != sha:
        log.warning(
            "%s: base model %s has digest %s now, not the %s it was trained on; recording the folder as it is",
            Path(folder).name,
            base,
            ident.digest[:12],
            sha[:12],
        )
    return BaseLink(cand.asset_id, ADAPTER_BASE, cand, ident)


def _candidate(base: Path, home_root: Path) -> Candidate:
    try:
        return classify(base, home_root)
    except VaultError:  # a folder without config.json: still a model, named by its folder
        return classify(base, home_root, "model")


def write(conn: sqlite3.Connection, catalog: Catalog, asset_id: str, link: BaseLink | None) -> None:
    """Replace what `asset_id` needs by `link` (None: nothing) inside the caller's transaction.

    Replacing, not adding: a step saved again after a resume lands under the same id."""
    conn.execute("DELETE FROM asset_deps WHERE asset_id = ?", (asset_id,))
    if link is None or link.needs == asset_id:
        conn.execute(
            "UPDATE assets SET base_asset = NULL WHERE id = ? AND base_asset IS NOT NULL", (asset_id,)
        )
        return
    if link.candidate is not None and link.identity is not None:
        locpath = _rel(link.candidate.path, catalog.home_root)
        catalog._write(conn, link.candidate, link.identity, LOCAL, locpath)
    conn.execute(
        "INSERT INTO asset_deps (asset_id, needs_asset_id, reason, created_at) VALUES (?,?,?,?)",
        (asset_id, link.needs, link.reason, time.time()),
    )
    # `base_asset` is the asset row's own pointer (shown in every asset's JSON); asset_deps is the index.
    conn.execute("UPDATE assets SET base_asset = ? WHERE id = ?", (link.needs, asset_id))


def link(catalog: Catalog, asset_id: str, folder: Path, sidecar: dict[str, Any]) -> BaseLink | None:
    """`prepare` then `write` in a transaction of its own (repairs: reconcile, scan)."""
    found = prepare(catalog, folder, sidecar)
    with catalog.store.tx() as conn:
        write(conn, catalog, asset_id, found)
    return found


def _held(conn: sqlite3.Connection, column: str, asset_id: str) -> list[dict[str, Any]]:
    """Dependency rows on one side of `asset_id`, each with the zones holding the other end."""
    other = "needs_asset_id" if column == "asset_id" else "asset_id"
    # `column` and `other` are the table's two column names, never user input.
    rows = conn.execute(
        f"SELECT d.{other} AS asset_id, d.reason, d.created_at, (SELECT group_concat(l.zone)"
        f" FROM locations l WHERE l.asset_id = d.{other} AND l.status != 'missing') AS zones"
        f" FROM asset_deps d LEFT JOIN assets a ON a.id = d.{other} WHERE d.{column} = ?"
        f" ORDER BY a.step, d.{other}",
        (asset_id,),
    ).fetchall()
    out = []
    for r in rows:
        zones = sorted(r["zones"].split(",")) if r["zones"] else []
        out.append(
            {
                "asset_id": r["asset_id"],
                "reason": r["reason"],
                "created_at": r["created_at"],
                "live": bool(zones),
                "zones": zones,
            }
        )
    return out


def needs(conn: sqlite3.Connection, asset_id: str) -> list[dict[str, Any]]:
    """What `asset_id` needs: {asset_id, reason, created_at, live, zones} each."""
    return _held(conn, "asset_id", asset_id)


def needed_by(conn: sqlite3.Connection, asset_id: str, *, live_only: bool = True) -> list[dict[str, Any]]:
    """The assets that need `asset_id` (only those some zone still holds, unless live_only=False)."""
    rows = _held(conn, "needs_asset_id", asset_id)
    return [r for r in rows if r["live"]] if live_only else rows


def blocking(conn: sqlite3.Connection, asset_id: str, zone: str | None) -> list[str]:
    """The live assets that need the copy of `asset_id` in `zone` (None: every copy) to stay.

    Empty for a spare copy: one outside the home while another zone keeps a verified copy."""
    users = [u["asset_id"] for u in needed_by(conn, asset_id)]
    if users and zone is not None and zone != LOCAL:
        spare = conn.execute(
            "SELECT count(*) FROM locations WHERE asset_id = ? AND zone != ? AND status = 'verified'",
            (asset_id, zone),
        ).fetchone()[0]
        if spare:
            return []
    return users


def check(conn: sqlite3.Connection, asset_id: str, zone: str | None, *, force: bool) -> list[str]:
    """Refuse (DependencyError, naming the dependants) to remove a copy that a live asset needs.

    `zone` None means every copy (forgetting the asset). Returns the dependants a forced removal
    went past (empty when nothing needed the copy), so callers can say so."""
    names = blocking(conn, asset_id, zone)
    if not names:
        return []
    reasons = ", ".join(sorted({u["reason"] for u in needed_by(conn, asset_id) if u["asset_id"] in names}))
    where = "from every zone" if zone is None else f"from zone {zone!r}"
    if not force:
        raise DependencyError(
            f"{asset_id} is needed by {', '.join(names)} ({reasons}); refusing to remove it {where}:"
            " delete those first, or use force",
            names,
        )
    log.warning(
        "%s is needed by %s (%s); removing it %s anyway (forced)", asset_id, ", ".join(names), reasons, where
    )
    return names
