"""`VaultClient(url)`: the VaultKeeper's interface over HTTP, for remote hosts and other services.

The method names and arguments follow `vault.keeper.VaultKeeper` (locate, asset, search, checkpoints,
ledger, best, summary, aliases, set_alias, remove_alias, zones, zone, push, pull, fetch, transfer,
register, scan, delete, export) and return the JSON the API documents (docs/API.md). Errors come back
typed: the API's error `type` maps to the vault's own classes (an unknown asset raises
`vault.errors.AssetNotFound` here as in-process, an unknown zone `vault.zones.ZoneNotFound`), and
anything else raises `VaultAPIError` with the status and body; `VaultUnavailable` when the keeper
cannot be reached.

`ask_vault_first(ref)` returns a path on THIS machine, fetching the asset when needed, in this order:
the keeper's own copy when it is readable here (the keeper runs on this host), then a copy already
fetched into the client's cache, then the zones holding a verified copy, best first (the keeper's
home through `GET /api/files`, then local folders or a mounted NAS, officers, object stores). Every
file is streamed, checked against the catalog's sha256 (`vault.zones.write_verified`), staged under
a `.partial-` name and renamed into the cache only when the whole asset arrived, so a killed fetch
leaves nothing that looks complete, and a retry skips the files already staged intact.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from vault.errors import AliasError, AssetNotFound, LastCopyError, LedgerError, VaultError

log = logging.getLogger("realm.vault.client")

TOKEN_HEADER = "X-Realm-Token"
CACHE_ENV = "REALM_VAULT_CACHE"
# "0": never use the keeper's own paths, even where this host can read them (see VaultClient).
KEEPER_PATHS_ENV = "REALM_VAULT_KEEPER_PATHS"


class VaultAPIError(VaultError):
    """The API answered with an error that has no closer class here; `.status` and `.body` hold it."""

    def __init__(self, status: int, body: dict[str, Any]):
        self.status, self.body = status, body
        super().__init__(f"vault API {status}: {body.get('message') or body}")


class VaultUnavailable(VaultAPIError):
    """The keeper could not be reached (not running, wrong URL, network down)."""

    def __init__(self, url: str, exc: Exception):
        super().__init__(0, {"message": f"VaultKeeper at {url} unreachable: {exc}", "type": "Unavailable"})


def _typed(status: int, body: dict[str, Any]) -> Exception:
    from vault import zones
    from vault.deps import DependencyError

    kind, msg = body.get("type"), str(body.get("message") or "")
    if kind == "AssetNotFound":
        return AssetNotFound(str(body.get("ref", "")), msg, list(body.get("close") or []))
    simple: dict[str, type[Exception]] = {
        "AliasError": AliasError,
        "LastCopyError": LastCopyError,
        "DependencyError": DependencyError,
        "LedgerError": LedgerError,
        "ZoneNotFound": zones.ZoneNotFound,
        "UnsafePath": zones.UnsafePath,
    }
    if kind in simple:
        return simple[kind](msg)
    return VaultAPIError(status, body)


def default_cache() -> Path:
    """Where fetched assets land on this host: $REALM_VAULT_CACHE, else ~/.cache/realm/vault."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "realm" / "vault")


class VaultClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60,
        cache_dir: str | Path | None = None,
        use_keeper_paths: bool | None = None,
    ):
        """`token` defaults to $REALM_TOKEN. `use_keeper_paths=False` never hands out the keeper's
        own path even when this host can read it (a slow network mount, a container with other
        mounts): assets are then always copied into `cache_dir`. None: True unless
        $REALM_VAULT_KEEPER_PATHS is "0"."""
        self.url = url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"
        self.token = token if token is not None else os.environ.get("REALM_TOKEN")
        self.timeout = timeout
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache()
        if use_keeper_paths is None:
            use_keeper_paths = os.environ.get(KEEPER_PATHS_ENV, "1").strip() != "0"
        self.use_keeper_paths = use_keeper_paths
        self._session = requests.Session()

    @classmethod
    def for_service(cls, host: str | None = None, *, config: Any = None, **kw: Any) -> VaultClient:
        """A client for the `vault` service the hosts registry names (sentinels/hosts.py)."""
        from sentinels.hosts import get_service_url

        return cls(get_service_url("vault", host, config=config), **kw)

    # ---- plumbing --------------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, *, params: dict | None = None, json: Any = None, stream: bool = False
    ):
        headers = {TOKEN_HEADER: self.token} if self.token else {}
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._session.request(
                method,
                self.url + path,
                params=params,
                json=json,
                headers=headers,
                timeout=self.timeout,
                stream=stream,
            )
        except requests.RequestException as exc:
            raise VaultUnavailable(self.url, exc) from exc
        if resp.status_code >= 400:
            try:
                body = resp.json().get("error") or {}
            except ValueError:
                body = {"message": resp.text[:300]}
            resp.close()
            raise _typed(resp.status_code, body if isinstance(body, dict) else {"message": str(body)})
        return resp if stream else resp.json()

    @staticmethod
    def _ref(ref: str | int) -> str:
        return quote(str(ref), safe="")

    # ---- the keeper's interface ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def is_available(self) -> bool:
        try:
            return self.health().get("status") == "ok"
        except VaultAPIError:
            return False

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/api/stats")

    def locate(self, ref: str | int) -> dict[str, Any]:
        return self._call("GET", f"/api/locate/{self._ref(ref)}")

    def asset(self, ref: str | int) -> dict[str, Any]:
        return self._call("GET", f"/api/asset/{self._ref(ref)}")

    def search(
        self, kind: str | None = None, q: str | None = None, limit: int = 100, offset: int = 0
    ) -> list:
        return self._call(
            "GET", "/api/search", params={"type": kind, "q": q, "limit": limit, "offset": offset}
        )["assets"]

    def checkpoints(self, *, limit: int = 100, offset: int = 0, include_deleted: bool = False) -> list:
        params = {"limit": limit, "offset": offset, "include_deleted": int(include_deleted)}
        return self._call("GET", "/api/checkpoints", params=params)["checkpoints"]

    def ledger(self, *, limit: int = 100, offset: int = 0, skill: str | None = None, **filters: Any) -> list:
        params = {"limit": limit, "offset": offset, "skill": skill, **filters}
        return self._call("GET", "/api/ledger", params=params)["checkpoints"]

    def ledger_get(self, ref: str | int) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"/api/ledger/{self._ref(ref)}")
        except AssetNotFound:
            return None

    def latest(self) -> dict[str, Any] | None:
        return self.ledger_get("latest")

    def best(self, metric: str = "val_loss", direction: str | None = None) -> dict[str, Any] | None:
        try:
            return self._call("GET", "/api/ledger/best", params={"metric": metric, "direction": direction})
        except AssetNotFound:
            return None

    def summary(self) -> dict[str, Any]:
        return self._call("GET", "/api/ledger/summary")

    def aliases(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/api/aliases")["aliases"]

    def alias(self, name: str) -> str | None:
        try:
            return self._call("GET", f"/api/aliases/{self._ref(name)}")["asset_id"]
        except AssetNotFound:
            return None

    def alias_history(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/aliases/{self._ref(name)}/history", params={"limit": limit})[
            "history"
        ]

    def set_alias(self, name: str, ref: str | int, *, by: str = "client", reason: str = "") -> dict[str, Any]:
        return self._call(
            "PUT", f"/api/aliases/{self._ref(name)}", json={"asset": str(ref), "by": by, "reason": reason}
        )

    def remove_alias(self, name: str, *, by: str = "client", reason: str = "") -> None:
        self._call("DELETE", f"/api/aliases/{self._ref(name)}", json={"by": by, "reason": reason})

    def zones(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/zones")["zones"]

    def zone(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/zones/{self._ref(name)}")

    def push(self, ref: str | int, zone: str) -> dict[str, Any]:
        """The keeper pushes its copy to `zone` (bytes_moved 0 when the zone already holds it)."""
        return self.transfer(ref, "local", zone)

    def pull(self, ref: str | int, zone: str | None = None) -> dict[str, Any]:
        """The keeper pulls the asset into its own home (from `zone`, or the best zone)."""
        return self.fetch(ref, zone)

    def transfer(self, ref: str | int, src: str = "local", dst: str = "local") -> dict[str, Any]:
        return self._call("POST", "/api/transfer", json={"asset": str(ref), "from": src, "to": dst})

    def fetch(self, ref: str | int, zone: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/api/fetch", json={"asset": str(ref), "zone": zone})

    def register(
        self, relpath: str, *, kind: str | None = None, asset_id: str | None = None, meta=None
    ) -> dict:
        body = {"path": relpath, "kind": kind, "asset_id": asset_id, "meta": meta}
        return self._call("POST", "/api/register", json={k: v for k, v in body.items() if v is not None})[
            "asset"
        ]

    def scan(self) -> dict[str, Any]:
        return self._call("POST", "/api/scan")

    def delete(self, ref: str | int, zone: str = "local", *, force: bool = False) -> dict[str, Any]:
        return self._call("DELETE", f"/api/asset/{self._ref(ref)}", json={"zone": zone, "force": force})

    def export(self, ref: str | int, dst: str | Path) -> Path:
        """Download the asset as a tar archive to `dst` (streamed)."""
        dst = Path(dst)
        with self._call("GET", f"/api/export/{self._ref(ref)}", stream=True) as resp:
            tmp = dst.with_name(f".partial-{dst.name}")
            with open(tmp, "wb") as out:
                for chunk in resp.iter_content(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dst)
        return dst

    def training_status(self) -> dict[str, Any]:
        return self._call("GET", "/api/training/status")

    def training_queue(self) -> dict[str, Any]:
        return self._call("GET", "/api/training/queue")

    def control(self, action: str) -> dict[str, Any]:
        return self._call("POST", "/api/training/control", json={"action": action})

    # ---- ask vault first ----------------------------------------------------------------------------
    def ask_vault_first(self, ref: str | int, *, fallback: str | Path | None = None) -> Path:
        """A local path holding the asset, fetched from the best zone when this host has no copy.

        `fallback` is returned when the keeper cannot be reached and the path exists (the seed's
        "ask the vault first, else the path you knew"); any other failure raises."""
        try:
            info = self.asset(ref)
        except VaultUnavailable:
            if fallback is not None and Path(fallback).exists():
                log.warning("VaultKeeper at %s unreachable; using the fallback %s", self.url, fallback)
                return Path(fallback)
            raise
        asset, files = info["asset"], info["files"]
        keeper_copy = info.get("local_path")
        if self.use_keeper_paths and keeper_copy and _holds(Path(keeper_copy), asset, files):
            return Path(keeper_copy)  # the keeper runs on this host: its own copy is local
        cached = self.cache_dir / asset["name"]
        if _holds(cached, asset, files):
            return cached
        errors = []
        for loc in info["locations"]:
            if loc["status"] != "verified":
                continue
            try:
                self._fetch_from(loc, asset, files, cached)
                return cached
            except (VaultError, OSError, requests.RequestException) as exc:
                errors.append(f"{loc['zone']}: {exc}")
                log.warning("fetch %s from zone %s failed: %s", asset["id"], loc["zone"], exc)
        held = "; ".join(errors) or "no zone holds a verified copy"
        raise VaultError(f"{asset['id']}: could not fetch it to this host ({held})")

    def _fetch_from(self, loc: dict[str, Any], asset: dict[str, Any], files: list[dict], dst: Path) -> None:
        """Copy every file of `asset` from one zone's copy into a staging folder, then rename it to `dst`."""
        from vault.zones import LocalZone, stage_name, zone_from_row

        zone = None
        if loc["zone"] != "local":  # "local" is the keeper's home: only the keeper can read it
            zone = zone_from_row(self.zone(loc["zone"]))
            if isinstance(zone, LocalZone) and not zone.root.is_dir():
                raise VaultError(f"zone folder {zone.root} is not mounted on this host")
        dst.parent.mkdir(parents=True, exist_ok=True)
        stage = dst.parent / stage_name(dst.name)
        for f in files:
            out = stage / f["relpath"] if asset["is_dir"] else stage
            if _intact(out, f):
                continue  # staged by an earlier, interrupted fetch
            if zone is None:
                self._get_from_keeper(asset["id"], f["relpath"], out, f["sha256"])
            else:
                zone.get(
                    f"{loc['path']}/{f['relpath']}" if asset["is_dir"] else loc["path"], out, f["sha256"]
                )
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        os.replace(stage, dst)
        log.info("fetched %s from zone %s into %s", asset["id"], loc["zone"], dst)

    def _get_from_keeper(self, asset_id: str, rel: str, out: Path, sha256: str) -> None:
        from vault.zones import write_verified

        with self._call(
            "GET", f"/api/files/{self._ref(asset_id)}", params={"path": rel}, stream=True
        ) as resp:
            size = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
            write_verified(resp.iter_content(1 << 20), out, sha256, size=size)


def _intact(path: Path, f: dict[str, Any]) -> bool:
    from vault.identity import hash_file

    return path.is_file() and path.stat().st_size == f["size"] and hash_file(path)[0] == f["sha256"]


def _holds(path: Path, asset: dict[str, Any], files: list[dict[str, Any]]) -> bool:
    """True when `path` holds every file of the asset at its catalog size (a cheap check: the bytes
    were verified by sha256 when they arrived; `realm vault verify` re-hashes)."""
    if not path.exists():
        return False
    if not asset["is_dir"]:
        return path.is_file() and path.stat().st_size == files[0]["size"]
    return all(
        (path / f["relpath"]).is_file() and (path / f["relpath"]).stat().st_size == f["size"] for f in files
    )
