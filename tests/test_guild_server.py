"""`realm skill serve` as a real HTTP server, and a remote-configured skill used through one client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from msgspec.structs import replace

from guild.client import LocalSkill, RemoteSkill, open_skill
from guild.guild import Guild
from guild.skills import load_skill
from tests.conftest import REALM_PY, REPO, free_port


@pytest.fixture(scope="module")
def skill_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("server-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REALM_HOME"}
    proc = subprocess.Popen(
        [sys.executable, str(REALM_PY), "skill", "serve", "bin", "--port", str(port), "--home", str(home)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"skill server did not start: {proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_contract_routes(skill_server):
    url = skill_server
    assert requests.get(url + "/health").json() == {"ok": True, "skill": "bin"}
    info = requests.get(url + "/info").json()
    assert (info["id"], info["max_level"], info["generator"]["version"]) == ("bin", 30, 2)
    levels = requests.get(url + "/levels").json()["levels"]
    assert len(levels) == 30 and levels[0]["bits"] == 2 and levels[29]["bits"] == 32
    assert "add" in levels[0]["operations"] and levels[11]["signed"]
    body = {"level": 5, "count": 4, "seed": 9}
    remote = requests.post(url + "/generate", json=body).json()["items"]
    local = LocalSkill(load_skill("bin")).generate(5, 4, 9)
    assert remote == local  # the same generator, the same bytes, over HTTP
    ev = requests.get(url + "/eval", params={"level": 2}).json()["items"]
    assert ev == LocalSkill(load_skill("bin")).eval_items(2, 5)
    item = ev[0]
    scored = requests.post(url + "/score", json={**item, "response": item["expected"]}).json()
    assert scored == {"correct": True}
    assert requests.post(url + "/generate", json={"level": 99}).status_code == 400
    assert "level" in requests.get(url + "/eval", params={"level": "x"}).json()["error"]
    assert requests.get(url + "/nope").status_code == 404


def remote_skills_dir(tmp_path: Path, url: str) -> Path:
    d = tmp_path / "skills"
    d.mkdir()
    data = yaml.safe_load((REPO / "configs" / "skills" / "bin.yaml").read_text(encoding="utf-8"))
    data["api"] = {"url": url}
    (d / "bin.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return d


def test_remote_skill_quest_and_eval(skill_server, realm, tmp_path):
    d = remote_skills_dir(tmp_path, skill_server)
    spec = load_skill("bin", d)
    client = open_skill(spec)
    assert isinstance(client, RemoteSkill) and client.health()["ok"]
    cfg = replace(
        realm.config,
        guild=replace(realm.config.guild, skills=("bin",), skills_dir=str(d), idle_quest_size=64),
    )
    guild = Guild(realm.home.root, realm.store, realm.events, cfg)
    assert guild.specs["bin"].remote

    quest = guild.write_idle_quest(realm.home.inbox, count=64)  # generated over HTTP
    lines = [json.loads(x) for x in quest.read_text(encoding="utf-8").splitlines()]
    # 64 problems generated over HTTP; each distinct one is written once, with epochs to make up 64.
    meta = json.loads(quest.with_name(quest.name + ".meta.json").read_text(encoding="utf-8"))
    assert meta["level_mix"] == {"1": 64} and len(lines) == meta["count"] == len(
        {json.dumps(x) for x in lines}
    )
    assert meta["count"] * meta["epochs"] >= 64
    assert all(x["metadata"] == {"skill": "bin", "level": 1} for x in lines)
    evals = [
        json.loads(x) for x in (realm.home.root / "evalsets/bin/v2/level-01.jsonl").read_text().splitlines()
    ]
    assert evals == [
        {"skill": "bin", "level": 1, "prompt": it["prompt"], "expected": it["expected"], "key": it["key"]}
        for it in LocalSkill(load_skill("bin")).eval_items(1, 5)
    ]
    quarantined = {" ".join(e["prompt"].split()) for e in evals}
    assert not {" ".join(x["messages"][0]["content"].split()) for x in lines} & quarantined

    gold = {e["prompt"]: e["expected"] for e in evals}
    [row] = guild.evaluate(lambda prompts, **_: [gold[p] for p in prompts], step=10)
    assert (row["skill"], row["level"], row["n"], row["correct"], row["accuracy"]) == ("bin", 1, 5, 5, 1.0)
    [echo] = guild.evaluate(lambda prompts, **_: list(prompts), step=20)
    assert echo["accuracy"] == 0.0
