"""The VaultKeeper: one realm's catalog, ledger and zones behind one object.

`VaultKeeper(realm)` composes `Catalog` (assets, files, locations, scan) and `Ledger` (checkpoint
rows, aliases) over the realm's store; the zones, transfers and `ask_vault_first` are added on top
of it (vault/zones.py, vault/transfer.py). The HTTP API (vault/server.py) and the CLI (vault/cli.py)
call this object and nothing below it, so every entry point applies the same rules.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.catalog import LOCAL, Catalog, LocateResult, ScanProgress, ScanResult
from vault.errors import AssetNotFound, VaultError
from vault.ledger import Ledger

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger("realm.vault.keeper")


class VaultKeeper:
    def __init__(self, realm: Realm):
        self.realm = realm

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.realm.store, self.realm.home.root)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.realm.store, self.realm.events)

    # ---- the catalog, as the API and CLI see it ------------------------------------------------
    def locate(self, ref: str | int) -> LocateResult:
        return self.catalog.locate(ref)

    def stats(self) -> dict[str, Any]:
        return self.catalog.stats()

    def scan_extra(self) -> list[Path]:
        """Paths outside the home layout that a scan also registers: the hero's base model folder."""
        base = self.realm.config.hero.base_model
        return [Path(base)] if base else []

    def scan(self, *, progress: ScanProgress | None = None) -> ScanResult:
        return self.catalog.scan(progress=progress, extra=self.scan_extra())

    # ---- H: the facade the Vault API, its client and the Tavern's Vault room share ----------------
    # Every entry point (vault/server.py, vault/client.py's server side, tavern/api/vault.py) calls
    # these, so a rule (what "delete" means, where a fetched asset lands) has one owner.
    def asset(self, ref: str | int) -> dict[str, Any]:
        """Everything about one asset: the locate answer plus its files, ledger row and aliases."""
        res = self.catalog.locate(ref)
        a = res.asset
        row = self.ledger.get(a.step) if a.kind == "checkpoint" and a.step is not None else None
        aliases = (
            row["aliases"] if row else [n for n, v in self.ledger.aliases().items() if v["asset_id"] == a.id]
        )
        return {
            **res.to_dict(),
            "files": [
                {"relpath": f.relpath, "sha256": f.sha256, "size": f.size} for f in self.catalog.files(a.id)
            ],
            "ledger": row,
            "aliases": aliases,
            **self.catalog.dependencies(a.id),  # needs (an adapter's base) and needed_by
        }

    def search(
        self, kind: str | None = None, q: str | None = None, limit: int = 100, offset: int = 0
    ) -> list:
        return self.catalog.search(kind, q, limit, offset)

    def checkpoints(
        self, *, limit: int = 100, offset: int = 0, include_deleted: bool = False, skill: str | None = None
    ) -> list[dict[str, Any]]:
        """Ledger rows, newest first, each with `locations` (the zones holding it, best first)."""
        rows = self.ledger.list(limit=limit, offset=offset, include_deleted=include_deleted, skill=skill)
        for r in rows:
            r["locations"] = [loc.to_dict() for loc in self.catalog.locations(r["asset_id"])]
        return rows

    def zones(self, *, free: bool = True) -> list[dict[str, Any]]:
        from vault.zones import list_zones

        return list_zones(self.realm.store, free=free)

    def zone(self, name: str) -> dict[str, Any]:
        """One zone's row with its free space and what the catalog says it holds."""
        from vault.zones import get_zone_row, zone_from_row

        row = get_zone_row(self.realm.store, name)
        try:
            row["free_bytes"] = zone_from_row(row).free_bytes()
        except (OSError, ValueError, ImportError) as exc:  # an unreachable store: the rest still answers
            log.warning("zone %s: free space unknown: %s", name, exc)
            row["free_bytes"] = None
        held = self.catalog.stats()["zones"].get(name, {})
        row["locations"] = held
        return row

    def register(
        self, relpath: str, *, kind: str | None = None, asset_id: str | None = None, meta: dict | None = None
    ) -> Any:
        """Register a file or folder of the home (a path relative to it; it may not leave it)."""
        from vault.zones import LocalZone

        path = LocalZone(LOCAL, self.realm.home.root).path(relpath)  # the zones' one path rule
        if not path.exists():
            raise AssetNotFound(relpath, f"nothing at {relpath!r} in the realm home to register")
        return self.catalog.register(path, kind=kind, asset_id=asset_id, meta=meta)

    def set_alias(self, name: str, ref: str | int, *, by: str, reason: str = "") -> dict[str, Any]:
        return self.ledger.set_alias(name, ref, by=by, reason=reason)

    def remove_alias(self, name: str, *, by: str, reason: str = "") -> None:
        self.ledger.remove_alias(name, by=by, reason=reason)

    def push(self, ref: str | int, zone: str, *, progress: Any = None) -> Any:
        from vault import transfer

        return transfer.push(self, str(ref), zone, progress=progress)

    def pull(self, ref: str | int, zone: str | None = None, *, progress: Any = None) -> Any:
        from vault import transfer

        return transfer.pull(self.catalog, str(ref), zone, progress=progress)

    def fetch(self, ref: str | int, zone: str | None = None, *, progress: Any = None) -> dict[str, Any]:
        """Make sure this home holds a verified copy: {asset_id, path, fetched, transfer}.

        Without `zone`, an asset already here is not fetched again; otherwise it is pulled from the
        best zone that holds it (zones in priority order: local folders, officers, object stores)."""
        res = self.catalog.locate(ref)
        aid = res.asset.id
        result = None
        if zone is not None or res.local_path is None or not res.local_path.exists():
            result = self.pull(aid, zone, progress=progress)
            if res.asset.kind == "checkpoint":
                # A checkpoint folder back in models/ is live again: the ledger's own repair says so.
                self.ledger.reconcile(self.realm.home.models)
        path = self.catalog.local_path(aid)
        if path is None or not path.exists():
            raise VaultError(f"{aid}: pulled, but this home records no verified local copy")
        transfer = result.to_dict() if hasattr(result, "to_dict") else result
        return {"asset_id": aid, "path": str(path), "fetched": result is not None, "transfer": transfer}

    def ask_vault_first(self, ref: str | int, *, progress: Any = None) -> Path:
        """The local path of an asset, fetched from the best zone first when this home lacks it."""
        return Path(self.fetch(ref, progress=progress)["path"])

    def transfer(self, ref: str | int, src: str = LOCAL, dst: str = LOCAL) -> dict[str, Any]:
        """Copy an asset from zone `src` to zone `dst`. One of them is this home, or else the copy
        passes through it (pulled from `src` when the home lacks it, then pushed to `dst`)."""
        if src == dst:
            raise VaultError(f"transfer from {src!r} to itself: name two different zones")
        aid = self.catalog.resolve(ref).id
        steps = []
        if dst == LOCAL:
            steps.append(self.pull(aid, src))
        else:
            if src != LOCAL:
                steps.append(self.fetch(aid, None if self.catalog.local_path(aid) else src)["transfer"])
            steps.append(self.push(aid, dst))
        out = [s.to_dict() if hasattr(s, "to_dict") else s for s in steps if s is not None]
        return {"asset_id": aid, "from": src, "to": dst, "steps": out}

    def delete(self, ref: str | int, zone: str = LOCAL, *, force: bool = False) -> dict[str, Any]:
        """Delete one zone's copy of an asset. The last verified copy, and a copy a live asset needs
        (an adapter's base: vault.deps), go only with force; a forced delete that went past
        dependants names them in the answer's `needed_by`, with a `warning`. A local checkpoint
        folder goes through retention's delete (ledger row kept, marked deleted)."""
        from vault import deps, retention

        res = self.catalog.locate(ref)
        a = res.asset
        loc = next((x for x in res.locations if x.zone == zone), None)
        if loc is None:
            held = ", ".join(x.zone for x in res.locations) or "none"
            raise AssetNotFound(str(ref), f"zone {zone!r} holds no copy of {a.id} (held by: {held})")
        needed: list[str] = []
        if zone == LOCAL and a.kind == "checkpoint":
            needed = retention.delete_checkpoint(
                self.ledger, self.catalog, self.realm.home.root / loc.path, force=force
            )
        elif zone == LOCAL:
            # Other files in the home belong to other rooms (quest files to the queue, eval sets to the
            # guild, configs to the person who wrote them): the vault deletes only copies elsewhere.
            raise VaultError(
                f"{a.id}: the vault deletes a {a.kind}'s copies in other zones, not the one in the realm"
                " home (quests: `realm quest cancel`; configs and eval sets: by hand)"
            )
        else:
            from vault import transfer

            # transfer.remove asks the catalog, which refuses unless force; ask first to report it.
            needed = deps.blocking(self.realm.store.connect(), a.id, zone) if force else []
            transfer.remove(self.catalog, a.id, zone, force=force)
        log.info("deleted %s from zone %s%s", a.id, zone, " (forced)" if force else "")
        out: dict[str, Any] = {"asset_id": a.id, "zone": zone, "deleted": True}
        if needed:  # only then: the plain answer stays what clients already compare against
            out["needed_by"] = needed
            out["warning"] = f"forced: {', '.join(needed)} still need {a.id}"
        return out

    def export(self, ref: str | int) -> tuple[str, Any]:
        """(archive file name, iterator of tar bytes) of the asset's verified copy in this home.

        Never fetches: an export is a read, and bringing an asset home is a mutation (`fetch`)."""
        from vault.archive import tar_stream
        from vault.transfer import TransferError

        res = self.catalog.locate(ref)
        if res.local_path is None or not res.local_path.exists():
            held = ", ".join(x.zone for x in res.locations if x.status == "verified") or "none"
            raise TransferError(
                f"{res.asset.id}: this home holds no verified copy to export (held by: {held}); fetch it first"
            )
        return f"{res.local_path.name}.tar", tar_stream(res.local_path)
