"""Push, pull, verify and remove: moving asset copies between zones, verified end to end.

Owns the `transfers` table (one row per push or pull: started, bytes moved as it goes, finished or
failed) and the protocol on top of the zone transports (vault/zones.py):

- **push** sends the files of a verified local copy (the home or a local folder zone) to a zone. A
  folder is assembled in a staging folder `<zone root>/.partial-<name>/` and renamed to `<name>` only
  when every file arrived verified, so a zone never shows a half-pushed asset; the catalog's location
  row is written after that. A killed push leaves the staging folder, and the next push resumes it:
  files already staged with the right size and sha256 are not sent again. A zone whose verified
  location still has every file at the right size is "held": nothing moves.
- **pull** brings an asset home from the best zone holding a verified copy (zone priority: other
  local folders, then officers, then object stores), the same way round: staged beside its home
  path, checked, renamed, then the `local` location row. A copy that arrives corrupt is marked
  `corrupt` and the next zone is tried.
- **verify** re-hashes copies (an officer hashes its own files, so verifying it moves no bytes),
  marks each location `verified`, `corrupt` (a file differs or is absent) or `missing` (nothing
  there), and says whether all were good.
- **remove** forgets a copy and deletes its bytes; the catalog refuses the last verified copy unless
  forced.

Progress is reported as `(bytes done, bytes total)` (vault/progress.py draws it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vault.catalog import LOCAL, Asset, Catalog, Location
from vault.errors import VaultError
from vault.identity import FileEntry
from vault.zones import (
    ChecksumMismatch,
    LocalZone,
    Zone,
    ZoneError,
    ZoneUnavailable,
    open_zone,
    safe_relpath,
    stage_name,
)

log = logging.getLogger("realm.vault.transfer")

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
PROGRESS_WRITE_S = 0.25  # the transfers row's bytes_moved is written at most this often
# Where a pulled asset lands in the home when no local location names a path for it.
HOME_DIRS = {
    "checkpoint": "models",
    "model": "models",
    "evalset": "evalsets",
    "data": "data",
    "config": "configs",
}


class TransferError(VaultError):
    """A push or pull that cannot be done as asked; the message says what to do instead."""


@dataclass
class TransferResult:
    asset_id: str
    name: str
    direction: str  # push | pull
    src_zone: str
    dst_zone: str
    path: str  # where the copy now lies in the destination zone
    status: str  # done (bytes moved) | held (the destination already had it: nothing moved)
    bytes_total: int = 0  # bytes that had to move after skipping what the destination held
    bytes_moved: int = 0
    files_moved: int = 0
    files_skipped: int = 0
    transfer_id: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@dataclass
class VerifyResult:
    checked: int = 0
    verified: list[dict[str, Any]] = field(default_factory=list)
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    unreachable: list[dict[str, Any]] = field(default_factory=list)  # zones that could not be asked
    bytes_hashed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.corrupt or self.missing or self.unreachable)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "seconds": round(self.seconds, 3)}


# ---- the transfers table ----------------------------------------------------------------------------
class TransferLog:
    """The only writer of `transfers`. A row is `running` until finished `done` or `failed`; a row
    left `running` by a killed process is marked `interrupted` when the same transfer starts again."""

    def __init__(self, store: Any):
        self.store = store

    def start(self, asset_id: str, src: str, dst: str, direction: str, bytes_total: int) -> int:
        now = time.time()
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE transfers SET status = 'interrupted', finished_at = ? WHERE asset_id = ?"
                " AND src_zone = ? AND dst_zone = ? AND direction = ? AND status = 'running'",
                (now, asset_id, src, dst, direction),
            )
            cur = conn.execute(
                "INSERT INTO transfers (asset_id, src_zone, dst_zone, direction, status, bytes_total,"
                " bytes_moved, started_at) VALUES (?, ?, ?, ?, 'running', ?, 0, ?)",
                (asset_id, src, dst, direction, bytes_total, now),
            )
            return int(cur.lastrowid)

    def progress(self, transfer_id: int, bytes_moved: int) -> None:
        with self.store.tx() as conn:
            conn.execute("UPDATE transfers SET bytes_moved = ? WHERE id = ?", (bytes_moved, transfer_id))

    def finish(self, transfer_id: int, status: str, bytes_moved: int, error: str | None = None) -> None:
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE transfers SET status = ?, bytes_moved = ?, finished_at = ?, error = ? WHERE id = ?",
                (status, bytes_moved, time.time(), error, transfer_id),
            )

    def list(self, *, asset_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM transfers", []
        if asset_id:
            sql += " WHERE asset_id = ?"
            params.append(asset_id)
        return self.store.query(sql + " ORDER BY id DESC LIMIT ?", [*params, int(limit)])


class _Meter:
    """Counts moved bytes for one transfer: the caller's progress on every chunk, the row now and then."""

    def __init__(self, log_: TransferLog, transfer_id: int, total: int, progress: Progress | None):
        self.log, self.id, self.total, self.progress = log_, transfer_id, total, progress
        self.moved = 0
        self._written = 0.0  # the first chunk is written at once: a watcher sees the transfer start

    def __call__(self, n: int) -> None:
        self.moved += n
        if self.progress:
            self.progress(self.moved, self.total)
        now = time.monotonic()
        if now - self._written >= PROGRESS_WRITE_S:
            self._written = now
            self.log.progress(self.id, self.moved)


# ---- helpers ------------------------------------------------------------------------------------------
def _catalog(keeper_or_catalog: Any) -> Catalog:
    return getattr(keeper_or_catalog, "catalog", keeper_or_catalog)


def zone_path(asset: Asset, base: str, f: FileEntry) -> str:
    """Where file `f` of `asset` lies in a zone when the asset is at `base`."""
    return f"{base}/{f.relpath}" if asset.is_dir else base


def _wanted(zone: Zone, asset: Asset, base: str, files: list[FileEntry]) -> tuple[list[FileEntry], int]:
    """(files the zone does not hold verified at `base`, how many it does). A file counts as held when
    its size matches and its sha256 does (the zone's cached one, else a re-hash on the zone's side)."""
    listing = zone.files(base)
    todo = []
    for f in files:
        got = listing.get(f.relpath)
        if got is None or got[0] != f.size:
            todo.append(f)
            continue
        sha = got[1] or zone.hash(zone_path(asset, base, f))
        if sha != f.sha256:
            todo.append(f)
    return todo, len(files) - len(todo)


def _sizes_match(zone: Zone, base: str, files: list[FileEntry]) -> bool:
    """The cheap check behind "already held": every file present at its catalog size (one listing)."""
    listing = zone.files(base)
    return all(f.relpath in listing and listing[f.relpath][0] == f.size for f in files)


def _location(catalog: Catalog, asset_id: str, zone: str) -> Location | None:
    return next((loc for loc in catalog.locations(asset_id) if loc.zone == zone), None)


def _local_source(catalog: Catalog, asset: Asset, exclude: str) -> tuple[LocalZone, Location]:
    """A verified copy this machine can read directly: the home first, then local folder zones."""
    for loc in catalog.locations(asset.id):
        if loc.status == "verified" and loc.zone_kind == "local" and loc.zone != exclude:
            zone = open_zone(catalog.store, loc.zone)
            if isinstance(zone, LocalZone):
                return zone, loc
    raise TransferError(
        f"{asset.id}: no verified copy on this machine to push; pull it first (`realm vault pull {asset.id}`)"
    )


def home_relpath(catalog: Catalog, asset: Asset) -> str:
    """Where the asset belongs in the home: its local location's path if it ever had one, else by kind."""
    loc = _location(catalog, asset.id, LOCAL)
    if loc is not None:
        return safe_relpath(loc.path)
    parts = [HOME_DIRS.get(asset.kind, asset.kind)]
    if asset.kind == "evalset" and {"skill", "version"} <= asset.meta.keys():
        parts += [str(asset.meta["skill"]), f"v{asset.meta['version']}"]
    return safe_relpath("/".join([*parts, asset.name]))


def _copy(
    catalog: Catalog,
    asset: Asset,
    files: list[FileEntry],
    *,
    direction: str,
    src: Zone,
    dst: Zone,
    dst_base: str,
    send: Callable[[FileEntry, str, Callable[[int], None]], None],
    progress: Progress | None,
) -> TransferResult:
    """The shared body of push and pull: skip what `dst` holds, stage, `send` each missing file
    (to its zone path in `dst`, reporting bytes to the meter), commit, then the location row."""
    t0 = time.monotonic()
    result = TransferResult(asset.id, asset.name, direction, src.id, dst.id, dst_base, "held")
    tlog = TransferLog(catalog.store)
    target = dst_base
    if asset.is_dir and not dst.files(dst_base):
        # A new folder is assembled out of sight and renamed when whole. One that is already there
        # (an earlier copy, corrupt or incomplete) is repaired in place: only its bad files are sent,
        # each still renamed into place only once verified.
        parent = str(PurePosixPath(dst_base).parent)
        target = stage_name(asset.name) if parent == "." else f"{parent}/{stage_name(asset.name)}"
    todo, result.files_skipped = _wanted(dst, asset, target, files)
    result.bytes_total = sum(f.size for f in todo)
    result.transfer_id = tlog.start(asset.id, src.id, dst.id, direction, result.bytes_total)
    meter = _Meter(tlog, result.transfer_id, result.bytes_total, progress)
    try:
        for f in todo:
            send(f, zone_path(asset, target, f), meter)
            result.files_moved += 1
        if target != dst_base:
            dst.move(target, dst_base)
        catalog.set_location(asset.id, dst.id, dst_base, "verified")
    except BaseException as exc:
        tlog.finish(result.transfer_id, "failed", meter.moved, f"{type(exc).__name__}: {exc}")
        raise
    result.bytes_moved = meter.moved
    result.status = "done" if todo else "held"  # held: the zone had every file, verified
    tlog.finish(result.transfer_id, "done", meter.moved)
    result.seconds = time.monotonic() - t0
    log.info(
        "%s %s %s -> %s: %d files, %d bytes moved, %d files already there",
        direction,
        asset.id,
        src.id,
        dst.id,
        result.files_moved,
        result.bytes_moved,
        result.files_skipped,
    )
    return result


def _noop(tlog: TransferLog, asset: Asset, src: str, dst: str, direction: str) -> int:
    """The row of a transfer that found everything in place (so the log shows the request)."""
    tid = tlog.start(asset.id, src, dst, direction, 0)
    tlog.finish(tid, "done", 0)
    return tid


# ---- push / pull ------------------------------------------------------------------------------------
def push(keeper_or_catalog: Any, ref: str, zone: str, *, progress: Progress | None = None) -> TransferResult:
    """Copy an asset to `zone`; bytes_moved is 0 when the zone already holds it."""
    catalog = _catalog(keeper_or_catalog)
    if zone == LOCAL:
        raise TransferError(f"zone {LOCAL!r} is the realm home: bring an asset home with `realm vault pull`")
    asset = catalog.resolve(ref)
    files = catalog.files(asset.id)
    dst = open_zone(catalog.store, zone)
    base = safe_relpath(asset.name)
    loc = _location(catalog, asset.id, zone)
    if loc is not None and loc.status == "verified" and _sizes_match(dst, loc.path, files):
        tid = _noop(TransferLog(catalog.store), asset, LOCAL, zone, "push")
        return TransferResult(asset.id, asset.name, "push", LOCAL, zone, loc.path, "held", transfer_id=tid)
    src, src_loc = _local_source(catalog, asset, exclude=zone)

    def send(f: FileEntry, rel: str, meter: Callable[[int], None]) -> None:
        path = src.path(zone_path(asset, src_loc.path, f))
        try:
            dst.put(path, rel, f.sha256, progress=meter)
        except ChecksumMismatch as exc:
            raise TransferError(
                f"{asset.id}: {f.relpath} did not arrive intact in zone {zone!r} ({exc}). If the copy in"
                f" zone {src.id!r} changed, `realm vault verify --zone {src.id}` marks it."
            ) from exc

    return _copy(
        catalog,
        asset,
        files,
        direction="push",
        src=src,
        dst=dst,
        dst_base=base,
        send=send,
        progress=progress,
    )


def pull(
    keeper_or_catalog: Any, ref: str, zone: str | None = None, *, progress: Progress | None = None
) -> TransferResult:
    """Bring an asset into the realm home from `zone`, or from the best zone holding a verified copy."""
    catalog = _catalog(keeper_or_catalog)
    asset = catalog.resolve(ref)
    files = catalog.files(asset.id)
    home = open_zone(catalog.store, LOCAL)
    target = home_relpath(catalog, asset)
    loc = _location(catalog, asset.id, LOCAL)
    if loc is not None and loc.status == "verified" and _sizes_match(home, loc.path, files):
        return TransferResult(asset.id, asset.name, "pull", LOCAL, LOCAL, loc.path, "held")
    locations = catalog.locations(asset.id)
    sources = [
        loc
        for loc in locations
        if loc.status == "verified" and loc.zone != LOCAL and (zone is None or loc.zone == zone)
    ]
    if not sources:
        held = ", ".join(f"{loc.zone} ({loc.status})" for loc in locations) or "none"
        where = f"zone {zone!r} holds" if zone else "no zone holds"
        raise TransferError(f"{asset.id}: {where} a verified copy to pull (locations: {held})")
    failures = []
    for loc in sources:
        try:
            src = open_zone(catalog.store, loc.zone)
        except ZoneError as exc:
            failures.append(f"{loc.zone}: {exc}")
            continue

        def send(f: FileEntry, rel: str, meter: Callable[[int], None], src=src, loc=loc) -> None:
            src.get(zone_path(asset, loc.path, f), home.path(rel), f.sha256, progress=meter)

        try:
            return _copy(
                catalog,
                asset,
                files,
                direction="pull",
                src=src,
                dst=home,
                dst_base=target,
                send=send,
                progress=progress,
            )
        except ChecksumMismatch as exc:
            catalog.mark_location(asset.id, loc.zone, "corrupt")
            failures.append(f"{loc.zone}: corrupt copy, marked ({exc})")
        except FileNotFoundError as exc:
            catalog.mark_location(asset.id, loc.zone, "corrupt")
            failures.append(f"{loc.zone}: incomplete copy, marked corrupt ({exc})")
        except ZoneUnavailable as exc:
            failures.append(f"{loc.zone}: {exc}")
        log.warning("pull %s from %s failed: %s", asset.id, loc.zone, failures[-1])
    raise TransferError(f"{asset.id}: no zone could deliver a verified copy: " + "; ".join(failures))


# ---- verify / remove --------------------------------------------------------------------------------
def _all_locations(catalog: Catalog, zone: str | None) -> list[tuple[Asset, Location]]:
    out, offset, page = [], 0, 1000
    while True:
        assets = catalog.search(limit=page, offset=offset)
        for asset in assets:
            out += [(asset, loc) for loc in catalog.locations(asset.id) if zone is None or loc.zone == zone]
        if len(assets) < page:
            return out
        offset += page


def check_copy(
    zone: Zone, asset: Asset, base: str, files: list[FileEntry], tick: Callable[[int], None]
) -> str:
    """Re-hash one copy: 'verified', 'corrupt' (a file differs or is absent) or 'missing' (none there)."""
    listing = zone.files(base)
    if not any(f.relpath in listing for f in files):
        return "missing"
    for f in files:
        got = listing.get(f.relpath)
        if got is None or got[0] != f.size:
            return "corrupt"
        if zone.hash(zone_path(asset, base, f), progress=tick) != f.sha256:
            return "corrupt"
    return "verified"


def verify(
    keeper_or_catalog: Any, zone: str | None = None, *, progress: Progress | None = None
) -> VerifyResult:
    """Re-hash every copy (in one zone, or all) and mark each location; `.ok` is False when any is bad."""
    catalog = _catalog(keeper_or_catalog)
    t0 = time.monotonic()
    if zone is not None:
        open_zone(catalog.store, zone)  # an unknown zone is an error, not an empty success
    todo = _all_locations(catalog, zone)
    total = sum(asset.size_bytes for asset, _ in todo)
    res = VerifyResult()
    zones: dict[str, Zone] = {}

    def tick(n: int) -> None:
        res.bytes_hashed += n
        if progress:
            progress(res.bytes_hashed, total)

    for asset, loc in todo:
        entry = {"asset_id": asset.id, "zone": loc.zone, "path": loc.path, "was": loc.status}
        try:
            if loc.zone not in zones:
                zones[loc.zone] = open_zone(catalog.store, loc.zone)
            status = check_copy(zones[loc.zone], asset, loc.path, catalog.files(asset.id), tick)
        except (ZoneError, OSError) as exc:
            res.unreachable.append({**entry, "error": str(exc)})
            continue
        res.checked += 1
        catalog.mark_location(asset.id, loc.zone, status)
        getattr(res, status).append({**entry, "status": status})
        if status != "verified":
            log.warning("verify: %s in zone %s is %s", asset.id, loc.zone, status)
    res.seconds = time.monotonic() - t0
    return res


def remove(keeper_or_catalog: Any, ref: str, zone: str, *, force: bool = False) -> dict[str, Any]:
    """Forget the copy in `zone` and delete its bytes. The catalog refuses the last verified copy
    (LastCopyError) unless `force`; the row goes first, so a failed delete never leaves a listed copy."""
    catalog = _catalog(keeper_or_catalog)
    asset = catalog.resolve(ref)
    loc = _location(catalog, asset.id, zone)
    if loc is None:
        raise TransferError(f"zone {zone!r} holds no copy of {asset.id}")
    z = open_zone(catalog.store, zone)
    overrode = catalog.remove_location(asset.id, zone, force=force)
    z.delete(safe_relpath(loc.path))
    out = {"asset_id": asset.id, "zone": zone, "path": loc.path, "removed": True}
    if overrode:  # --force went past assets that need this one: say so, never silently
        out |= {"needed_by": overrode, "warning": f"removed although {', '.join(overrode)} need it"}
    return out


def local_path(keeper_or_catalog: Any, asset_id: str) -> Path | None:
    """The absolute path of the verified copy in the home (what `ask_vault_first` hands out)."""
    return _catalog(keeper_or_catalog).local_path(asset_id)
