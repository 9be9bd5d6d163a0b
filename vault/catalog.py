"""The asset catalog: every asset's identity, its files, and the zones that hold it.

Owns the `assets`, `asset_files` and `locations` tables (and the `local` row of `zones`); nothing
outside `vault/` writes them. An asset is a checkpoint, a model folder, a quest data file, an eval set
or a config, named by an id (`vault.ids`). Its identity (`vault.identity`) is a sha256 per file plus a
tree digest; a location is (zone, path relative to the zone root, status, when last verified).

`resolve_id` is the one function that turns what a user types into an asset id: ids, steps,
canonical checkpoint names, aliases and `latest`. `Catalog.scan` registers what the realm home holds
and is cheap to repeat: a file whose size and mtime match its stored row is not read again.

Removal goes through `check_removable`, which also asks `vault.deps` (the `asset_deps` table: an
adapter checkpoint needs its base model) whether a live asset still needs the copy.
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from vault import ids
from vault.errors import AssetNotFound, LastCopyError, VaultError
from vault.identity import FileEntry, Identity, identify, is_temp, list_files, needs_hash
from vault.ledger import SIDECAR

if TYPE_CHECKING:
    import sqlite3

    from vault.store import Store

log = logging.getLogger("realm.vault.catalog")

LOCAL = "local"
STATUSES = ("verified", "unverified", "corrupt", "missing")
# Queue folders whose files are quest data worth cataloguing (refused files in failed/ are not).
DATA_QUEUE_DIRS = ("high", "normal", "low", "processing", "recently_completed")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt", ".csv")
SIDE_SUFFIXES = (".meta.json", ".error.json")

ScanProgress = Callable[[int, int], None]  # (bytes hashed so far, bytes to hash in all)


@dataclass(frozen=True)
class Asset:
    id: str
    kind: str
    name: str
    step: int | None
    digest: str
    size_bytes: int
    file_count: int
    is_dir: bool
    created_at: float
    registered_at: float
    base_asset: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Asset:
        return cls(
            r["id"],
            r["kind"],
            r["name"],
            r["step"],
            r["digest"],
            r["size_bytes"],
            r["file_count"],
            bool(r["is_dir"]),
            r["created_at"],
            r["registered_at"],
            r["base_asset"],
            orjson.loads(r["meta"] or "{}"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "step": self.step,
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "file_count": self.file_count,
            "is_dir": self.is_dir,
            "created_at": self.created_at,
            "registered_at": self.registered_at,
            "base_asset": self.base_asset,
            "meta": self.meta,
        }


@dataclass(frozen=True)
class Location:
    asset_id: str
    zone: str
    path: str
    status: str
    verified_at: float | None
    added_at: float | None = None
    zone_kind: str | None = None
    priority: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "zone": self.zone,
            "path": self.path,
            "status": self.status,
            "verified_at": self.verified_at,
            "added_at": self.added_at,
            "zone_kind": self.zone_kind,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class LocateResult:
    asset: Asset
    locations: list[Location]
    local_path: Path | None = None  # the verified local copy, absolute, when there is one

    @property
    def found(self) -> bool:
        return True

    @property
    def best(self) -> Location | None:
        """The best verified copy (locations are already ordered best first)."""
        return next((loc for loc in self.locations if loc.status == "verified"), None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "found": True,
            "asset": self.asset.to_dict(),
            "locations": [loc.to_dict() for loc in self.locations],
            "best": best.to_dict() if best else None,
            "local_path": str(self.local_path) if self.local_path else None,
        }


@dataclass
class ScanResult:
    registered: list[str] = field(default_factory=list)  # new assets
    updated: list[str] = field(default_factory=list)  # content or path changed
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)  # local copies no longer on disk
    errors: list[str] = field(default_factory=list)
    bytes_hashed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "registered": self.registered,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "missing": self.missing,
            "errors": self.errors,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Candidate:
    """A path the catalog knows how to name: what `classify` returns and `scan` registers."""

    path: Path
    kind: str
    asset_id: str
    name: str
    step: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# ---- naming paths ---------------------------------------------------------------------------------
def classify(path: Path, home_root: Path | None = None, kind: str | None = None) -> Candidate:
    """Kind, id and name for a path, from where it lies and what it holds.

    Checkpoint folders (`checkpoint-{step}-...`), model folders (a `config.json` inside), eval-set
    files (`evalsets/<skill>/v<ver>/level-NN.jsonl`, or `import-<name>/` for imported versions), configs (`*.yaml`) and data files (`*.jsonl`
    and friends). `kind` forces the kind when the path alone does not say."""
    path = Path(path)
    name = path.name
    rel = _rel(path, home_root) if home_root else None
    parts = Path(rel).parts if rel and not os.path.isabs(rel) else ()
    step = ids.parse_step(name) if name.startswith("checkpoint") else None
    if kind in (None, "checkpoint") and path.is_dir() and step is not None:
        return Candidate(path, "checkpoint", ids.checkpoint_id(step), name, step)
    if (
        kind in (None, "evalset")
        and len(parts) >= 4
        and parts[-4] == "evalsets"
        and name.startswith("level-")
    ):
        skill, folder = parts[-3], parts[-2]
        # A generated version is `v<N>`; an imported one keeps its folder name (`import-<name>`).
        ver = folder[1:] if folder[:1] == "v" and folder[1:].isdigit() else ids.slug(folder)
        level = int("".join(c for c in name.split(".")[0] if c.isdigit()) or 0)
        aid = f"evalset_{ids.slug(skill)}_{'v' + ver if ver.isdigit() else ver}_l{level}"
        return Candidate(path, "evalset", aid, name, None, {"skill": skill, "version": ver, "level": level})
    if kind in (None, "model") and path.is_dir() and (path / "config.json").is_file():
        return Candidate(path, "model", f"model_{ids.slug(name)}", name)
    if kind == "config" or (kind is None and path.suffix in (".yaml", ".yml")):
        if len(parts) >= 2 and "configs" in parts[:-1]:
            sub = parts[parts.index("configs") + 1 : -1]
            stem = "_".join((*sub, path.stem))
        else:
            stem = f"home_{path.stem}" if parts == (name,) else path.stem
        return Candidate(path, "config", f"config_{ids.slug(stem)}", name)
    if kind == "data" or (kind is None and path.is_file() and path.suffix in DATA_SUFFIXES):
        meta = {"queue": parts[-2]} if len(parts) >= 3 and parts[-3] == "queue" else {}
        return Candidate(path, "data", f"data_{ids.slug(path.stem)}", name, None, meta)
    if kind in ids.KINDS and kind != "checkpoint":
        return Candidate(path, kind, f"{kind}_{ids.slug(path.stem)}", name)
    raise VaultError(f"{path}: cannot tell what kind of asset this is; pass a kind ({', '.join(ids.KINDS)})")


def _rel(path: Path, root: Path) -> str:
    """Path relative to the home (posix) when inside it, else the absolute path."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def _created_at(c: Candidate) -> float:
    if c.kind == "checkpoint":
        try:
            ts = orjson.loads((c.path / SIDECAR).read_bytes()).get("timestamp")
            return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except (OSError, ValueError, TypeError, AttributeError):
            pass
    return c.path.stat().st_mtime


# ---- references -----------------------------------------------------------------------------------
def resolve_id(store: Store, ref: str | int) -> str:
    """The asset id a reference names (the target may be in the ledger only, not yet catalogued).

    Tried in order: a step as int, `latest`, a canonical checkpoint name, an exact asset id, an alias,
    a step form (1200, step-1200, checkpoint-1200), a unique asset name. Else AssetNotFound."""
    from vault.ledger import Ledger

    if isinstance(ref, int):
        return ids.checkpoint_id(ref)
    s = str(ref).strip()
    low = s.lower()
    if low == ids.LATEST:
        latest = Ledger(store).latest()
        if latest is not None:
            return ids.checkpoint_id(latest["step"])
        r = store.one("SELECT id FROM assets WHERE kind = 'checkpoint' ORDER BY step DESC LIMIT 1")
        if r:
            return r["id"]
        raise AssetNotFound(s, "'latest' names the newest checkpoint, and there is none yet")
    if ids.CANONICAL_RE.match(low):
        r = store.one("SELECT id FROM assets WHERE name = ? AND kind = 'checkpoint'", (s,))
        return r["id"] if r else ids.checkpoint_id(ids.parse_step(low))
    if store.one("SELECT 1 FROM assets WHERE id = ?", (s,)):
        return s
    r = store.one("SELECT asset_id FROM aliases WHERE name = ?", (low,))
    if r:
        return r["asset_id"]
    step = ids.parse_step(low)
    if step is not None:
        return ids.checkpoint_id(step)
    named = store.query("SELECT id FROM assets WHERE name = ? LIMIT 2", (s,))
    if len(named) == 1:
        return named[0]["id"]
    close = close_matches(store, s)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise AssetNotFound(s, f"no asset {s!r}{hint} (valid forms: {ids.VALID_FORMS})", close)


def close_matches(store: Store, ref: str, n: int = 5) -> list[str]:
    """Ids and aliases that look like `ref` (nearest steps for a step-like reference)."""
    step = ids.parse_step(ref)
    if step is not None:
        rows = store.query(
            "SELECT id FROM assets WHERE kind = 'checkpoint' ORDER BY abs(step - ?) LIMIT ?", (step, n)
        )
        return [r["id"] for r in rows]
    low = ref.lower()
    pool = [r["name"] for r in store.query("SELECT name FROM aliases")]
    # Narrow the pool in SQL so a catalog of 100,000 assets does not go through difflib whole.
    guesses = {low[:4]} | {f"{k}_{ids.slug(low)[:4]}" for k in ids.KINDS}
    for g in guesses:
        pool += [r["id"] for r in store.query("SELECT id FROM assets WHERE id LIKE ? LIMIT 2000", (g + "%",))]
    exact = [f"{k}_{ids.slug(low)}" for k in ids.KINDS if f"{k}_{ids.slug(low)}" in pool]
    fuzzy = difflib.get_close_matches(low, pool, n=n, cutoff=0.5)
    return list(dict.fromkeys(exact + fuzzy))[:n]


# ---- the catalog ----------------------------------------------------------------------------------
class Catalog:
    """Assets, their files and locations in one realm database; `home_root` is the zone `local`."""

    def __init__(self, store: Store, home_root: Path):
        self.store = store
        self.home_root = Path(home_root)
        self._ensure_local_zone()

    def _ensure_local_zone(self) -> None:
        url = str(self.home_root.resolve())
        row = self.store.one("SELECT url FROM zones WHERE id = ?", (LOCAL,))
        if row is None or row["url"] != url:  # a new or moved home: write only when it differs
            with self.store.tx() as conn:
                conn.execute(
                    "INSERT INTO zones (id, kind, url, token_env, added_at, priority)"
                    " VALUES (?, 'local', ?, NULL, ?, 0) ON CONFLICT(id) DO UPDATE SET url = excluded.url",
                    (LOCAL, url, time.time()),
                )

    # ---- reading -------------------------------------------------------------------------------
    def get(self, asset_id: str) -> Asset | None:
        r = self.store.one("SELECT * FROM assets WHERE id = ?", (asset_id,))
        return Asset.from_row(r) if r else None

    def resolve(self, ref: str | int) -> Asset:
        """The asset any reference names; AssetNotFound (with valid forms, close matches) if none."""
        aid = resolve_id(self.store, ref)
        asset = self.get(aid)
        if asset is not None:
            return asset
        row = None
        if ids.kind_of(aid) == "checkpoint":
            row = self.store.one(
                "SELECT name, deleted FROM checkpoints WHERE step = ? ORDER BY deleted, id DESC LIMIT 1",
                (int(aid.split("_", 1)[1]),),
            )
        if row and row["deleted"]:
            msg = f"{aid} ({row['name']}) is in the ledger but was deleted; no zone holds it"
        elif row:
            msg = f"{aid} ({row['name']}) is in the ledger but not catalogued yet: run `realm vault scan`"
        else:
            close = close_matches(self.store, str(ref))
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AssetNotFound(str(ref), f"no asset {aid!r}{hint} (valid forms: {ids.VALID_FORMS})", close)
        raise AssetNotFound(str(ref), msg, [])

    def files(self, asset_id: str) -> list[FileEntry]:
        rows = self.store.query(
            "SELECT relpath, sha256, size_bytes, mtime_ns FROM asset_files WHERE asset_id = ? ORDER BY relpath",
            (asset_id,),
        )
        return [FileEntry(r["relpath"], r["sha256"], r["size_bytes"], r["mtime_ns"]) for r in rows]

    def locations(self, asset_id: str) -> list[Location]:
        """Best first: verified copies before the rest, then by zone priority (local 0 first)."""
        rows = self.store.query(
            "SELECT l.*, z.kind AS zone_kind, z.priority FROM locations l LEFT JOIN zones z ON z.id = l.zone"
            " WHERE l.asset_id = ? ORDER BY l.status != 'verified', coalesce(z.priority, 1000), l.zone",
            (asset_id,),
        )
        return [
            Location(
                r["asset_id"],
                r["zone"],
                r["path"],
                r["status"],
                r["verified_at"],
                r["added_at"],
                r["zone_kind"],
                r["priority"],
            )
            for r in rows
        ]

    def local_path(self, asset_id: str) -> Path | None:
        """The absolute path of the verified local copy, or None."""
        r = self.store.one(
            "SELECT path FROM locations WHERE asset_id = ? AND zone = ? AND status = 'verified'",
            (asset_id, LOCAL),
        )
        return self.home_root / r["path"] if r else None

    def locate(self, ref: str | int) -> LocateResult:
        asset = self.resolve(ref)
        return LocateResult(asset, self.locations(asset.id), self.local_path(asset.id))

    def search(
        self, kind: str | None = None, q: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Asset]:
        sql, params = "SELECT * FROM assets WHERE 1", []
        if kind:
            if kind not in ids.KINDS:
                raise VaultError(f"unknown asset kind {kind!r}; expected one of {', '.join(ids.KINDS)}")
            sql += " AND kind = ?"
            params.append(kind)
        if q:
            sql += " AND (id LIKE ? OR name LIKE ?)"
            params += [f"%{q}%", f"%{q}%"]
        sql += " ORDER BY kind, step DESC, id LIMIT ? OFFSET ?"
        params += [int(limit), int(offset)]
        return [Asset.from_row(r) for r in self.store.query(sql, params)]

    def with_file(self, sha256: str) -> list[dict[str, Any]]:
        """Every (asset, relpath) holding a file with this sha256: identical files across assets."""
        return self.store.query(
            "SELECT asset_id, relpath, size_bytes FROM asset_files WHERE sha256 = ? ORDER BY asset_id",
            (sha256,),
        )

    def stats(self) -> dict[str, Any]:
        kinds = {
            r["kind"]: {"count": r["n"], "bytes": r["b"]}
            for r in self.store.query(
                "SELECT kind, count(*) AS n, coalesce(sum(size_bytes), 0) AS b FROM assets GROUP BY kind"
            )
        }
        zones: dict[str, dict[str, int]] = {}
        for r in self.store.query("SELECT zone, status, count(*) AS n FROM locations GROUP BY zone, status"):
            zones.setdefault(r["zone"], {})[r["status"]] = r["n"]
        # Bytes the catalog would hold if identical files were stored once (a content-addressed store).
        unique = self.store.scalar(
            "SELECT coalesce(sum(size_bytes), 0) FROM (SELECT sha256, max(size_bytes) AS size_bytes"
            " FROM asset_files GROUP BY sha256)"
        )
        ledger = self.store.one(
            "SELECT count(*) FILTER (WHERE deleted = 0) AS live, count(*) FILTER (WHERE deleted = 1) AS deleted"
            " FROM checkpoints"
        )
        return {
            "assets": sum(k["count"] for k in kinds.values()),
            "bytes": sum(k["bytes"] for k in kinds.values()),
            "unique_file_bytes": int(unique or 0),
            "by_kind": kinds,
            "zones": zones,
            "aliases": int(self.store.scalar("SELECT count(*) FROM aliases")),
            "ledger": ledger,
        }

    # ---- writing -------------------------------------------------------------------------------
    def register(
        self,
        path: Path,
        *,
        kind: str | None = None,
        asset_id: str | None = None,
        zone: str = LOCAL,
        meta: dict[str, Any] | None = None,
        identity: Identity | None = None,
    ) -> Asset:
        """Record the asset at `path` with a verified location in `zone`; idempotent.

        For `local` the location is `path` relative to the home; for another zone the asset is taken
        to lie at `<zone root>/<asset name>` (the zones' layout) and `path` is the local copy that was
        verified. A changed content replaces the identity and marks other zones' copies unverified."""
        c = classify(path, self.home_root, kind)
        if asset_id:
            c = Candidate(c.path, c.kind, asset_id, c.name, c.step, c.meta)
        if meta:
            c = Candidate(c.path, c.kind, c.asset_id, c.name, c.step, {**c.meta, **meta})
        if identity is None:
            identity = identify(c.path, known=self._known(c.asset_id))
        locpath = _rel(c.path, self.home_root) if zone == LOCAL else c.name
        with self.store.tx() as conn:
            self._write(conn, c, identity, zone, locpath)
        return self.get(c.asset_id)  # type: ignore[return-value]

    def _known(self, asset_id: str) -> dict[str, FileEntry]:
        return {f.relpath: f for f in self.files(asset_id)}

    def _write(self, conn: sqlite3.Connection, c: Candidate, ident: Identity, zone: str, locpath: str) -> str:
        """Asset, files and one verified location inside the caller's transaction.

        Returns 'registered', 'updated' or 'unchanged' (nothing written when unchanged)."""
        now = time.time()
        old = conn.execute(
            "SELECT a.digest, a.name, a.meta, l.path, l.status FROM assets a LEFT JOIN locations l"
            " ON l.asset_id = a.id AND l.zone = ? WHERE a.id = ?",
            (zone, c.asset_id),
        ).fetchone()
        meta = orjson.dumps(c.meta).decode()
        if old is not None and old["digest"] == ident.digest:
            if (old["path"], old["status"], old["name"], old["meta"]) == (locpath, "verified", c.name, meta):
                self._touch_mtimes(conn, c.asset_id, ident)
                return "unchanged"
            conn.execute("UPDATE assets SET name = ?, meta = ? WHERE id = ?", (c.name, meta, c.asset_id))
            self._touch_mtimes(conn, c.asset_id, ident)
            self._set_location(conn, c.asset_id, zone, locpath, "verified", now)
            return "updated"
        created = _created_at(c) if c.path.exists() else now
        conn.execute(
            "INSERT INTO assets (id, kind, name, step, digest, size_bytes, file_count, is_dir, created_at,"
            " registered_at, base_asset, meta) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,?)"
            " ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, name = excluded.name, step = excluded.step,"
            " digest = excluded.digest, size_bytes = excluded.size_bytes, file_count = excluded.file_count,"
            " is_dir = excluded.is_dir, created_at = excluded.created_at, meta = excluded.meta",
            (
                c.asset_id,
                c.kind,
                c.name,
                c.step,
                ident.digest,
                ident.size_bytes,
                ident.file_count,
                int(ident.is_dir),
                created,
                now,
                meta,
            ),
        )
        if old is not None:  # new content under the same id: other zones hold the old bytes
            log.warning(
                "asset %s changed content (%s -> %s)", c.asset_id, old["digest"][:12], ident.digest[:12]
            )
            conn.execute("DELETE FROM asset_files WHERE asset_id = ?", (c.asset_id,))
            conn.execute(
                "UPDATE locations SET status = 'unverified' WHERE asset_id = ? AND zone != ? AND status = 'verified'",
                (c.asset_id, zone),
            )
        conn.executemany(
            "INSERT INTO asset_files (asset_id, relpath, sha256, size_bytes, mtime_ns) VALUES (?,?,?,?,?)",
            [(c.asset_id, f.relpath, f.sha256, f.size, f.mtime_ns) for f in ident.files],
        )
        self._set_location(conn, c.asset_id, zone, locpath, "verified", now)
        return "updated" if old is not None else "registered"

    @staticmethod
    def _touch_mtimes(conn: sqlite3.Connection, asset_id: str, ident: Identity) -> None:
        # Same content, new mtimes (a copy, a touch): remember them so the next scan skips hashing.
        conn.executemany(
            "UPDATE asset_files SET mtime_ns = ? WHERE asset_id = ? AND relpath = ? AND mtime_ns IS NOT ?",
            [(f.mtime_ns, asset_id, f.relpath, f.mtime_ns) for f in ident.files],
        )

    @staticmethod
    def _set_location(
        conn: sqlite3.Connection, asset_id: str, zone: str, path: str, status: str, now: float
    ) -> None:
        if status not in STATUSES:
            raise VaultError(f"unknown location status {status!r}; expected one of {', '.join(STATUSES)}")
        conn.execute(
            "INSERT INTO locations (asset_id, zone, path, status, verified_at, added_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(asset_id, zone) DO UPDATE SET path = excluded.path, status = excluded.status,"
            " verified_at = coalesce(excluded.verified_at, verified_at)",
            (asset_id, zone, path, status, now if status == "verified" else None, now),
        )

    def set_location(self, asset_id: str, zone: str, path: str, status: str = "verified") -> None:
        """Record that `zone` holds the asset at `path` (call only after the copy was verified)."""
        if self.get(asset_id) is None:
            raise AssetNotFound(asset_id, f"no asset {asset_id!r} to locate in zone {zone!r}")
        with self.store.tx() as conn:
            self._set_location(conn, asset_id, zone, path, status, time.time())

    def mark_location(self, asset_id: str, zone: str, status: str) -> None:
        if status not in STATUSES:
            raise VaultError(f"unknown location status {status!r}; expected one of {', '.join(STATUSES)}")
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE locations SET status = ?, verified_at = CASE WHEN ? = 'verified' THEN ?"
                " ELSE verified_at END WHERE asset_id = ? AND zone = ?",
                (status, status, time.time(), asset_id, zone),
            )
            if cur.rowcount == 0:
                raise AssetNotFound(asset_id, f"zone {zone!r} holds no copy of {asset_id!r}")

    def check_removable(
        self,
        conn: sqlite3.Connection,
        asset_id: str,
        zone: str,
        force: bool,
        force_needed: bool | None = None,
    ) -> list[str]:
        """DependencyError when a live asset needs this copy (vault.deps), LastCopyError when it is
        the last verified copy. `force_needed` (default: `force`) overrides the first, `force` the
        second. Returns the dependants a forced removal went past."""
        from vault import deps

        overridden = deps.check(conn, asset_id, zone, force=force if force_needed is None else force_needed)
        if force:
            return overridden
        rows = conn.execute(
            "SELECT zone FROM locations WHERE asset_id = ? AND status = 'verified'", (asset_id,)
        ).fetchall()
        if [r["zone"] for r in rows] == [zone]:
            raise LastCopyError(
                f"{asset_id}: zone {zone!r} holds its last verified copy; refusing to delete it without force"
            )
        return overridden

    def remove_location(
        self,
        asset_id: str,
        zone: str,
        *,
        force: bool = False,
        force_needed: bool | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> list[str]:
        """Forget a copy (the caller deletes the bytes). Refuses the last verified copy, and a copy a
        live asset needs, unless forced (see check_removable); returns the dependants forced past."""
        if conn is not None:
            overridden = self.check_removable(conn, asset_id, zone, force, force_needed)
            conn.execute("DELETE FROM locations WHERE asset_id = ? AND zone = ?", (asset_id, zone))
            return overridden
        with self.store.tx() as c:
            return self.remove_location(asset_id, zone, force=force, force_needed=force_needed, conn=c)

    def dependencies(self, asset_id: str) -> dict[str, list[dict[str, Any]]]:
        """`needs` (what this asset needs: an adapter's base) and `needed_by` (every asset that needs
        it, `live` when some zone still holds that one), as the asset's JSON shows them."""
        from vault import deps

        conn = self.store.connect()
        return {
            "needs": deps.needs(conn, asset_id),
            "needed_by": deps.needed_by(conn, asset_id, live_only=False),
        }

    def forget(self, asset_id: str, *, force: bool = False) -> None:
        """Drop an asset from the catalog; refused while a verified copy exists or a live asset needs
        it, unless force."""
        from vault import deps

        with self.store.tx() as conn:
            deps.check(conn, asset_id, None, force=force)
            held = conn.execute(
                "SELECT count(*) FROM locations WHERE asset_id = ? AND status = 'verified'", (asset_id,)
            ).fetchone()[0]
            if held and not force:
                raise LastCopyError(f"{asset_id}: {held} verified copies exist; forget it with force only")
            conn.execute("DELETE FROM assets WHERE id = ?", (asset_id,))

    # ---- scanning ------------------------------------------------------------------------------
    def candidates(self, root: Path | None = None, extra: Iterable[Path] = ()) -> Iterator[Candidate]:
        """What a scan registers under the home: checkpoints and model folders in models/, eval sets,
        configs, quest data in queue/, plus `extra` paths (the hero's base model folder)."""
        root = Path(root or self.home_root)
        models = root / "models"
        if models.is_dir():
            for p in sorted(models.iterdir()):
                if p.name.startswith(".") or not p.is_dir():
                    continue
                if ids.CANONICAL_RE.match(p.name) and not (p / SIDECAR).is_file():
                    continue  # a checkpoint without its sidecar is incomplete (arena writes it last)
                if ids.parse_step(p.name) is not None or (p / "config.json").is_file():
                    yield classify(p, self.home_root)
        for p in sorted((root / "evalsets").glob("*/*/level-*.jsonl")):
            yield classify(p, self.home_root)
        for pattern in ("*.yaml", "*/*.yaml", "*.yml", "*/*.yml"):
            for p in sorted((root / "configs").glob(pattern)):
                yield classify(p, self.home_root)
        if (root / "realm.yaml").is_file():
            yield classify(root / "realm.yaml", self.home_root)
        for d in DATA_QUEUE_DIRS:
            qdir = root / "queue" / d
            if not qdir.is_dir():
                continue
            for p in sorted(qdir.iterdir()):
                if p.is_file() and not p.name.startswith(".") and not p.name.endswith(SIDE_SUFFIXES):
                    if p.suffix in DATA_SUFFIXES:
                        yield classify(p, self.home_root, "data")
        for p in extra:
            if Path(p).exists():
                yield classify(Path(p), self.home_root, "model" if Path(p).is_dir() else None)

    def scan(
        self, root: Path | None = None, *, progress: ScanProgress | None = None, extra: Iterable[Path] = ()
    ) -> ScanResult:
        """Register what is on local disk; mark local copies that vanished as missing. Idempotent:
        an unchanged file (same size and mtime as its row) is not hashed again. A checkpoint newly
        registered here gets the dependency its sidecar declares (an adapter's base), as on landing."""
        from vault import deps

        t0 = time.monotonic()
        res = ScanResult()
        found: list[tuple[Candidate, dict[str, FileEntry]]] = []
        for c in self.candidates(root, extra):
            found.append((c, self._known(c.asset_id)))
        total = 0
        for c, known in found:
            files = list_files(c.path) if c.path.is_dir() else [(c.path.name, c.path)]
            total += sum(p.stat().st_size for rel, p in files if needs_hash(p, known.get(rel)))
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        seen: set[str] = set()
        for c, known in found:
            if c.asset_id in seen:
                res.errors.append(f"{c.path}: id {c.asset_id} already taken by another path in this scan")
                continue
            seen.add(c.asset_id)
            try:
                ident = identify(c.path, known=known, progress=tick)
                locpath = _rel(c.path, self.home_root)
                if self._is_current(c, ident, locpath, known):
                    res.unchanged += 1  # the common re-scan case: no write transaction at all
                    continue
                link = self._base_link(c)
                with self.store.tx() as conn:
                    outcome = self._write(conn, c, ident, LOCAL, locpath)
                    if c.kind == "checkpoint":
                        deps.write(conn, self, c.asset_id, link)
            except (OSError, VaultError) as exc:  # a file removed mid-scan, a name we cannot use
                res.errors.append(f"{c.path}: {exc}")
                continue
            if outcome == "registered":
                res.registered.append(c.asset_id)
            elif outcome == "updated":
                res.updated.append(c.asset_id)
            else:
                res.unchanged += 1
        res.missing = self._mark_missing_local(seen)
        res.bytes_hashed = done
        res.seconds = time.monotonic() - t0
        log.info("vault scan: %s", {k: v for k, v in res.to_dict().items() if v})
        return res

    def _base_link(self, c: Candidate) -> Any:
        """The base an adapter checkpoint found by a scan needs (vault.deps); None for anything else."""
        from vault import deps

        if c.kind != "checkpoint" or not (c.path / SIDECAR).is_file():
            return None
        try:
            sidecar = orjson.loads((c.path / SIDECAR).read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable sidecar, no dependency recorded: %s", c.path, exc)
            return None
        return deps.prepare(self, c.path, sidecar) if isinstance(sidecar, dict) else None

    def _is_current(self, c: Candidate, ident: Identity, locpath: str, known: dict[str, FileEntry]) -> bool:
        r = self.store.one(
            "SELECT a.digest, a.name, a.meta, l.path, l.status FROM assets a JOIN locations l"
            " ON l.asset_id = a.id AND l.zone = ? WHERE a.id = ?",
            (LOCAL, c.asset_id),
        )
        same_mtimes = all(f.mtime_ns is not None for f in ident.files) and {
            (f.relpath, f.mtime_ns) for f in ident.files
        } == {(f.relpath, f.mtime_ns) for f in known.values()}
        return (
            r is not None
            and same_mtimes
            and (r["digest"], r["path"], r["status"], r["name"], r["meta"])
            == (ident.digest, locpath, "verified", c.name, orjson.dumps(c.meta).decode())
        )

    def _mark_missing_local(self, seen: set[str]) -> list[str]:
        gone = []
        for r in self.store.query(
            "SELECT asset_id, path FROM locations WHERE zone = ? AND status != 'missing'", (LOCAL,)
        ):
            if r["asset_id"] in seen:
                continue
            p = self.home_root / r["path"]
            if not p.exists() or is_temp(p.name):
                gone.append(r["asset_id"])
        if gone:
            with self.store.tx() as conn:
                conn.executemany(
                    "UPDATE locations SET status = 'missing' WHERE asset_id = ? AND zone = ?",
                    [(a, LOCAL) for a in gone],
                )
        return gone
