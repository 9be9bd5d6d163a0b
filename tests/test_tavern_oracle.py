"""The Tavern's /oracle/* endpoints (tavern/api/oracle.py).

This realm's side (the ledger's checkpoints, eval problems, the scorer's verdict, the hosts registry)
runs through Flask's test client on a real trained home. The proxied side runs for real: a
`realm oracle` process on a loopback port serving the checkpoints of the session's short training run,
found by a `realm tavern` process through the home's hosts.yaml, and plain HTTP clients on the Tavern.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from bench.oracle import start_oracle
from tests.conftest import TRAINED_STEPS, free_port
from tests.helpers import free_ports, start_tavern, stop, wait_until

ORACLE_HOST = "gpu"  # the Oracle's host name in the test registry


def write_hosts(home: Path, hosts: dict[str, int]) -> None:
    """A hosts.yaml in the home: each named host on loopback offering the oracle at its port."""
    spec = {
        name: {"address": "127.0.0.1", "roles": ["inference"], "services": {"oracle": port}}
        for name, port in hosts.items()
    }
    (home / "hosts.yaml").write_text(yaml.safe_dump({"hosts": spec}))


def open_app(home: Path):
    from sentinels.realm import Realm
    from tavern.app import create_app

    realm = Realm.open(home)
    return realm, create_app(realm, testing=True).test_client()


@pytest.fixture
def tavern(trained_copy):
    realm, client = open_app(trained_copy)
    yield realm, client
    realm.store.close()


def test_the_room_is_served_and_in_the_nav(tavern):
    _, client = tavern
    page = client.get("/oracle").get_data(as_text=True)
    assert 'src="/static/js/oracle.js"' in page and "css/oracle.css" in page
    assert '<a href="/oracle" class="active">Oracle</a>' in page  # a live room, no longer "soon"
    for path in ("/static/js/oracle.js", "/static/css/oracle.css"):
        assert client.get(path).status_code == 200, path


def test_checkpoint_picker_lists_the_ledger_with_loss_skill_age_aliases(tavern):
    realm, client = tavern
    from vault.ledger import Ledger

    Ledger(realm.store, realm.events).set_alias("champion", TRAINED_STEPS[1], by="test", reason="pick")
    data = client.get("/oracle/checkpoints").get_json()
    steps = [c["step"] for c in data["checkpoints"]]
    assert steps == sorted(TRAINED_STEPS, reverse=True)
    by_step = {c["step"]: c for c in data["checkpoints"]}
    assert "champion" in by_step[TRAINED_STEPS[1]]["aliases"]
    assert "latest" in by_step[TRAINED_STEPS[-1]]["aliases"]
    # The default is the champion (not the newest), named by a model id the Oracle takes.
    assert data["default"] == by_step[TRAINED_STEPS[1]]["model"]
    for c in data["checkpoints"]:
        assert c["model"].startswith(f"checkpoint-{c['step']}-")
        assert c["train_loss"] is not None and c["age_s"] is not None and c["age_s"] >= 0


def test_hosts_come_from_the_registry(tavern):
    realm, client = tavern
    write_hosts(realm.home.root, {"gpu": 9001, "spare": 9002})
    data = client.get("/oracle/hosts").get_json()
    assert [h["name"] for h in data["hosts"]] == ["gpu", "spare"]
    assert data["default"] == "gpu" and data["hosts"][0]["default"] is True
    assert data["hosts"][1]["url"] == "http://127.0.0.1:9002"
    assert data["source"].endswith("hosts.yaml")


def test_unknown_and_unreachable_hosts_are_named(tavern):
    realm, client = tavern
    dead = free_port()  # nothing listens there
    write_hosts(realm.home.root, {"gpu": dead})
    r = client.get("/oracle/status?host=nowhere")
    assert r.status_code == 404 and "nowhere" in r.get_json()["error"] and r.get_json()["hosts"] == ["gpu"]
    status = client.get("/oracle/status").get_json()["hosts"]
    assert status[0]["host"] == "gpu" and status[0]["up"] is False and str(dead) in status[0]["error"]
    r = client.post("/oracle/chat", json={"message": "hello", "host": "gpu"})
    assert r.status_code == 502 and "gpu" in r.get_json()["error"]
    assert client.post("/oracle/chat", json={"host": "gpu"}).status_code == 400  # no message


def test_errors_on_the_oracle_routes_are_json(tavern):
    realm, client = tavern
    (realm.home.root / "hosts.yaml").write_text(
        "hosts:\n  gpu:\n    address: 127.0.0.1\n    services: {oracle: 0}\n"
    )
    r = client.get("/oracle/hosts")
    assert r.status_code == 500 and r.is_json
    assert "hosts.yaml" in r.get_json()["error"] and "hosts.gpu.services" in r.get_json()["error"]


def test_eval_problem_and_the_scorers_verdict(tavern):
    _, client = tavern
    p = client.get("/oracle/problem?skill=bin&level=3&index=2").get_json()
    assert p["index"] == 2 and p["count"] >= 3 and p["prompt"].startswith("Compute:")
    drawn = client.get("/oracle/problem?skill=bin&level=3").get_json()
    assert 0 <= drawn["index"] < drawn["count"]
    verdict = client.post(
        "/oracle/score",
        json={"skill": "bin", "level": 3, "index": 2, "answers": [p["expected"], "I do not know"]},
    ).get_json()
    assert verdict["correct"] == [True, False] and verdict["expected"] == p["expected"]
    assert client.get("/oracle/problem?skill=nope&level=1").status_code == 404
    assert client.get("/oracle/problem?skill=bin&level=999").status_code == 400
    assert client.get("/oracle/problem?skill=bin&level=3&index=99").status_code == 400


def test_writes_follow_the_token_rule(tavern):
    _, client = tavern
    r = client.post(
        "/oracle/load", json={"step": TRAINED_STEPS[0]}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    r = client.post("/oracle/chat", json={"message": "hi"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    # A step the ledger does not hold is refused before any Oracle is asked.
    r = client.post("/oracle/load", json={"step": 999999})
    assert r.status_code == 404 and "999999" in r.get_json()["error"]


# ---- the proxied side: a real Oracle and a real Tavern ------------------------------------------------
@dataclass
class Stack:
    home: Path
    oracle: str
    tavern: str
    names: dict[int, str]  # step -> canonical checkpoint name

    def oracle_status(self) -> dict:
        return requests.get(f"{self.oracle}/oracle/status", timeout=30).json()


def start_stack(trained_home: Path, root: Path):
    """A copy of the trained home with `champion` on the middle checkpoint, a `realm oracle` on a free
    port, a hosts.yaml naming it host `gpu`, and a `realm tavern` on that home. Yields a Stack."""
    from sentinels.realm import Realm
    from vault.ledger import Ledger

    home = root / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("*.lock", "*.pid", "logs"))
    realm = Realm.open(home)
    try:
        Ledger(realm.store, realm.events).set_alias("champion", TRAINED_STEPS[1], by="test", reason="stack")
        names = {r["step"]: r["name"] for r in Ledger(realm.store).list()}
    finally:
        realm.store.close()
    oracle_port, tavern_port = free_ports(2)
    write_hosts(home, {ORACLE_HOST: oracle_port})
    oracle = start_oracle(home, oracle_port, env={"REALM_LOG_CONSOLE": "0"})
    try:
        tavern = start_tavern(home, tavern_port)
    except BaseException:
        stop(oracle)
        raise
    try:
        yield Stack(home, f"http://127.0.0.1:{oracle_port}", f"http://127.0.0.1:{tavern_port}", names)
    finally:
        stop(tavern)
        stop(oracle)


@pytest.fixture(scope="module")
def stack(trained_home, tmp_path_factory):
    yield from start_stack(trained_home, tmp_path_factory.mktemp("tavern-oracle"))


def sse_events(resp: requests.Response) -> list[str]:
    """The `data:` payloads of an SSE response, in order (comment lines such as `: loading` skipped)."""
    return [line[6:] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def test_chat_through_the_tavern_answers_as_the_named_checkpoint(stack):
    r = requests.post(
        f"{stack.tavern}/oracle/chat",
        json={"message": "Compute: add(①, ①)", "step": TRAINED_STEPS[0], "max_tokens": 8},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == stack.names[TRAINED_STEPS[0]] and body["host"] == ORACLE_HOST
    assert isinstance(body["reply"], str) and body["reply"] == body["choices"][0]["message"]["content"]
    # Without a model the Oracle answers as the champion.
    r = requests.post(f"{stack.tavern}/oracle/chat", json={"message": "hi", "max_tokens": 4}, timeout=120)
    assert r.json()["model"] == stack.names[TRAINED_STEPS[1]]


def test_a_stream_passes_through_as_openai_sse(stack):
    r = requests.post(
        f"{stack.tavern}/oracle/chat",
        json={
            "messages": [{"role": "user", "content": "Hello DIO"}],
            "model": "dio@champion",
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 12,
            "ignore_eos": True,
            "host": ORACLE_HOST,
        },
        stream=True,
        timeout=120,
    )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["X-Oracle-Host"] == ORACLE_HOST
    data = sse_events(r)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["model"] for c in chunks} == {stack.names[TRAINED_STEPS[1]]}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert sum(1 for d in deltas if d) >= 2  # token by token, not one block
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 12
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"


def test_load_status_unload_through_the_tavern(stack):
    name = stack.names[TRAINED_STEPS[0]]
    r = requests.post(f"{stack.tavern}/oracle/load", json={"step": TRAINED_STEPS[0]}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == name and r.json()["host"] == ORACLE_HOST
    hosts = requests.get(f"{stack.tavern}/oracle/status", timeout=30).json()["hosts"]
    assert hosts[0]["host"] == ORACLE_HOST and hosts[0]["up"] is True
    assert name in [m["model"] for m in hosts[0]["status"]["loaded"]]
    r = requests.post(f"{stack.tavern}/oracle/unload", json={"checkpoint": name}, timeout=60)
    assert r.status_code == 200 and r.json()["unloaded"] is True
    loaded = requests.get(f"{stack.tavern}/oracle/status?host={ORACLE_HOST}", timeout=30).json()
    assert name not in [m["model"] for m in loaded["hosts"][0]["status"]["loaded"]]


def test_an_oracle_error_keeps_its_status_and_its_words(stack):
    r = requests.post(f"{stack.tavern}/oracle/chat", json={"message": "hi", "model": "dio@nope"}, timeout=60)
    assert r.status_code == 404
    body = r.json()
    assert body["oracle"]["code"] == "model_not_found" and "dio@nope" in body["error"]
    assert stack.names[TRAINED_STEPS[0]] in body["error"]  # the valid ids are listed


def test_a_client_that_goes_away_stops_the_generation(stack):
    """The browser's Stop (or a closed tab): the Tavern closes its upstream stream, and the Oracle
    cancels the job instead of generating the other ~500 tokens."""
    before = stack.oracle_status()["generation"]["cancelled"]
    r = requests.post(
        f"{stack.tavern}/oracle/chat",
        json={
            "message": "hi",
            "step": TRAINED_STEPS[0],
            "stream": True,
            "max_tokens": 512,
            "ignore_eos": True,
        },
        stream=True,
        timeout=120,
    )
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
            break  # the first token arrived: the generation is running
    r.close()

    def cancelled():
        gen = stack.oracle_status()["generation"]
        return gen if gen["cancelled"] > before and gen["active"] == 0 else None

    gen = wait_until(cancelled, 60, "the Oracle to cancel the abandoned stream")
    job = next(j for j in gen["recent"] if j["finish"] == "cancelled")
    assert job["tokens"] < 512
