"""Model ids: what a client may name, and the checkpoint folder on this host that it means.

An id is `<hero>@<ref>` or a bare `<ref>`, where the hero is the config's hero name in lower case
(`dio`) and the ref is anything the vault resolves (vault.catalog.resolve_id: `champion` or any alias,
`latest`, `step-1200`, `1200`, a canonical checkpoint name, an asset id), or `base` for the hero's base
model when `hero.base_model` is set. The vault decides, every request (so moving `champion` moves the
next answer), and fetches a checkpoint this host lacks from the best zone (`ask_vault_first`). The
response's `model` is then the concrete checkpoint's canonical name, itself a valid id.

Two views of the vault, one interface: `LocalVault` (the keeper in-process, when the Oracle runs on
the realm's own host and has its home) and `RemoteVault` (`vault.client.VaultClient`, when it runs
alone on another host and finds the VaultKeeper through the hosts registry).

An adapter checkpoint (LoRA) is only half a model: the vault records the base model asset it needs
(vault/deps.py), and resolving the adapter fetches that base the same way, so an Oracle on a host
without the training host's base folder still serves it (`Target.base`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tavern.oracle.protocol import ModelNotFound, OracleError
from vault.deps import ADAPTER_BASE
from vault.errors import AssetNotFound, VaultError
from vault.ids import slug
from vault.ledger import created_ts

log = logging.getLogger("realm.oracle.ids")

BASE = "base"
MODEL_KINDS = ("checkpoint", "model")
LIST_LIMIT = 10_000  # newest checkpoints /v1/models lists (the Vault API's page limit)


@dataclass(frozen=True)
class Target:
    """What an id resolved to: the asset, its canonical name (the response's `model`) and local folder."""

    requested: str
    asset_id: str
    name: str
    path: Path
    kind: str
    step: int | None = None
    base: Path | None = None  # an adapter's base model folder on this host, fetched through the vault


class VaultView(Protocol):
    def checkpoints(self) -> list[dict[str, Any]]: ...
    def aliases(self) -> dict[str, dict[str, Any]]: ...
    # The asset's dict plus `needs` (vault/deps.py: what it needs, e.g. an adapter's base); AssetNotFound.
    def asset(self, ref: str) -> dict[str, Any]: ...
    def fetch(self, asset_id: str) -> Path: ...  # a verified local copy, fetched when needed
    def zone_roots(self) -> list[Path]: ...  # folders on this host that hold zone copies


class LocalVault:
    """The VaultKeeper in this process (the Oracle has the realm's home)."""

    def __init__(self, realm):
        from vault.keeper import VaultKeeper

        self.keeper = VaultKeeper(realm)
        self.realm = realm

    def checkpoints(self) -> list[dict[str, Any]]:
        return self.keeper.ledger.list(limit=LIST_LIMIT)

    def aliases(self) -> dict[str, dict[str, Any]]:
        return self.keeper.ledger.aliases()

    def asset(self, ref: str) -> dict[str, Any]:
        asset = self.keeper.catalog.resolve(ref).to_dict()
        return {**asset, "needs": self.keeper.catalog.dependencies(asset["id"])["needs"]}

    def fetch(self, asset_id: str) -> Path:
        return self.keeper.ask_vault_first(asset_id)

    def zone_roots(self) -> list[Path]:
        roots = [self.realm.home.root]
        for z in self.keeper.zones(free=False):
            if z["kind"] == "local":
                roots.append(Path(z["url"]))
        return roots


class RemoteVault:
    """The VaultKeeper over HTTP (the Oracle runs on another host); fetched assets land in its cache."""

    def __init__(self, client):
        self.client = client

    def checkpoints(self) -> list[dict[str, Any]]:
        return self.client.checkpoints(limit=LIST_LIMIT)

    def aliases(self) -> dict[str, dict[str, Any]]:
        return self.client.aliases()

    def asset(self, ref: str) -> dict[str, Any]:
        info = self.client.asset(ref)
        return {**info["asset"], "needs": info.get("needs", [])}

    def fetch(self, asset_id: str) -> Path:
        return self.client.ask_vault_first(asset_id)

    def zone_roots(self) -> list[Path]:
        roots = [Path(self.client.cache_dir)]
        for z in self.client.zones():
            if z["kind"] == "local":
                roots.append(Path(z["url"]))
        return roots


class ModelIds:
    """Resolves and lists model ids for one hero over one vault view."""

    def __init__(self, vault: VaultView, hero_name: str, base_model: str | None = None):
        self.vault = vault
        self.prefix = f"{hero_name.lower()}@"
        self.base_model = Path(base_model).expanduser() if base_model else None

    def ref_of(self, model_id: str) -> str:
        s = model_id.strip()
        return s[len(self.prefix) :] if s.lower().startswith(self.prefix) else s

    def resolve(self, model_id: str) -> Target:
        """The target of `model_id`, with a local folder (fetched first when only a zone holds it)."""
        ref = self.ref_of(model_id)
        if not ref:
            raise ModelNotFound(model_id, "empty reference", self.valid())
        if ref.lower() == BASE:
            return self._base(model_id)
        try:
            asset = self.vault.asset(ref)
        except AssetNotFound as exc:
            raise ModelNotFound(model_id, str(exc), self.valid()) from exc
        except VaultError as exc:
            raise OracleError(
                503, f"the vault cannot resolve {model_id!r}: {exc}", type="server_error"
            ) from exc
        if asset["kind"] not in MODEL_KINDS:
            raise ModelNotFound(model_id, f"{asset['id']} is a {asset['kind']}, not a model", self.valid())
        try:
            path = self.vault.fetch(asset["id"])
        except VaultError as exc:
            raise OracleError(
                503, f"{asset['id']}: no copy could be fetched to this host: {exc}", type="server_error"
            ) from exc
        base = self._adapter_base(asset)
        return Target(
            model_id, asset["id"], asset["name"], Path(path), asset["kind"], asset.get("step"), base
        )

    def _adapter_base(self, asset: dict[str, Any]) -> Path | None:
        """The local folder of the base model an adapter asset needs, fetched like the adapter (None
        for a full checkpoint, or an adapter the vault recorded no base for: its sidecar's path is
        then the only lead, arena.adapters.adapter_base)."""
        need = next((n for n in asset.get("needs", ()) if n["reason"] == ADAPTER_BASE), None)
        if need is None:
            return None
        try:
            return Path(self.vault.fetch(need["asset_id"]))
        except VaultError as exc:
            raise OracleError(
                503,
                f"{asset['id']} is a LoRA adapter of {need['asset_id']}, and no copy of that base model"
                f" could be fetched to this host: {exc}",
                type="server_error",
            ) from exc

    def _base(self, model_id: str) -> Target:
        if self.base_model is None:
            raise ModelNotFound(
                model_id, "this hero has no base model (hero.base_model is null)", self.valid()
            )
        if (self.base_model / "config.json").is_file():
            return Target(
                model_id,
                f"model_{slug(self.base_model.name)}",
                self.base_model.name,
                self.base_model,
                "model",
            )
        # Not on this host: the vault catalogues the base model as model_<slug> (vault.keeper.scan_extra).
        return self.resolve(f"model_{slug(self.base_model.name)}")

    def valid(self) -> list[str]:
        """Every id /v1/models lists: aliases first (dio@...), then canonical checkpoint names."""
        try:
            return [m["id"] for m in self.listing()]
        except VaultError:
            return []

    def listing(self) -> list[dict[str, Any]]:
        """/v1/models entries: every alias as `<hero>@alias`, the base model, every live checkpoint."""
        rows = self.vault.checkpoints()
        names = {r["asset_id"]: r["name"] for r in rows}
        out: list[dict[str, Any]] = []
        for alias, info in self.vault.aliases().items():
            out.append(
                {
                    "id": f"{self.prefix}{alias}",
                    "object": "model",
                    "created": 0,
                    "owned_by": "realm",
                    "alias": alias,
                    "asset_id": info["asset_id"],
                    "checkpoint": names.get(info["asset_id"], info["asset_id"]),
                }
            )
        if self.base_model is not None:
            out.append(
                {
                    "id": f"{self.prefix}{BASE}",
                    "object": "model",
                    "created": 0,
                    "owned_by": "realm",
                    "checkpoint": self.base_model.name,
                }
            )
        for r in rows:
            out.append(
                {
                    "id": r["name"],
                    "object": "model",
                    "created": int(created_ts(r) or 0),
                    "owned_by": "realm",
                    "asset_id": r["asset_id"],
                    "step": r["step"],
                    "aliases": r.get("aliases", []),
                    "train_loss": r.get("train_loss"),
                    "val_loss": r.get("val_loss"),
                }
            )
        return out
