"""The VaultKeeper API (`realm vault serve`), its client, `ask_vault_first`, and the Tavern's Vault routes.

Servers are real: `realm vault serve` in a subprocess on a free loopback port, over a temporary home
whose checkpoints are real folders landed through the vault's own call (`Ledger.land`), and a second
folder registered as a NAS zone. The client is `vault.client.VaultClient` over HTTP. The Tavern's
Vault routes run in the Tavern's app (Flask's test client), in-process like tests/test_tavern.py.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import requests

from tests.helpers import REALM_PY, REPO, clean_env, enqueue, free_port, stop, wait_health, write_home_config

TOKEN = "open-sesame"
# The command under test. Kept in one place so the docs and browser tests start the same server.
VAULT_SERVE = [sys.executable, str(REALM_PY), "vault", "serve"]


# ---- a small real home ---------------------------------------------------------------------------------
def make_checkpoint(
    realm, step: int, *, train_loss: float, val_loss: float | None = None, size: int = 6000
) -> Path:
    """A checkpoint folder as the trainer writes one (weights, config, tokenizer, trainer state, the
    .ledger.json sidecar written last), landed in ledger and catalog by the vault's one call."""
    from vault.keeper import VaultKeeper

    name = f"checkpoint-{step}-20260101-{12 + step // 1000 % 12:02d}{step % 60:02d}"
    folder = realm.home.models / name
    folder.mkdir(parents=True)
    rng = random.Random(step)
    (folder / "model.safetensors").write_bytes(rng.randbytes(size))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 192}))
    (folder / "tokenizer.json").write_text(
        json.dumps({"vocab": list("abc")})
    )  # identical in every checkpoint
    (folder / "trainer_state.json").write_text(json.dumps({"step": step}))
    sidecar = {
        "step": step,
        "name": name,
        "timestamp": "2026-01-01T12:00:00+0000",
        "train_loss": train_loss,
        "val_loss": val_loss,
        "learning_rate": 0.002,
        "skill_name": "bin",
        "skill_level": 2,
        "has_optimizer": False,
        "ledger_version": 1,
        "size_bytes": size,
    }
    (folder / ".ledger.json").write_text(json.dumps(sidecar))
    keeper = VaultKeeper(realm)
    keeper.ledger.land(folder, sidecar, keeper.catalog)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def open_home(home: Path, overrides: dict | None = None):
    from sentinels.realm import Realm

    write_home_config(home, overrides or {})
    realm = Realm.open(home)
    realm.init()
    return realm


def start_vault(home: Path, port: int) -> subprocess.Popen:
    """`realm vault serve` on a home and a free loopback port, returned once /health answers."""
    proc = subprocess.Popen(
        [*VAULT_SERVE, "--home", str(home), "--port", str(port)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    health = wait_health(port, proc)
    assert health["service"] == "vault", health
    return proc


@pytest.fixture
def vault_home(tmp_path):
    """A home with checkpoints 100 (loss 2.5) and 200 (loss 1.9), a NAS zone, and a token rule in force."""
    from vault.zones import add_zone

    home = tmp_path / "home"
    home.mkdir()
    realm = open_home(home, {"tavern.token": TOKEN, "tavern.open_on_loopback": False})
    make_checkpoint(realm, 100, train_loss=2.5, val_loss=2.6)
    make_checkpoint(realm, 200, train_loss=1.9, val_loss=2.1)
    nas = tmp_path / "nas"
    nas.mkdir()
    add_zone(realm.store, "nas", str(nas))
    yield realm
    realm.store.close()


@pytest.fixture
def server(vault_home):
    port = free_port()
    proc = start_vault(vault_home.home.root, port)
    yield f"http://127.0.0.1:{port}"
    assert stop(proc) == 0


@pytest.fixture
def client(server, tmp_path):
    from vault.client import VaultClient

    return VaultClient(server, token=TOKEN, cache_dir=tmp_path / "cache")


# ---- the endpoints ---------------------------------------------------------------------------------------
def test_every_seed_endpoint_answers_json(server, client, vault_home):
    h = requests.get(f"{server}/health").json()
    assert h["status"] == "ok" and h["home"] == str(vault_home.home.root) and h["assets"] == 2
    stats = client.stats()
    assert stats["by_kind"]["checkpoint"]["count"] == 2
    # tokenizer.json and config.json are the same bytes in both checkpoints: stored once, counted once.
    assert stats["unique_file_bytes"] < stats["bytes"]
    loc = client.locate("checkpoint_100")
    assert loc["found"] and loc["best"]["zone"] == "local" and loc["asset"]["step"] == 100
    full = client.asset("latest")
    assert full["asset"]["id"] == "checkpoint_200" and full["ledger"]["train_loss"] == 1.9
    assert {f["relpath"] for f in full["files"]} >= {".ledger.json", "model.safetensors", "config.json"}
    assert "latest" in full["aliases"]
    cps = client.checkpoints()
    assert [c["step"] for c in cps] == [200, 100] and cps[0]["locations"][0]["zone"] == "local"
    assert [a["id"] for a in client.search("checkpoint")] == ["checkpoint_200", "checkpoint_100"]
    assert {z["id"] for z in client.zones()} == {"local", "nas"}
    assert all(z["free_bytes"] > 0 for z in client.zones())
    nas = client.zone("nas")
    assert nas["kind"] == "local" and nas["priority"] == 10
    assert [r["step"] for r in client.ledger()] == [200, 100]
    assert client.ledger_get(100)["val_loss"] == 2.6
    assert client.ledger_get("checkpoint-200-20260101-1220")["step"] == 200
    assert client.best("train_loss")["step"] == 200
    assert client.best("step", "min")["step"] == 100
    summary = client.summary()
    assert summary["live"] == 2 and summary["latest"]["step"] == 200
    status = client.training_status()
    assert set(status) >= {"battle", "pending_commands", "hero", "arena_running"}
    assert client.training_queue()["counts"]["queued"] == 0
    assert client.aliases()["latest"]["asset_id"] == "checkpoint_200"
    index = requests.get(f"{server}/api").json()["endpoints"]
    for rule in ("GET /api/ledger/best", "POST /api/transfer", "PUT /api/aliases/<name>", "POST /api/scan"):
        assert rule in index


def test_errors_are_typed_json_with_the_right_status(server, client):
    from vault.errors import AliasError, AssetNotFound, LastCopyError, LedgerError
    from vault.zones import ZoneNotFound

    r = requests.get(f"{server}/api/locate/checkpoint_150")
    err = r.json()["error"]
    assert r.status_code == 404 and err["type"] == "AssetNotFound"
    assert "checkpoint_<step>" in err["valid_forms"] and err["close"][:2] in (
        ["checkpoint_100", "checkpoint_200"],
        ["checkpoint_200", "checkpoint_100"],
    )
    r = requests.get(f"{server}/api/no/such/route")
    assert r.status_code == 404 and "GET /api/locate/<path:ref>" in r.json()["error"]["endpoints"]
    r = requests.get(f"{server}/api/ledger/best", params={"metric": "accuracy"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "LedgerError"
    r = requests.get(f"{server}/api/checkpoints", params={"limit": "many"})
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]
    # The client raises the vault's own classes, as the keeper does in-process.
    with pytest.raises(AssetNotFound):
        client.locate("model_nothing")
    with pytest.raises(LedgerError):
        client.best("accuracy")
    with pytest.raises(ZoneNotFound):
        client.zone("moon")
    with pytest.raises(AliasError):
        client.set_alias("latest", 100)
    with pytest.raises(AliasError):
        client.set_alias("step-5", 100)  # would shadow a step
    with pytest.raises(LastCopyError):
        client.delete(100, "local")
    assert client.locate(100)["local_path"]  # refused means untouched


def test_ids_and_paths_never_escape_a_zone_root(server, client, vault_home):
    secret = vault_home.home.root.parent / "secret.txt"
    secret.write_text("not yours")
    for path in ("../secret.txt", "/etc/passwd", "models/../../secret.txt"):
        r = requests.post(f"{server}/api/register", json={"path": path}, headers={"X-Realm-Token": TOKEN})
        assert r.status_code == 400 and r.json()["error"]["type"] == "UnsafePath", path
    for rel in ("../../secret.txt", "../../realm.db"):
        r = requests.get(f"{server}/api/files/checkpoint_100", params={"path": rel})
        assert r.status_code == 404, rel  # only the asset's catalogued files are served
    r = requests.get(f"{server}/api/locate/..%2F..%2Fsecret.txt")
    assert r.status_code == 404
    # A file inside the home registers fine (relative to the home).
    data = vault_home.home.root / "queue" / "normal" / "extra.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text('{"text": "hi"}\n')
    asset = client.register("queue/normal/extra.jsonl")
    assert (
        asset["kind"] == "data" and client.locate(asset["id"])["best"]["path"] == "queue/normal/extra.jsonl"
    )


def test_config_bytes_need_the_token_and_the_home_keeps_other_rooms_files(server, client, vault_home):
    """A home's realm.yaml holds tavern.token: its bytes are served only under the token rule. And the
    vault deletes only checkpoints from the home (a quest file or a config belongs to another room)."""
    asset = client.register("realm.yaml")
    assert asset["id"] == "config_home_realm"
    for path in (f"/api/files/{asset['id']}", f"/api/export/{asset['id']}"):
        assert requests.get(server + path).status_code == 401, path
        r = requests.get(server + path, headers={"X-Realm-Token": TOKEN})
        assert r.status_code == 200 and TOKEN.encode() in r.content, path
    r = requests.delete(
        f"{server}/api/asset/{asset['id']}", json={"zone": "local"}, headers={"X-Realm-Token": TOKEN}
    )
    assert r.status_code == 400 and "not the one in the realm home" in r.json()["error"]["message"]
    assert (vault_home.home.root / "realm.yaml").is_file()


def test_every_mutation_needs_the_token(server):
    mutations = [
        ("PUT", "/api/aliases/champion", {"asset": "100"}),
        ("DELETE", "/api/aliases/champion", {}),
        ("DELETE", "/api/asset/checkpoint_100", {"zone": "nas"}),
        ("POST", "/api/transfer", {"asset": "100", "to": "nas"}),
        ("POST", "/api/fetch", {"asset": "100"}),
        ("POST", "/api/register", {"path": "models"}),
        ("POST", "/api/scan", {}),
        ("POST", "/api/training/control", {"action": "pause"}),
    ]
    for method, path, body in mutations:
        for headers in ({}, {"X-Realm-Token": "wrong"}):
            r = requests.request(method, server + path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["type"] == "Unauthorized"
    # A browser on another site is refused even with the header's rule satisfied.
    r = requests.post(
        f"{server}/api/scan", headers={"X-Realm-Token": TOKEN, "Origin": "http://evil.example"}, json={}
    )
    assert r.status_code == 403
    r = requests.put(
        f"{server}/api/aliases/champion", json={"asset": "100"}, headers={"X-Realm-Token": TOKEN}
    )
    assert r.status_code == 200 and r.json()["moved"] is True


def test_alias_endpoints_keep_the_history(server, client, vault_home):
    assert client.set_alias("champion", 100, by="test", reason="first eval")["moved"] is True
    assert (
        client.set_alias("champion", "checkpoint-200-20260101-1220", reason="beat 100")["from"]
        == "checkpoint_100"
    )
    assert client.set_alias("champion", 200, reason="again")["moved"] is False  # no move, no history row
    assert client.alias("champion") == "checkpoint_200"
    hist = client.alias_history("champion")
    assert [(h["from_asset"], h["to_asset"]) for h in hist] == [
        ("checkpoint_100", "checkpoint_200"),
        (None, "checkpoint_100"),
    ]
    assert hist[0]["reason"] == "beat 100" and hist[1]["by"] == "test"
    client.remove_alias("champion", reason="retired")
    assert client.alias("champion") is None
    assert client.alias_history("champion")[0]["to_asset"] is None
    r = requests.delete(f"{server}/api/aliases/champion", json={}, headers={"X-Realm-Token": TOKEN})
    assert r.status_code == 404
    # Every move was announced on the event log (what the Tavern's Vault room listens for).
    moves = [e.payload for e in vault_home.events.since(0, kinds=["vault.alias"])]
    assert [m["to"] for m in moves] == ["checkpoint_100", "checkpoint_200", None]


def test_training_endpoints_go_through_the_arena(server, client, vault_home):
    qid = enqueue(
        vault_home.home.root,
        "drill.jsonl",
        [{"messages": [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}]}],
    )
    queue = client.training_queue()
    assert queue["counts"]["queued"] == 1 and queue["queued"][0]["id"] == qid
    sent = client.control("pause")
    assert sent["status"] == "requested" and sent["action"] == "pause"
    pending = client.training_status()["pending_commands"]
    assert [p["action"] for p in pending] == ["pause"] and pending[0]["id"] == sent["command_id"]
    from arena.control import pending as arena_pending

    assert [p["id"] for p in arena_pending(vault_home.store)] == [sent["command_id"]]
    r = requests.post(
        f"{server}/api/training/control", json={"action": "dance"}, headers={"X-Realm-Token": TOKEN}
    )
    assert r.status_code == 400 and "pause" in r.json()["error"]["message"]


def test_push_moves_bytes_once_and_ask_vault_first_brings_a_copy_back(server, client, vault_home, tmp_path):
    folder = next(vault_home.home.models.glob("checkpoint-100-*"))
    original = snapshot(folder)
    first = client.push(100, "nas")["steps"][-1]
    assert first["status"] == "done" and first["bytes_moved"] == sum(len(b) for b in original.values())
    again = client.push(100, "nas")["steps"][-1]
    assert again["status"] == "held" and again["bytes_moved"] == 0  # the zone already holds it
    assert snapshot(tmp_path / "nas" / folder.name) == original

    # On the keeper's own host, its copy is the local path: nothing moves.
    assert client.ask_vault_first("checkpoint_100") == folder

    # The local copy goes (the NAS copy keeps it safe), and the keeper's home no longer has it.
    assert client.delete(100, "local") == {"asset_id": "checkpoint_100", "zone": "local", "deleted": True}
    assert not folder.exists() and client.ledger_get(100)["deleted"] is True
    # A remote host (its own cache) gets it from the best zone holding it: the NAS.
    remote = type(client)(server, token=TOKEN, cache_dir=tmp_path / "remote-cache")
    got = remote.ask_vault_first("checkpoint_100")
    assert got == tmp_path / "remote-cache" / folder.name and snapshot(got) == original
    assert not list((tmp_path / "remote-cache").glob(".partial-*"))
    # And the keeper's home gets it back through the API: byte-identical, live in the ledger again.
    fetched = client.fetch("checkpoint_100")
    assert fetched["fetched"] is True and fetched["transfer"]["src_zone"] == "nas"
    assert snapshot(folder) == original and client.ledger_get(100)["deleted"] is False


def test_ask_vault_first_from_a_remote_host_streams_from_the_keeper_and_skips_a_damaged_copy(
    server, vault_home, tmp_path
):
    from vault.client import VaultClient

    # A host that cannot read the keeper's disk: checkpoint 200 is only in the keeper's home.
    remote = VaultClient(server, token=TOKEN, cache_dir=tmp_path / "far", use_keeper_paths=False)
    folder = next(vault_home.home.models.glob("checkpoint-200-*"))
    original = snapshot(folder)
    got = remote.ask_vault_first("latest")
    assert got == tmp_path / "far" / folder.name and snapshot(got) == original
    assert remote.ask_vault_first(200) == got  # a second ask is answered from the cache

    # Damage the keeper's copy of 100 after pushing a good one to the NAS: the keeper streams what it
    # has, the sha256 check refuses it, and the next zone (the NAS) delivers a verified copy.
    remote.push(100, "nas")
    folder100 = next(vault_home.home.models.glob("checkpoint-100-*"))
    good = snapshot(folder100)
    weights = folder100 / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF
    weights.write_bytes(bytes(data))
    got = remote.ask_vault_first(100)
    assert snapshot(got) == good


def test_export_streams_a_tar_of_the_checkpoint(server, vault_home, tmp_path):
    from vault.client import VaultClient

    folder = next(vault_home.home.models.glob("checkpoint-200-*"))
    r = requests.get(f"{server}/api/export/latest", stream=True)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-tar"
    assert folder.name in r.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert got == {f"{folder.name}/{k}": v for k, v in snapshot(folder).items()}
    out = VaultClient(server).export(100, tmp_path / "c100.tar")
    with tarfile.open(out) as tar:
        assert len(tar.getnames()) == 5


# ---- in-process: the keeper's own ask_vault_first ----------------------------------------------------------
def test_keeper_ask_vault_first_pulls_from_the_best_zone(vault_home, tmp_path):
    from vault.keeper import VaultKeeper

    keeper = VaultKeeper(vault_home)
    folder = next(vault_home.home.models.glob("checkpoint-200-*"))
    original = snapshot(folder)
    assert keeper.ask_vault_first("latest") == folder  # local: returned as is
    keeper.push(200, "nas")
    keeper.delete(200)
    assert not folder.exists()
    assert keeper.ask_vault_first(200) == folder and snapshot(folder) == original
    assert keeper.ledger.get(200)["deleted"] is False


# ---- the Tavern's Vault room routes ----------------------------------------------------------------------
@pytest.fixture
def tavern(vault_home):
    from tavern.app import create_app

    return create_app(vault_home, testing=True).test_client()


def test_tavern_vault_routes_call_the_keeper(tavern, vault_home):
    h = {"X-Realm-Token": TOKEN}
    room = tavern.get("/api/vault").get_json()
    assert [c["asset_id"] for c in room["checkpoints"]] == ["checkpoint_200", "checkpoint_100"]
    assert {z["id"] for z in room["zones"]} == {"local", "nas"} and room["champion_history"] == []
    assert tavern.post("/api/vault/promote", json={"asset": "checkpoint_100"}).status_code == 401
    r = tavern.post("/api/vault/promote", json={"asset": "checkpoint_100"}, headers=h)
    assert r.status_code == 200 and r.get_json()["asset_id"] == "checkpoint_100"
    hist = tavern.get("/api/vault/aliases/champion/history").get_json()["history"]
    assert hist[0]["to_asset"] == "checkpoint_100" and hist[0]["by"] == "tavern"
    r = tavern.post("/api/vault/delete", json={"asset": "checkpoint_200"}, headers=h)
    assert r.status_code == 409 and r.get_json()["type"] == "LastCopyError"
    r = tavern.post("/api/vault/push", json={"asset": "checkpoint_200", "zone": "nas"}, headers=h)
    assert r.status_code == 200 and r.get_json()["bytes_moved"] > 0
    r = tavern.post("/api/vault/push", json={"asset": "checkpoint_200", "zone": "moon"}, headers=h)
    assert r.status_code == 404 and "nas" in r.get_json()["error"]
    r = tavern.get("/api/vault/export/checkpoint_200")
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.data)) as tar:
        assert any(n.endswith("/model.safetensors") for n in tar.getnames())
    assert tavern.post("/api/vault/delete", json={"asset": "checkpoint_200"}, headers=h).status_code == 200
    r = tavern.get("/api/vault/export/checkpoint_200")
    assert r.status_code == 409 and "fetch it first" in r.get_json()["error"]
    cp = next(c for c in tavern.get("/api/vault").get_json()["checkpoints"] if c["step"] == 200)
    assert [loc["zone"] for loc in cp["locations"]] == ["nas"]
    assert tavern.post("/api/vault/fetch", json={"asset": "checkpoint_200"}, headers=h).get_json()["fetched"]
    r = tavern.get("/api/vault/export/nothing")
    assert r.status_code == 404 and "valid_forms" in r.get_json()
    assert b"Vault" in tavern.get("/vault").data and b"vault.js" in tavern.get("/vault").data
