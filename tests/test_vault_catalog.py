"""The vault catalog: content identity, id resolution in every form, scan, locations, the CLI.

Real SQLite files in temporary homes and real folders; the CLI runs in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import sqlite_utils

from tests.vault_helpers import SHARED_FILES, make_checkpoint, vault_cli
from vault.catalog import Catalog
from vault.errors import AssetNotFound, LastCopyError
from vault.identity import hash_file, identify
from vault.ledger import Ledger

QWEN = "Qwen3-0.6B"


def _populate(home: Path) -> dict[str, Path]:
    """A home holding one of each asset kind, laid out as the realm lays them out."""
    cp, _ = make_checkpoint(home / "models", 175000, train_loss=0.5)
    model = home / "models" / QWEN
    model.mkdir(parents=True)
    (model / "config.json").write_bytes(SHARED_FILES["config.json"])
    (model / "model.safetensors").write_bytes(b"\x01" * 5000)
    data = home / "queue" / "normal" / "000001__train_syllo_abc.jsonl"
    data.write_text('{"text": "hello"}\n')
    (home / "queue" / "normal" / "000001__train_syllo_abc.jsonl.meta.json").write_text("{}")
    conf = home / "configs" / "config.yaml"
    conf.parent.mkdir()
    conf.write_text("a: 1\n")
    ev = home / "evalsets" / "bin" / "v1" / "level-01.jsonl"
    ev.parent.mkdir(parents=True)
    ev.write_text('{"prompt": "p", "expected": "e"}\n')
    return {"checkpoint": cp, "model": model, "data": data, "config": conf, "evalset": ev}


def test_identity_is_sha256_per_file_and_a_content_only_tree_digest(tmp_path):
    d = tmp_path / "asset"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(os.urandom(3 << 20))  # several hash chunks
    (d / "sub" / "b.txt").write_text("b")
    (d / ".ledger.json").write_text("{}")  # hidden files are part of the asset
    (d / ".tmp-upload").write_text("in flight")  # writers' temp names are not
    ident = identify(d)
    assert [f.relpath for f in ident.files] == [".ledger.json", "a.bin", "sub/b.txt"]
    assert ident.is_dir and ident.size_bytes == (3 << 20) + 1 + 2
    assert hash_file(d / "a.bin") == (hashlib.sha256((d / "a.bin").read_bytes()).hexdigest(), 3 << 20)

    os.utime(d / "sub" / "b.txt", ns=(1, 1))  # mtimes are not identity
    assert identify(d).digest == ident.digest
    (d / "sub" / "b.txt").rename(d / "sub" / "c.txt")  # names are
    assert identify(d).digest != ident.digest
    single = identify(d / "a.bin")
    assert not single.is_dir and single.files[0].relpath == "a.bin"


def test_every_id_form_resolves_and_unknown_ids_say_what_is_valid(realm):
    paths = _populate(realm.home.root)
    cat = Catalog(realm.store, realm.home.root)
    res = cat.scan()
    assert sorted(res.registered) == [
        "checkpoint_175000",
        "config_config",
        "data_000001_train_syllo_abc",
        "evalset_bin_v1_l1",
        "model_qwen3_0.6b",
    ]
    Ledger(realm.store).rebuild(realm.home.models)
    Ledger(realm.store).set_alias("champion", 175000, by="test", reason="the only one")
    canonical = paths["checkpoint"].name
    for ref in (
        "checkpoint_175000",
        175000,
        "175000",
        "step-175000",
        "checkpoint-175000",
        canonical,
        "latest",
        "champion",
    ):
        assert cat.resolve(ref).id == "checkpoint_175000", ref
    assert cat.resolve("model_qwen3_0.6b").name == QWEN
    assert cat.resolve("data_000001_train_syllo_abc").kind == "data"
    assert cat.resolve("config_config").kind == "config"
    assert cat.resolve("evalset_bin_v1_l1").meta == {"skill": "bin", "version": "1", "level": 1}

    with pytest.raises(AssetNotFound) as err:
        cat.resolve("model_qwen3_0.6")
    assert "model_qwen3_0.6b" in err.value.close
    assert "valid forms" in str(err.value) and "checkpoint_<step>" in str(err.value)
    with pytest.raises(AssetNotFound) as err:
        cat.resolve("step-175001")
    assert err.value.close[0] == "checkpoint_175000"


def test_locate_orders_copies_best_first_and_knows_the_local_path(realm):
    paths = _populate(realm.home.root)
    cat = Catalog(realm.store, realm.home.root)
    cat.scan()
    loc = cat.locate("model_qwen3_0.6b")
    assert loc.local_path == paths["model"]
    assert [(x.zone, x.status, x.path) for x in loc.locations] == [("local", "verified", f"models/{QWEN}")]
    assert loc.best.zone == "local"
    assert loc.to_dict()["asset"]["file_count"] == 2


def test_scan_is_idempotent_and_rehashes_only_what_changed(realm):
    home = realm.home.root
    paths = _populate(home)
    make_checkpoint(home / "models", 176000)
    cat = Catalog(realm.store, home)
    first = cat.scan()
    assert len(first.registered) == 6 and first.bytes_hashed > 0 and not first.errors

    again = cat.scan()
    assert (again.registered, again.updated, again.unchanged, again.bytes_hashed) == ([], [], 6, 0)

    # Identical files across checkpoints are recognised by their hash.
    sha = hashlib.sha256(SHARED_FILES["tokenizer.json"]).hexdigest()
    assert {r["asset_id"] for r in cat.with_file(sha)} == {"checkpoint_175000", "checkpoint_176000"}

    data = paths["data"]
    data.write_text('{"text": "changed"}\n')
    changed = cat.scan()
    assert changed.updated == ["data_000001_train_syllo_abc"]
    assert changed.bytes_hashed == data.stat().st_size  # nothing else was read again

    # A quest moving between queue folders keeps its id; its location follows it.
    moved = home / "queue" / "processing" / data.name
    data.rename(moved)
    assert cat.scan().updated == ["data_000001_train_syllo_abc"]
    assert cat.locate("data_000001_train_syllo_abc").best.path == f"queue/processing/{data.name}"

    paths["config"].unlink()
    gone = cat.scan()
    assert gone.missing == ["config_config"]
    assert [x.status for x in cat.locations("config_config")] == ["missing"]


def test_rescan_of_a_large_home_reads_no_file_again(realm):
    # The fast path: 200 checkpoints re-scanned hash 0 bytes (sizes and mtimes match their rows).
    for step in range(1, 201):
        make_checkpoint(realm.home.models, step * 10, weights=64)
    cat = Catalog(realm.store, realm.home.root)
    assert len(cat.scan().registered) == 200
    again = cat.scan()
    assert (again.unchanged, again.bytes_hashed, again.updated) == (200, 0, [])


def test_the_last_verified_copy_is_not_removed_without_force(realm, tmp_path):
    from vault.zones import add_zone

    folder, _ = make_checkpoint(realm.home.models, 100)
    cat = Catalog(realm.store, realm.home.root)
    cat.register(folder)
    with pytest.raises(LastCopyError, match="last verified copy"):
        cat.remove_location("checkpoint_100", "local")
    nas = tmp_path / "nas"
    nas.mkdir()
    add_zone(realm.store, "nas", str(nas))
    cat.set_location("checkpoint_100", "nas", folder.name)
    assert [x.zone for x in cat.locations("checkpoint_100")] == ["local", "nas"]
    cat.remove_location("checkpoint_100", "local")  # another verified copy exists
    with pytest.raises(LastCopyError):
        cat.remove_location("checkpoint_100", "nas")
    cat.mark_location("checkpoint_100", "nas", "corrupt")
    assert cat.locate("checkpoint_100").best is None
    cat.remove_location("checkpoint_100", "nas", force=False)  # a corrupt copy is not a verified one


def test_register_same_id_new_content_marks_other_zones_stale(realm, tmp_path):
    from vault.zones import add_zone

    cfg = realm.home.root / "configs" / "hero.yaml"
    cfg.parent.mkdir()
    cfg.write_text("x: 1\n")
    cat = Catalog(realm.store, realm.home.root)
    first = cat.register(cfg)
    add_zone(realm.store, "nas", str(tmp_path))
    cat.set_location(first.id, "nas", cfg.name)
    cfg.write_text("x: 2\n")
    second = cat.register(cfg)
    assert second.id == first.id == "config_hero" and second.digest != first.digest
    assert {x.zone: x.status for x in cat.locations(first.id)} == {"local": "verified", "nas": "unverified"}


def test_cli_scan_and_locate_print_json_and_fail_with_the_valid_forms(realm):
    home = realm.home.root
    _populate(home)
    proc = vault_cli(home, "scan", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["registered"]) == 5  # one JSON document and nothing else
    proc = vault_cli(home, "locate", "model_qwen3_0.6b", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["asset"]["kind"] == "model" and out["best"]["zone"] == "local"
    proc = vault_cli(home, "locate", "checkpoint_9")
    assert proc.returncode == 1
    assert (
        "checkpoint_9" in proc.stderr and "valid forms" in proc.stderr and "checkpoint_175000" in proc.stderr
    )
    proc = vault_cli(home, "locate", "175000")
    assert proc.returncode == 0 and "checkpoint_175000" in proc.stdout and "verified" in proc.stdout


def test_the_database_reads_as_plain_tables_in_sqlite_utils(realm):
    _populate(realm.home.root)
    Catalog(realm.store, realm.home.root).scan()
    db = sqlite_utils.Database(realm.home.db_path)
    for table, cols in {
        "assets": {"id", "kind", "name", "step", "digest", "size_bytes", "file_count", "created_at"},
        "asset_files": {"asset_id", "relpath", "sha256", "size_bytes"},
        "locations": {"asset_id", "zone", "path", "status", "verified_at"},
        "zones": {"id", "kind", "url", "priority"},
        "aliases": {"name", "asset_id", "set_at", "set_by", "reason"},
        "alias_history": {"name", "from_asset", "to_asset", "at", "by", "reason"},
        "transfers": {"asset_id", "src_zone", "dst_zone", "status", "bytes_moved"},
    }.items():
        assert cols <= set(db[table].columns_dict), table
    rows = list(db["assets"].rows_where("kind = ? and step >= ?", ["checkpoint", 1000]))
    assert [r["id"] for r in rows] == ["checkpoint_175000"]
    assert db.execute("SELECT count(*) FROM locations WHERE status = 'verified'").fetchone()[0] == 5
    assert list(db["zones"].rows)[0]["url"] == str(realm.home.root.resolve())


def test_imported_eval_sets_are_assets_too(realm):
    # `realm skill import-evals` writes evalsets/<skill>/import-<name>/; a scan registers those as well.
    _populate(realm.home.root)
    imported = realm.home.root / "evalsets" / "sy" / "import-original" / "level-03.jsonl"
    imported.parent.mkdir(parents=True)
    imported.write_text('{"prompt": "q", "expected": "a"}\n')
    cat = Catalog(realm.store, realm.home.root)
    cat.scan()
    asset = cat.resolve("evalset_sy_import_original_l3")
    assert asset.kind == "evalset" and asset.meta == {"skill": "sy", "version": "import_original", "level": 3}
    assert cat.resolve("evalset_bin_v1_l1").meta["version"] == "1"


def test_the_database_reads_as_plain_tables_in_datasette(realm):
    # What a user who opens realm.db in datasette sees: the catalog as columns, filterable by URL.
    import asyncio

    from datasette.app import Datasette

    _populate(realm.home.root)
    Catalog(realm.store, realm.home.root).scan()

    async def fetch(path: str):
        ds = Datasette([str(realm.home.db_path)], immutables=[])
        response = await ds.client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        return response.json()

    db = realm.home.db_path.stem
    rows = asyncio.run(fetch(f"/{db}/assets.json?_shape=array&kind=checkpoint&step__gte=1000"))
    assert [r["id"] for r in rows] == ["checkpoint_175000"]
    assert {"digest", "size_bytes", "file_count", "created_at"} <= set(rows[0])
    located = asyncio.run(fetch(f"/{db}/locations.json?_shape=array&asset_id=checkpoint_175000"))
    assert [(r["zone"], r["status"]) for r in located] == [("local", "verified")]


def test_catalog_follows_a_moved_home(realm, tmp_path):
    import shutil

    from vault.store import Store

    _populate(realm.home.root)
    Catalog(realm.store, realm.home.root).scan()
    realm.store.close()
    copy = tmp_path / "copy"
    shutil.copytree(realm.home.root, copy)
    store = Store(copy / "realm.db")
    cat = Catalog(store, copy)
    assert cat.locate("model_qwen3_0.6b").local_path == copy / "models" / QWEN
    assert store.scalar("SELECT url FROM zones WHERE id = 'local'") == str(copy.resolve())
    store.close()
