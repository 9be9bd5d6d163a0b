"""Zones, transfers and branch officers (issue #13), against real servers on loopback.

Branch officers run as `realm officer` subprocesses, each with its own base dir, home and token; the
object store is moto's S3 server (`ThreadedMotoServer`) on a free port, reached through s3fs with
dummy credentials and `AWS_ENDPOINT_URL` from the environment; the catalog is the realm's real SQLite
database, and every command a user would type runs as a real `realm` process.
"""

from __future__ import annotations

import json
import logging
import os
import pty
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import REALM_PY, REPO, clean_env, free_port, query, stop, wait_health, wait_until
from vault.identity import identify

REALM_CMD = [sys.executable, str(REALM_PY)]


@dataclass
class OfficerProc:
    name: str
    port: int
    base: Path
    token: str
    token_env: str
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def realm_cli(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*REALM_CMD, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        cwd=REPO,
    )


def realm_json(home: Path, *args: str, code: int = 0):
    """Run a vault command with --json; its one JSON result (the whole stdout)."""
    proc = realm_cli(home, *args, "--json")
    assert proc.returncode == code, (
        f"realm {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(proc.stdout)


def start_officer(tmp_path: Path, name: str, monkeypatch) -> OfficerProc:
    port, base, token_env = free_port(), tmp_path / f"{name}-store", f"{name.upper()}_OFFICER_TOKEN"
    token = f"secret-of-{name}"
    monkeypatch.setenv(token_env, token)  # the realm side reads it from the same variable
    proc = subprocess.Popen(
        [
            *REALM_CMD,
            "officer",
            "--zone",
            name,
            "--port",
            str(port),
            "--base-dir",
            str(base),
            "--token-env",
            token_env,
            "--home",
            str(tmp_path / f"{name}-host"),
        ],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_health(port, proc)
    return OfficerProc(name, port, base, token, token_env, proc)


@pytest.fixture
def officers(tmp_path, monkeypatch):
    started = {name: start_officer(tmp_path, name, monkeypatch) for name in ("shed", "barn")}
    yield started
    for o in started.values():
        assert stop(o.proc) == 0


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on a free loopback port, a bucket in it, and the env that points s3fs there."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }.items():
        monkeypatch.setenv(key, value)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("realm-test")
    yield fs
    server.stop()


def save_dio_checkpoint(realm, step: int = 100):
    """A real checkpoint: DIO from the hero factory, one AdamW step on a real batch, saved by the arena's
    CheckpointManager (which lands it in ledger and catalog through the vault)."""
    import torch

    from arena.checkpoints import CheckpointManager
    from arena.hero import build_hero

    model, tokenizer = build_hero(realm.config.hero, REPO, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.tensor([tokenizer.encode("Compute: add(①⓪, ①①)")])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    manager = CheckpointManager(realm.home.models, realm.store, keep_last=5)
    return manager.save(
        model=model,
        tokenizer=tokenizer,
        loop_state={"step": step},
        tensors_state={"optimizer": opt.state_dict()},
        ledger={"train_loss": 3.0},
    )


def tree(path: Path) -> dict[str, str]:
    """relpath -> sha256 of every file in a folder (what "byte-identical" compares)."""
    return {f.relpath: f.sha256 for f in identify(path).files}


def flip_byte(data: bytes, at: int = 100) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def locations(home: Path, asset_id: str) -> dict[str, str]:
    return {
        r["zone"]: r["status"]
        for r in query(home, "SELECT zone, status FROM locations WHERE asset_id = ?", (asset_id,))
    }


# ---- the whole round: every kind of zone ------------------------------------------------------------
def test_checkpoint_round_trip_through_officers_s3_and_nas(realm, tmp_path, officers, s3):
    home = realm.home.root
    cp = save_dio_checkpoint(realm)
    asset_id, original = "checkpoint_100", tree(cp.path)
    size = sum(p.stat().st_size for p in cp.path.rglob("*") if p.is_file())
    assert {"model.safetensors", ".ledger.json"} <= set(original)
    nas = tmp_path / "nas"
    nas.mkdir()

    for o in officers.values():
        added = realm_json(home, "vault", "zone", "add", o.name, o.url, "--token-env", o.token_env)
        assert added["kind"] == "officer"
    assert realm_json(home, "vault", "zone", "add", "s3", "s3://realm-test/dio")["kind"] == "fsspec"
    assert realm_json(home, "vault", "zone", "add", "nas", str(nas))["kind"] == "local"
    listed = {z["id"]: z for z in realm_json(home, "vault", "zones")}
    assert [listed[z]["kind"] for z in ("local", "nas", "shed", "barn", "s3")] == [
        "local",
        "local",
        "officer",
        "officer",
        "fsspec",
    ]
    assert all(listed[z]["free_bytes"] > 0 for z in ("local", "nas", "shed", "barn"))
    assert listed["s3"]["free_bytes"] is None  # an object store cannot say

    zones = ["shed", "barn", "s3", "nas"]
    for z in zones:
        first = realm_json(home, "vault", "push", asset_id, z)
        assert (first["status"], first["bytes_moved"], first["dst_zone"]) == ("done", size, z)
        again = realm_json(home, "vault", "push", asset_id, z)
        assert (again["status"], again["bytes_moved"]) == ("held", 0)
    assert locations(home, asset_id) == dict.fromkeys(["local", *zones], "verified")
    # Officers list the asset; nothing staged or temporary is left beside it.
    for o in officers.values():
        listed_assets = requests.get(f"{o.url}/assets", timeout=10).json()["assets"]
        assert [a["id"] for a in listed_assets] == [cp.name]
        assert not [p for p in o.base.rglob(".partial-*") if p.name != ".partial-officer.lock"]

    # Delete the local copy; each zone alone brings it back byte-identical.
    for z in zones:
        subprocess.run(["rm", "-rf", str(cp.path)], check=True)
        got = realm_json(home, "vault", "pull", asset_id, z)
        assert (got["src_zone"], got["status"], got["bytes_moved"]) == (z, "done", size)
        assert tree(cp.path) == original
    # Without a zone, the best one (the NAS folder, priority 10) delivers.
    subprocess.run(["rm", "-rf", str(cp.path)], check=True)
    assert realm_json(home, "vault", "pull", asset_id)["src_zone"] == "nas"
    assert tree(cp.path) == original
    # ask_vault_first, what the Oracle and remote hosts call: a local path, fetched first when missing.
    from vault.keeper import VaultKeeper

    subprocess.run(["rm", "-rf", str(cp.path)], check=True)
    assert VaultKeeper(realm).ask_vault_first(asset_id) == cp.path
    assert tree(cp.path) == original
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cp.path)  # the pulled checkpoint loads as any HF model does
    assert model.config.model_type == "qwen3"

    assert realm_json(home, "vault", "verify")["ok"] is True

    # One flipped byte in an officer's copy: verify flags it and exits non-zero.
    victim = officers["shed"].base / cp.name / "model.safetensors"
    victim.write_bytes(flip_byte(victim.read_bytes()))
    res = realm_json(home, "vault", "verify", code=1)
    assert [(c["asset_id"], c["zone"]) for c in res["corrupt"]] == [(asset_id, "shed")]
    assert locations(home, asset_id)["shed"] == "corrupt"
    assert locations(home, asset_id)["barn"] == "verified"
    plain = realm_cli(home, "vault", "verify", "--zone", "shed")
    assert plain.returncode == 1 and "corrupt" in plain.stdout

    # And one in the S3 copy.
    key = f"realm-test/dio/{cp.name}/model.safetensors"
    s3.pipe_file(key, flip_byte(s3.cat_file(key)))
    res = realm_json(home, "vault", "verify", "--zone", "s3", code=1)
    assert [(c["asset_id"], c["zone"]) for c in res["corrupt"]] == [(asset_id, "s3")]

    # Pushing again repairs a corrupt copy by sending only the file that differs.
    fixed = realm_json(home, "vault", "push", asset_id, "shed")
    assert (fixed["files_moved"], fixed["bytes_moved"]) == (1, (cp.path / "model.safetensors").stat().st_size)
    assert realm_json(home, "vault", "verify", "--zone", "shed")["ok"] is True


# ---- kill -9 mid-push ------------------------------------------------------------------------------
def big_model(home: Path, files: int = 10, mb: int = 10) -> Path:
    folder = home / "models" / "big-model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "test"}')
    for i in range(files):
        (folder / f"shard-{i:02d}.bin").write_bytes(os.urandom(mb << 20))
    return folder


def test_killed_push_lists_nothing_and_a_retry_completes(realm, tmp_path, monkeypatch):
    from vault.catalog import Catalog

    home = realm.home.root
    officer = start_officer(tmp_path, "shed", monkeypatch)
    try:
        folder = big_model(home)
        asset = Catalog(realm.store, home).register(folder)
        assert realm_json(home, "vault", "zone", "add", "shed", officer.url, "--token-env", officer.token_env)
        push = subprocess.Popen(
            [*REALM_CMD, "vault", "push", asset.id, "shed", "--json", "--home", str(home)],
            cwd=REPO,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        staged = officer.base / f".partial-{asset.name}"

        def midway() -> bool:
            # Bytes are moving (the transfers row says so) and one shard already landed verified.
            rows = query(home, "SELECT bytes_moved FROM transfers WHERE asset_id = ?", (asset.id,))
            return bool(rows) and rows[0]["bytes_moved"] > 0 and any(staged.glob("shard-*.bin"))

        wait_until(midway, 120, "the push to land its first shard", interval=0.005, proc=push)
        push.send_signal(signal.SIGKILL)
        push.wait(30)

        # Nothing partial is listed: not in the catalog, not by the officer, not by locate.
        assert "shed" not in locations(home, asset.id)
        assert requests.get(f"{officer.url}/assets", timeout=10).json()["assets"] == []
        located = realm_json(home, "vault", "locate", asset.id)
        assert [loc["zone"] for loc in located["locations"]] == ["local"]
        assert not (officer.base / asset.name).exists()

        # The retry completes, sending only what the killed push had not landed verified. First the
        # officer finishes with the cut-off upload (its temp file is renamed or, here, removed).
        wait_until(lambda: not list(staged.glob(".partial-*")), 60, "the officer to drop the cut-off upload")
        landed = {p.name: p.stat().st_size for p in staged.iterdir()}
        assert 0 < len(landed) < len(tree(folder))
        retry = realm_json(home, "vault", "push", asset.id, "shed")
        assert retry["status"] == "done"
        assert retry["bytes_moved"] == asset.size_bytes - sum(landed.values())
        assert retry["files_skipped"] == len(landed)
        assert locations(home, asset.id)["shed"] == "verified"
        statuses = [r["status"] for r in query(home, "SELECT status FROM transfers ORDER BY id")]
        assert statuses == ["interrupted", "done"]
        held = requests.get(f"{officer.url}/assets/{asset.name}?hash=1", timeout=60).json()["files"]
        assert {f["relpath"]: f["sha256"] for f in held} == tree(folder)

        # A second push moves no bytes.
        assert realm_json(home, "vault", "push", asset.id, "shed")["bytes_moved"] == 0
    finally:
        stop(officer.proc)


# ---- the officer's rules ----------------------------------------------------------------------------
def test_officer_keeps_paths_inside_and_mutations_behind_the_token(tmp_path, monkeypatch):
    import hashlib

    officer = start_officer(tmp_path, "shed", monkeypatch)
    url, auth = officer.url, {"X-Realm-Token": officer.token}
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (officer.base / "escape").symlink_to(outside)
    try:
        for path in (
            "/fetch/..%2F..%2Foutside?path=secret.txt",
            "/fetch/x?path=..%2F..%2F..%2Foutside%2Fsecret.txt",
            f"/stat?path={outside}/secret.txt",
            "/stat?path=escape/secret.txt",
            "/fetch/escape?path=secret.txt",
            "/hash?path=escape/secret.txt",
        ):
            r = requests.get(url + path, timeout=10)
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert "not yours" not in r.text

        body = os.urandom(50_000)
        sha = hashlib.sha256(body).hexdigest()
        put = {"X-Sha256": sha, **auth}
        assert (
            requests.post(
                f"{url}/receive?path=a/b.bin", data=body, headers={"X-Sha256": sha}, timeout=10
            ).status_code
            == 401
        )
        assert (
            requests.post(
                f"{url}/receive?path=a/b.bin",
                data=body,
                headers={**put, "X-Realm-Token": "wrong"},
                timeout=10,
            ).status_code
            == 401
        )
        for bad in ("../evil.bin", "%2Fabs.bin", "escape/evil.bin"):
            assert (
                requests.post(f"{url}/receive?path={bad}", data=body, headers=put, timeout=10).status_code
                == 400
            )
        assert not (tmp_path / "evil.bin").exists() and not (outside / "evil.bin").exists()
        wrong = requests.post(f"{url}/receive?path=a/b.bin", data=flip_byte(body), headers=put, timeout=10)
        assert wrong.status_code == 422
        assert not (officer.base / "a" / "b.bin").exists()
        assert not list((officer.base / "a").glob(".partial-*"))  # the temp name went with the refusal

        assert (
            requests.post(f"{url}/receive?path=a/b.bin", data=body, headers=put, timeout=10).status_code
            == 201
        )
        got = requests.get(f"{url}/fetch/a?path=b.bin", timeout=10)
        assert got.content == body and got.headers["X-Sha256"] == sha
        assert requests.get(f"{url}/hash?path=a/b.bin", timeout=10).json()["sha256"] == sha
        assert requests.delete(f"{url}/files?path=a", timeout=10).status_code == 401
        assert requests.delete(f"{url}/files?path=escape", headers=auth, timeout=10).status_code == 400
        assert requests.delete(f"{url}/files?path=a", headers=auth, timeout=10).status_code == 200
        assert not (officer.base / "a").exists() and (outside / "secret.txt").exists()
    finally:
        stop(officer.proc)
    # Without a token an officer serves only on loopback.
    refused = realm_cli(
        tmp_path / "h",
        "officer",
        "--zone",
        "open",
        "--base-dir",
        str(tmp_path / "o"),
        "--bind",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--token-env",
        "NO_SUCH_TOKEN_VARIABLE",
    )
    assert refused.returncode == 1 and "without a token" in refused.stderr


def test_local_zone_refuses_paths_that_escape(tmp_path):
    from vault.zones import LocalZone, UnsafePath, safe_relpath

    root, outside = tmp_path / "zone", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    zone = LocalZone("z", root)
    for bad in ("", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b", "a\0b"):
        with pytest.raises(UnsafePath):
            safe_relpath(bad)
    with pytest.raises(UnsafePath):
        zone.path("link/secret.txt")
    assert zone.path("a/b.bin") == root.resolve() / "a" / "b.bin"


# ---- registering zones -----------------------------------------------------------------------------
def test_zone_add_infers_the_kind_and_refuses_what_it_cannot_use(realm, tmp_path):
    home = realm.home.root
    folder = tmp_path / "mounted-nas"
    folder.mkdir()
    assert realm_json(home, "vault", "zone", "add", "nas", str(folder))["kind"] == "local"
    assert realm_json(home, "vault", "zone", "add", "nas", str(folder))["url"] == str(folder)  # again: no-op
    assert realm_json(home, "vault", "zone", "add", "far", "http://10.1.2.3:8768")["kind"] == "officer"
    assert realm_json(home, "vault", "zone", "add", "mem", "memory://realm")["kind"] == "fsspec"
    for args, words in (
        (("nope", str(tmp_path / "not-mounted")), "does not exist"),
        (("odd", "nosuchproto://x"), "no fsspec backend"),
        (("local", str(folder)), "realm home"),
        (("Bad Name", str(folder)), "zone name"),
        (("nas", str(tmp_path)), "already points"),
    ):
        proc = realm_cli(home, "vault", "zone", "add", *args)
        assert proc.returncode == 1 and words in proc.stderr, (args, proc.stderr)
    # An unreachable officer lists with unknown free space instead of failing the listing.
    listed = {z["id"]: z["free_bytes"] for z in realm_json(home, "vault", "zones")}
    assert listed["far"] is None and listed["nas"] > 0


def test_zones_declared_in_files_are_registered(realm, tmp_path):
    home = realm.home.root
    folder = tmp_path / "declared"
    folder.mkdir()
    (home / "zones.yaml").write_text(f"zones:\n  attic: {{url: {folder}}}\n")
    (home / "hosts.yaml").write_text(
        "hosts:\n"
        "  trainer: {address: 127.0.0.1, roles: [arena], services: {tavern: null, vault: 9767}}\n"
        "  nas:\n"
        "    address: 127.0.0.9\n"
        "    roles: [storage]\n"
        "    services: {officer: 8770}\n"
        "    zones: {cellar: {token_env: CELLAR_TOKEN}}\n"
    )
    listed = {z["id"]: z for z in realm_json(home, "vault", "zones")}
    assert (listed["attic"]["kind"], listed["attic"]["url"]) == ("local", str(folder))
    assert (listed["cellar"]["kind"], listed["cellar"]["url"]) == ("officer", "http://127.0.0.9:8770")
    assert listed["cellar"]["token_env"] == "CELLAR_TOKEN"
    (home / "zones.yaml").write_text(f"zones:\n  attic: {{ur: {folder}}}\n")
    bad = realm_cli(home, "vault", "zones")
    assert bad.returncode == 1 and "key 'zones.attic.ur'" in bad.stderr, bad.stderr


# ---- copies are never lost by accident ----------------------------------------------------------------
def test_the_last_verified_copy_needs_force(realm, tmp_path):
    from vault.catalog import Catalog

    home = realm.home.root
    data = home / "queue" / "recently_completed" / "000001__chats.jsonl"
    data.write_text('{"text": "hello"}\n' * 1000)
    asset = Catalog(realm.store, home).register(data, kind="data")
    nas = tmp_path / "nas"
    nas.mkdir()
    realm_json(home, "vault", "zone", "add", "nas", str(nas))
    assert realm_json(home, "vault", "push", asset.id, "nas")["bytes_moved"] == data.stat().st_size
    assert (nas / asset.name).read_bytes() == data.read_bytes()  # a file asset lies at <root>/<name>
    realm_json(home, "vault", "remove", asset.id, "local")  # another verified copy exists: allowed
    assert not data.exists()
    refused = realm_cli(home, "vault", "remove", asset.id, "nas")
    assert refused.returncode == 1 and "last verified copy" in refused.stderr
    assert (nas / asset.name).exists() and locations(home, asset.id) == {"nas": "verified"}
    # Pulled home again (the old local path was forgotten with its row: data lands in data/).
    got = realm_json(home, "vault", "pull", asset.id)
    back = home / got["path"]
    assert got["path"] == f"data/{data.name}" and back.read_bytes() == (nas / asset.name).read_bytes()
    realm_json(home, "vault", "remove", asset.id, "nas")
    assert realm_cli(home, "vault", "remove", asset.id, "local").returncode == 1
    assert realm_cli(home, "vault", "remove", asset.id, "local", "--force").returncode == 0
    assert not back.exists() and locations(home, asset.id) == {}


def test_push_on_a_terminal_draws_progress(realm, tmp_path):
    from vault.catalog import Catalog

    home = realm.home.root
    asset = Catalog(realm.store, home).register(big_model(home, files=2, mb=8))
    nas = tmp_path / "nas"
    nas.mkdir()
    realm_json(home, "vault", "zone", "add", "nas", str(nas))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*REALM_CMD, "vault", "push", asset.id, "nas", "--home", str(home)],
        cwd=REPO,
        env=clean_env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(60) == 0
    text = out.decode(errors="replace")
    # A bar with its label, a rate and the end reached; the JSON-free summary line follows it.
    assert f"push {asset.id}" in text and "100" in text and "/s" in text, text
    assert "nas" in text.splitlines()[-1], text
