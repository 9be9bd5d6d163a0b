"""Adapter checkpoints depend on their base model (issue #17): the vault records it, and keeps the base.

Real SQLite in temporary homes and real folders: a small base model folder (config, weights and
tokenizer files), and adapter checkpoint folders in the layout arena/checkpoints.py writes under the
lora profile (adapter_config.json + adapter_model.safetensors, no model.safetensors) with the sidecar's
`hero` mapping naming the base and its tree digest. A zone is a real folder; the CLI runs as a process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import orjson
import pytest

from tests.vault_helpers import make_checkpoint, vault_cli
from vault.catalog import Catalog
from vault.deps import DependencyError
from vault.identity import identify
from vault.keeper import VaultKeeper
from vault.ledger import SIDECAR, Ledger
from vault.retention import RetentionPolicy, apply, plan
from vault.schema import migrations as vault_migrations
from vault.store import Store


def make_base(parent: Path, name: str = "Qwen3-Tiny") -> Path:
    """A small Hugging Face-like model folder."""
    base = parent / name
    base.mkdir(parents=True)
    (base / "config.json").write_bytes(b'{"model_type": "qwen3", "hidden_size": 32}')
    (base / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (base / "tokenizer.json").write_bytes(b'{"vocab": {"a": 0}}')
    return base


def hero(base: Path | None, profile: str) -> dict:
    """The sidecar's `hero` mapping, as arena.checkpoints.hero_mapping writes it."""
    return {
        "preset": "qwen3-tiny" if base else None,
        "profile": profile,
        "base_model": str(base.resolve()) if base else None,
        "base_sha256": identify(base).digest if base else None,
        "trainable_params": 1000 if profile != "full" else 50000,
        "total_params": 50000,
    }


def make_adapter(models: Path, step: int, base: Path, *, ts: float | None = None) -> tuple[Path, dict]:
    """A LoRA checkpoint folder: the adapter files, not the full weights, and a sidecar naming its base."""
    folder, sidecar = make_checkpoint(models, step, ts=ts)
    (folder / "model.safetensors").unlink()
    (folder / "adapter_config.json").write_bytes(
        orjson.dumps({"peft_type": "LORA", "r": 16, "base_model_name_or_path": str(base.resolve())})
    )
    (folder / "adapter_model.safetensors").write_bytes(step.to_bytes(8, "little") * 64)
    sidecar["hero"] = hero(base, "lora")
    (folder / SIDECAR).write_bytes(orjson.dumps(sidecar))
    return folder, sidecar


def full_checkpoint(
    models: Path, step: int, base: Path | None, *, ts: float | None = None
) -> tuple[Path, dict]:
    """A full fine-tuning checkpoint (all weights); its sidecar may still name the folder it started from."""
    folder, sidecar = make_checkpoint(models, step, ts=ts)
    sidecar["hero"] = hero(base, "full")
    (folder / SIDECAR).write_bytes(orjson.dumps(sidecar))
    return folder, sidecar


def land(realm, folder: Path, sidecar: dict):
    return Ledger(realm.store, realm.events).land(folder, sidecar, Catalog(realm.store, realm.home.root))


def deps_rows(realm) -> list[tuple[str, str, str]]:
    rows = realm.store.query("SELECT asset_id, needs_asset_id, reason FROM asset_deps ORDER BY asset_id")
    return [(r["asset_id"], r["needs_asset_id"], r["reason"]) for r in rows]


def test_landing_adapters_registers_their_base_once_and_records_each_dependency(realm, tmp_path):
    base = make_base(tmp_path / "bases")
    for step in (100, 200):
        land(realm, *make_adapter(realm.home.models, step, base))
    base_id = "model_qwen3_tiny"  # the id `realm vault scan` and the Oracle's dio@base give this folder
    assert deps_rows(realm) == [
        ("checkpoint_100", base_id, "adapter base"),
        ("checkpoint_200", base_id, "adapter base"),
    ]
    keeper = VaultKeeper(realm)
    b = keeper.asset(base_id)
    assert (b["asset"]["kind"], b["asset"]["digest"]) == ("model", identify(base).digest)
    assert b["local_path"] == str(base.resolve()) and b["best"]["status"] == "verified"
    assert [d["asset_id"] for d in b["needed_by"]] == ["checkpoint_100", "checkpoint_200"]
    assert all(d["live"] for d in b["needed_by"]) and b["needs"] == []
    a = keeper.asset(200)
    assert a["asset"]["base_asset"] == base_id
    assert [(d["asset_id"], d["live"], d["zones"]) for d in a["needs"]] == [(base_id, True, ["local"])]

    # A full checkpoint holds every weight: naming the folder it started from is not a dependency,
    # and neither is DIO's (no base). Landing the same step again replaces what it needed.
    land(realm, *full_checkpoint(realm.home.models, 300, base))
    land(realm, *full_checkpoint(realm.home.models, 400, None))
    assert [r[0] for r in deps_rows(realm)] == ["checkpoint_100", "checkpoint_200"]
    assert keeper.asset(300)["asset"]["base_asset"] is None

    # The sidecar's digest matches the catalogued base, so the base folder is not read again: a
    # landing with the folder moved away (another host's path) still records the dependency.
    folder, sidecar = make_adapter(realm.home.models, 500, base)
    base.rename(tmp_path / "elsewhere")
    land(realm, folder, sidecar)
    assert ("checkpoint_500", base_id, "adapter base") in deps_rows(realm)


def test_a_new_base_is_read_once_by_the_arena_and_the_vault_together(realm, tmp_path, monkeypatch):
    """The arena digests a new base for the adapter's sidecar; landing that adapter then registers
    the base in the vault without reading its bytes a second time (a 14B base is ~30 GB)."""
    from arena.checkpoints import base_digest
    from vault import identity

    base = make_base(tmp_path / "bases", "Fresh-Base")
    reads: list[str] = []
    real = identity.hash_file

    def counting(p, *a, **kw):
        reads.append(Path(p).relative_to(base).as_posix() if Path(p).is_relative_to(base) else "other")
        return real(p, *a, **kw)

    monkeypatch.setattr(identity, "hash_file", counting)
    digest = base_digest(str(base.resolve()))
    assert sorted(reads) == ["config.json", "model.safetensors", "tokenizer.json"]
    folder, sidecar = make_checkpoint(realm.home.models, 700)
    (folder / "model.safetensors").unlink()
    (folder / "adapter_config.json").write_bytes(
        orjson.dumps({"peft_type": "LORA", "base_model_name_or_path": str(base.resolve())})
    )
    sidecar["hero"] = {"profile": "lora", "base_model": str(base.resolve()), "base_sha256": digest}
    (folder / SIDECAR).write_bytes(orjson.dumps(sidecar))
    reads.clear()
    land(realm, folder, sidecar)
    assert ("checkpoint_700", "model_fresh_base", "adapter base") in deps_rows(realm)
    assert set(reads) == {"other"}  # the adapter's own files, none of the base's
    assert VaultKeeper(realm).asset("model_fresh_base")["asset"]["digest"] == digest
    # A changed file is read again, and only that one.
    (base / "tokenizer.json").write_bytes(b'{"vocab": {"b": 1}}')
    reads.clear()
    assert identify(base).digest != digest and reads == ["tokenizer.json"]


def test_a_scan_or_a_reconcile_records_the_dependency_of_an_adapter_it_finds(realm, tmp_path):
    base = make_base(tmp_path / "bases", "SmolBase")
    make_adapter(realm.home.models, 100, base)  # on disk, never landed (a crash before landing)
    Ledger(realm.store).reconcile(realm.home.models, Catalog(realm.store, realm.home.root))
    make_adapter(realm.home.models, 200, base)
    Catalog(realm.store, realm.home.root).scan()
    assert deps_rows(realm) == [
        ("checkpoint_100", "model_smolbase", "adapter base"),
        ("checkpoint_200", "model_smolbase", "adapter base"),
    ]


def checkpoint_base(realm, tmp_path) -> tuple[Path, Path, Path]:
    """A full checkpoint at step 50 used as the base of two adapter checkpoints, 100 and 200."""
    t0 = time.time() - 3 * 3600
    base, side = full_checkpoint(realm.home.models, 50, None, ts=t0)
    land(realm, base, side)
    a100 = make_adapter(realm.home.models, 100, base, ts=t0 + 3600)
    a200 = make_adapter(realm.home.models, 200, base, ts=t0 + 7200)
    for folder, sidecar in (a100, a200):
        land(realm, folder, sidecar)
    return base, a100[0], a200[0]


def test_retention_removes_an_old_adapter_but_never_the_base_a_kept_adapter_needs(realm, tmp_path):
    base, a100, a200 = checkpoint_base(realm, tmp_path)
    assert [r[1] for r in deps_rows(realm)] == ["checkpoint_50", "checkpoint_50"]
    keeper = VaultKeeper(realm)
    policy = RetentionPolicy(keep_last=1, tiers=())
    p = plan(keeper.ledger, keeper.catalog, realm.home.models, policy)
    assert {d.step: d.reasons for d in p.keep} == {50: ["needed by checkpoint_200"], 200: ["last 1"]}
    assert [d.step for d in p.drop] == [100]
    res = apply(p, keeper.ledger, keeper.catalog, force=True)  # force: 100 is its last copy
    assert res.deleted == [a100.name] and res.needed == []
    assert base.is_dir() and a200.is_dir() and not a100.exists()
    assert deps_rows(realm) == [("checkpoint_200", "checkpoint_50", "adapter base")]
    assert [d["asset_id"] for d in keeper.asset("checkpoint_50")["needed_by"]] == ["checkpoint_200"]

    # With no adapter left to keep it, the base is a checkpoint like any other for retention.
    keeper.delete(200, force=True)
    p = plan(keeper.ledger, keeper.catalog, realm.home.models, RetentionPolicy(keep_last=0, tiers=()))
    assert [d.step for d in p.drop] == [50]


def test_removing_a_needed_base_is_refused_naming_its_dependants_until_they_are_gone(realm, tmp_path):
    from vault.zones import add_zone

    base, a100, a200 = checkpoint_base(realm, tmp_path)
    (tmp_path / "nas").mkdir()
    add_zone(realm.store, "nas", str(tmp_path / "nas"))
    keeper = VaultKeeper(realm)
    keeper.push("checkpoint_50", "nas")

    # The home's copy is the one the adapters' adapter_config.json points at: refused, even though
    # the NAS holds another copy; so is forgetting the asset. The CLI says the same, exit 1.
    with pytest.raises(DependencyError, match=r"checkpoint_50 is needed by checkpoint_100, checkpoint_200"):
        keeper.delete("checkpoint_50")
    with pytest.raises(DependencyError, match="checkpoint_100, checkpoint_200"):
        keeper.catalog.forget("checkpoint_50")
    proc = vault_cli(realm.home.root, "remove", "checkpoint_50", "local")
    assert proc.returncode == 1 and "needed by checkpoint_100, checkpoint_200" in proc.stderr, proc.stderr
    assert base.is_dir() and keeper.catalog.local_path("checkpoint_50") == base

    # A spare copy in another zone may go (the home keeps one); the last copy anywhere may not.
    assert "needed_by" not in keeper.delete("checkpoint_50", "nas")
    keeper.push("checkpoint_50", "nas")

    # Once every dependant is deleted, the base is removable again (and not removed by itself).
    for step in (100, 200):
        keeper.delete(step, force=True)
    assert deps_rows(realm) == [] and base.is_dir()
    out = keeper.delete("checkpoint_50")  # no force: the NAS copy stays, and nothing needs it
    assert out == {"asset_id": "checkpoint_50", "zone": "local", "deleted": True} and not base.exists()


def test_a_forced_removal_goes_past_the_dependants_and_says_so(realm, tmp_path):
    base, a100, _ = checkpoint_base(realm, tmp_path)
    keeper = VaultKeeper(realm)
    out = keeper.delete("checkpoint_50", force=True)
    assert out["needed_by"] == ["checkpoint_100", "checkpoint_200"]
    assert "forced" in out["warning"] and not base.exists()
    # The adapters still say what they need, and that nothing holds it any more.
    needs = keeper.asset(100)["needs"]
    assert [(d["asset_id"], d["live"]) for d in needs] == [("checkpoint_50", False)]


def test_the_cli_says_when_force_went_past_dependants(realm, tmp_path):
    checkpoint_base(realm, tmp_path)
    keeper = VaultKeeper(realm)
    from vault.zones import add_zone

    # `realm vault remove --force` of the base's home copy goes through and warns on stderr.
    (tmp_path / "nas").mkdir()
    add_zone(realm.store, "nas", str(tmp_path / "nas"))
    keeper.push("checkpoint_50", "nas")
    proc = vault_cli(realm.home.root, "remove", "checkpoint_50", "nas", "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "needed_by" not in json.loads(proc.stdout)  # a spare copy: nobody was forced past
    keeper.push("checkpoint_50", "nas")
    proc = vault_cli(realm.home.root, "remove", "checkpoint_50", "local", "--force")
    assert proc.returncode == 0 and "warning: removed although checkpoint_100, checkpoint_200" in proc.stderr


def test_a_database_from_before_the_dependency_table_gains_it(tmp_path):
    home = tmp_path / "old-home"
    home.mkdir()
    store = Store.for_home(home)
    with store.tx():  # the vault's tables as they were before issue #17
        vault_migrations.apply(store.db(), stop_before="m006_asset_deps")
    assert store.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'asset_deps'") == 0
    old, side = make_checkpoint(home / "models", 10)
    Ledger(store).record(old, side)
    Catalog(store, home).register(old, kind="checkpoint")

    applied = store.migrate()
    assert "vault:m006_asset_deps" in applied
    assert store.scalar("SELECT count(*) FROM asset_deps") == 0
    assert Catalog(store, home).get("checkpoint_10") is not None  # what was there stays

    base = make_base(tmp_path / "bases")
    folder, sidecar = make_adapter(home / "models", 20, base)
    Ledger(store).land(folder, sidecar, Catalog(store, home))
    rows = store.query("SELECT asset_id, needs_asset_id FROM asset_deps")
    assert rows == [{"asset_id": "checkpoint_20", "needs_asset_id": "model_qwen3_tiny"}]
    assert os.path.isdir(base)
    store.close()
