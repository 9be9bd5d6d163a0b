"""The checkpoint ledger: landing, queries, rebuild, aliases with history, retention, and a real run.

Real SQLite files in temporary homes, real checkpoint folders (small fakes with sidecars, and the
checkpoints of a real short `realm arena` run); the CLI runs in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers import arena, bin_chats, enqueue, events, query, tiny_config
from tests.vault_helpers import make_checkpoint, vault_cli
from vault.catalog import Catalog
from vault.errors import AliasError, AssetNotFound, LedgerError
from vault.ledger import Ledger
from vault.retention import DAY, HOUR, WEEK, RetentionPolicy, apply, plan

VAULT_TABLES = (
    "checkpoints",
    "assets",
    "asset_files",
    "locations",
    "aliases",
    "alias_history",
    "zones",
    "transfers",
)


def _land(realm, step, **kw):
    folder, sidecar = make_checkpoint(realm.home.models, step, **kw)
    cat = Catalog(realm.store, realm.home.root)
    return Ledger(realm.store, realm.events).land(folder, sidecar, cat), folder


def test_land_writes_the_ledger_row_the_asset_and_its_location_in_one_call(realm):
    asset, folder = _land(realm, 1200, train_loss=0.7, val_loss=0.9, skill="bin", level=3)
    row = Ledger(realm.store).get(1200)
    assert (row["name"], row["train_loss"], row["skill_name"], row["deleted"]) == (
        folder.name,
        0.7,
        "bin",
        False,
    )
    assert (asset.id, asset.kind, asset.step, asset.name) == (
        "checkpoint_1200",
        "checkpoint",
        1200,
        folder.name,
    )
    cat = Catalog(realm.store, realm.home.root)
    files = {f.relpath: f.sha256 for f in cat.files(asset.id)}
    assert set(files) == {".ledger.json", "config.json", "model.safetensors", "tokenizer.json"}
    for rel, sha in files.items():
        assert sha == hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    assert cat.locate("checkpoint_1200").local_path == folder


def test_queries_by_step_name_alias_latest_best_list_and_summary(realm):
    t0 = time.time() - 3600
    for i, (step, tl, vl, skill) in enumerate(
        [(100, 2.0, 2.5, "bin"), (200, 1.0, 1.9, "bin"), (300, 1.5, 1.2, "sy"), (400, None, None, "sy")]
    ):
        _land(realm, step, ts=t0 + i * 60, train_loss=tl, val_loss=vl, skill=skill, level=i)
    led = Ledger(realm.store)
    assert led.get(200)["train_loss"] == 1.0
    name = led.get(300)["name"]
    assert led.get(name)["step"] == 300 and led.get("step-300")["step"] == 300
    assert led.latest()["step"] == 400 and led.get("latest")["step"] == 400
    assert led.best("train_loss")["step"] == 200  # declared direction: min
    assert led.best("val_loss")["step"] == 300
    assert led.best("train_loss", "max")["step"] == 100
    assert led.best("total_examples_trained")["step"] == 400  # declared direction: max
    with pytest.raises(LedgerError, match="unknown metric"):
        led.best("accuracy_of_vibes")
    with pytest.raises(LedgerError, match="needs a direction"):
        led.best("learning_rate")
    assert [r["step"] for r in led.list()] == [400, 300, 200, 100]
    assert [r["step"] for r in led.list(skill="bin")] == [200, 100]
    assert [r["step"] for r in led.list(min_step=200, max_step=300)] == [300, 200]
    assert [r["step"] for r in led.list(limit=2, offset=1)] == [300, 200]
    led.set_alias("champion", 300, by="test", reason="best val")
    assert led.get("champion")["step"] == 300
    assert led.get(300)["aliases"] == ["champion"] and led.get(400)["aliases"] == ["latest"]
    s = led.summary()
    assert (s["live"], s["deleted"], s["first_step"], s["last_step"]) == (4, 0, 100, 400)
    assert s["best"]["val_loss"]["step"] == 300 and s["skills"] == ["bin", "sy"]
    assert s["aliases"] == {"latest": "checkpoint_400", "champion": "checkpoint_300"}


def test_rebuild_restores_the_ledger_from_the_sidecars(realm):
    for step in (10, 20, 30):
        _land(realm, step, train_loss=1.0 / step)
    before = query(
        realm.home.root, "SELECT step, name, train_loss, created_at, extra FROM checkpoints ORDER BY step"
    )
    with realm.store.tx() as conn:  # a lost ledger
        conn.execute("DELETE FROM checkpoints")
    proc = vault_cli(realm.home.root, "rebuild-ledger", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["recorded"] == 3
    after = query(
        realm.home.root, "SELECT step, name, train_loss, created_at, extra FROM checkpoints ORDER BY step"
    )
    assert after == before
    # A row whose folder is gone stays as history, marked deleted.
    import shutil

    shutil.rmtree(realm.home.models / before[0]["name"])
    assert Ledger(realm.store).rebuild(realm.home.models) == 2
    assert [r["step"] for r in Ledger(realm.store).list(include_deleted=True) if r["deleted"]] == [10]


def test_aliases_keep_every_move_and_refuse_reserved_names(realm):
    for step in (1100, 1200):
        _land(realm, step)
    led = Ledger(realm.store, realm.events)
    led.set_alias("champion", 1100, by="alice", reason="first evals")
    moved = led.set_alias("champion", "checkpoint-1200", by="guild", reason="beat it on BIN L3")
    assert moved == {
        "name": "champion",
        "asset_id": "checkpoint_1200",
        "from": "checkpoint_1100",
        "moved": True,
    }
    assert led.set_alias("champion", 1200, by="guild", reason="again")["moved"] is False
    led.set_alias("release-1", "champion", by="alice", reason="ship it")  # alias of an alias: its target now
    led.remove_alias("champion", by="alice", reason="re-evaluating")
    hist = led.alias_history("champion")
    assert [(h["from_asset"], h["to_asset"], h["by"], h["reason"]) for h in hist] == [
        ("checkpoint_1200", None, "alice", "re-evaluating"),
        ("checkpoint_1100", "checkpoint_1200", "guild", "beat it on BIN L3"),
        (None, "checkpoint_1100", "alice", "first evals"),
    ]
    assert all(h["at"] > 0 for h in hist)
    assert led.alias("release-1") == "checkpoint_1200" and led.alias("champion") is None
    assert led.alias("latest") == "checkpoint_1200"
    assert "latest" not in {r["name"] for r in query(realm.home.root, "SELECT name FROM aliases")}
    moves = [(e["name"], e["from"], e["to"]) for e in events(realm.home.root, "vault.alias")]
    assert moves[:2] == [
        ("champion", None, "checkpoint_1100"),
        ("champion", "checkpoint_1100", "checkpoint_1200"),
    ]

    for bad in (
        "latest",
        "1200",
        "step-5",
        "step_5",
        "checkpoint_3",
        "checkpoint-3-20260101-1200",
        "model_x",
        "Champion!",
        "two words",
        "",
    ):
        with pytest.raises(AliasError):
            led.set_alias(bad, 1200, by="t", reason="r")
    with pytest.raises(AssetNotFound):
        led.set_alias("ghost", 999, by="t", reason="no such checkpoint")
    with pytest.raises(AliasError, match="no alias"):
        led.remove_alias("nope", by="t", reason="r")


def test_cli_alias_set_list_history_and_refusal(realm):
    _land(realm, 1200)
    home = realm.home.root
    proc = vault_cli(home, "alias", "set", "champion", "1200", "--reason", "won the BIN evals")
    assert proc.returncode == 0, proc.stderr
    assert "champion: (unset) -> checkpoint_1200" in proc.stdout
    listed = json.loads(vault_cli(home, "alias", "list", "--json").stdout)
    assert listed["champion"]["asset_id"] == "checkpoint_1200" and listed["latest"]["computed"] is True
    hist = json.loads(vault_cli(home, "alias", "history", "champion", "--json").stdout)
    assert hist[0]["reason"] == "won the BIN evals" and hist[0]["by"].startswith("cli")
    proc = vault_cli(home, "alias", "set", "latest", "1200", "--reason", "x")
    assert proc.returncode == 1 and "computed" in proc.stderr
    proc = vault_cli(home, "ledger", "--json")
    assert [r["aliases"] for r in json.loads(proc.stdout)] == [["latest", "champion"]]


def test_retention_keeps_last_n_aliased_and_one_per_hour_day_week(realm):
    # A fixed "now" half an hour into an hour, and timestamps placed inside known buckets.
    now = (time.time() // WEEK) * WEEK + 3 * DAY + 12 * HOUR + 1800
    week = ((now - 40 * DAY) // WEEK) * WEEK
    day = ((now - 4 * DAY) // DAY) * DAY
    hour = ((now - 5 * HOUR) // HOUR) * HOUR
    ts = {
        10: week + HOUR,  # one week bucket: 11 is its newest; 10 stays only by its alias
        11: week + 2 * DAY,
        20: day + HOUR,  # one day bucket (4 days old): 21 is its newest
        21: day + 5 * HOUR,
        30: hour + 300,  # one hour bucket (5 hours old): 32 is its newest
        31: hour + 1200,
        32: hour + 2400,
        33: hour + HOUR + 600,  # the next hour's only checkpoint
        40: now - 300,  # this hour: the last 2 stay, and 42 is also this hour's newest
        41: now - 200,
        42: now - 100,
    }
    for step, t in ts.items():
        _land(realm, step, ts=t)
    led = Ledger(realm.store)
    cat = Catalog(realm.store, realm.home.root)
    led.set_alias("champion", 10, by="t", reason="keep me")
    p = plan(led, cat, realm.home.models, RetentionPolicy(keep_last=2), now=now)
    keep = {d.step: d.reasons for d in p.keep}
    assert keep == {
        10: ["alias champion"],
        11: ["1 per week"],
        21: ["1 per day"],
        32: ["1 per hour"],
        33: ["1 per hour"],
        41: ["last 2"],
        42: ["last 2", "1 per hour"],
    }
    assert [d.step for d in p.drop] == [20, 30, 31, 40]
    assert p.bytes_freed == sum(d.size_bytes for d in p.drop) > 0
    assert all(d.last_copy for d in p.drop)  # no other zone holds any of them
    res = apply(p, led, cat, force=True)
    assert sorted(int(n.split("-")[1]) for n in res.deleted) == [20, 30, 31, 40]
    # Thinning is stable: the same policy an hour later drops nothing it kept before but 42's
    # "last 2" slot, which 42 still holds as its hour's newest.
    later = plan(led, cat, realm.home.models, RetentionPolicy(keep_last=2), now=now + HOUR)
    assert [d.step for d in later.drop] == []


def test_retention_dry_run_changes_nothing_and_last_copies_need_force(realm, tmp_path):
    from vault.zones import add_zone

    for step in range(1, 7):
        _land(realm, step * 100, ts=time.time() - 60)
    home = realm.home.root
    (home / "realm.yaml").write_text(
        "training:\n  keep_last: 2\nvault:\n  keep_hourly_h: 0\n  keep_daily_d: 0\n  keep_weekly: false\n"
    )
    before = sorted(p.name for p in realm.home.models.iterdir())

    proc = vault_cli(home, "retention", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [d["step"] for d in out["plan"]["drop"]] == [100, 200, 300, 400]
    assert out["plan"]["bytes_freed"] == sum(d["size_bytes"] for d in out["plan"]["drop"]) > 0
    assert out["result"] is None
    assert sorted(p.name for p in realm.home.models.iterdir()) == before

    # checkpoint 100 has a verified copy in another zone: only it may go without --force.
    nas = tmp_path / "nas"
    nas.mkdir()
    add_zone(realm.store, "nas", str(nas))
    Catalog(realm.store, home).set_location("checkpoint_100", "nas", before[0])
    proc = vault_cli(home, "retention", "--json")
    res = json.loads(proc.stdout)["result"]
    assert res["deleted"] == [before[0]] and len(res["refused"]) == 3
    led = Ledger(realm.store)
    assert led.get(100)["deleted"] is True
    assert [x.zone for x in Catalog(realm.store, home).locations("checkpoint_100")] == ["nas"]

    proc = vault_cli(home, "retention", "--force")
    assert proc.returncode == 0 and "deleted 3" in proc.stdout
    assert sorted(p.name for p in realm.home.models.iterdir()) == before[-2:]
    assert [r["step"] for r in led.list(include_deleted=True) if r["deleted"]] == [400, 300, 200, 100]
    with pytest.raises(AssetNotFound, match="deleted"):
        Catalog(realm.store, home).resolve(300)  # history in the ledger, no zone holds it


def test_reconcile_repairs_ledger_and_catalog_after_a_crash(realm):
    _, gone = _land(realm, 10)
    folder, _ = make_checkpoint(realm.home.models, 20)  # renamed into place, never landed
    import shutil

    shutil.rmtree(gone)
    report = Ledger(realm.store).reconcile(realm.home.models, Catalog(realm.store, realm.home.root))
    assert report["added"] == [folder.name] and report["catalogued"] == [folder.name]
    assert report["marked_deleted"] == [gone.name]
    cat = Catalog(realm.store, realm.home.root)
    assert cat.locate(20).best.path == f"models/{folder.name}"
    assert [x.status for x in cat.locations("checkpoint_10")] == ["missing"]


def test_a_real_training_run_lands_every_checkpoint_in_catalog_and_ledger(home):
    tiny_config(home, save_steps=5, keep_last=2)
    enqueue(home, "bin_add.jsonl", bin_chats(200))
    proc = arena(home, "--max-steps", "16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(p.name for p in (home / "models").iterdir())
    assert [re.sub(r"-\d{8}-\d{4}$", "", n) for n in names] == ["checkpoint-15", "checkpoint-16"]
    live = query(home, "SELECT step, name FROM checkpoints WHERE deleted = 0 ORDER BY step")
    assert [r["name"] for r in live] == names
    gone = query(home, "SELECT step FROM checkpoints WHERE deleted = 1 ORDER BY step")
    assert [r["step"] for r in gone] == [5, 10]  # retention: history kept in the ledger
    assets = query(home, "SELECT id, name FROM assets WHERE kind = 'checkpoint' ORDER BY step")
    assert [(a["id"], a["name"]) for a in assets] == [(f"checkpoint_{r['step']}", r["name"]) for r in live]
    for name in names:
        step = int(name.split("-")[1])
        files = query(
            home, "SELECT relpath, sha256 FROM asset_files WHERE asset_id = ?", [f"checkpoint_{step}"]
        )
        on_disk = {p.name for p in (home / "models" / name).iterdir()}
        assert {f["relpath"] for f in files} == on_disk
        for f in files:
            assert (
                f["sha256"]
                == hashlib.sha256((home / "models" / name / f["relpath"]).read_bytes()).hexdigest()
            )
        loc = query(
            home, "SELECT zone, path, status FROM locations WHERE asset_id = ?", [f"checkpoint_{step}"]
        )
        assert loc == [{"zone": "local", "path": f"models/{name}", "status": "verified"}]


def test_no_vault_table_sql_outside_vault():
    repo = Path(__file__).resolve().parent.parent
    sql = re.compile(
        r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+\[?(" + "|".join(VAULT_TABLES) + r")\b", re.I
    )
    offenders = [
        f"{p.relative_to(repo)}:{i}"
        for room in ("arena", "guild", "tavern", "watchtower", "sentinels")
        for p in (repo / room).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if sql.search(line)
    ]
    assert offenders == []


def test_deleting_an_aliased_checkpoint_needs_force(realm):
    from vault.retention import delete_checkpoint

    _, folder = _land(realm, 1200)
    led, cat = Ledger(realm.store), Catalog(realm.store, realm.home.root)
    led.set_alias("champion", 1200, by="t", reason="best")
    with pytest.raises(AliasError, match="champion"):
        delete_checkpoint(led, cat, folder)
    assert folder.is_dir() and led.get(1200)["deleted"] is False
    delete_checkpoint(led, cat, folder, force=True)
    assert not folder.exists() and led.get(1200)["deleted"] is True and cat.get("checkpoint_1200") is None
