"""The Tavern through Flask's and Flask-SocketIO's test clients: every route and every socket event."""

from __future__ import annotations

import io
import json
import time

import pytest
import yaml

from sentinels.config import DEFAULT_CONFIG
from tavern.app import create_app, socketio
from tests.test_tavern_support import add_quest, emit_steps, reject_quest, seed_guild


@pytest.fixture
def app(realm):
    return create_app(realm, testing=True)


@pytest.fixture
def client(app):
    return app.test_client()


def test_pages_static_and_vendor_files_are_served(client):
    for path in ("/", "/armory", "/guild/bin", "/oracle", "/vault"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert b"The Tavern" in r.data
    assert b'type="module"' in client.get("/").data
    for name in ("socket.io.esm.min.js", "uPlot.esm.js", "uPlot.min.css"):
        assert client.get(f"/vendor/{name}").status_code == 200, name
    assert client.get("/vendor/package.json").status_code == 404
    svg = client.get("/static/svg/dio.svg")
    assert svg.status_code == 200 and b"<svg" in svg.data


def test_health_and_json_errors(client, realm):
    h = client.get("/health").get_json()
    assert h["status"] == "ok" and h["home"] == str(realm.home.root)
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.get_json()["status"] == 404
    r = client.delete("/api/state")
    assert r.status_code == 405 and "error" in r.get_json()
    assert client.get("/api/events?since=abc").get_json()["error"].startswith("query parameter since")


def test_state_snapshot_has_hero_battle_quests_skills_achievements(client, realm):
    add_quest(realm)
    emit_steps(realm, 1, 20)
    seed_guild(realm)
    s = client.get("/api/state").get_json()
    assert s["last_event_id"] == realm.events.last_id()
    assert s["hero"]["xp"] == 20 and s["hero"]["level"] == 0 and s["hero"]["name"] == "DIO"
    assert s["hero"]["next_level_xp"] == 1000
    assert s["battle"]["state"] == "fighting" and s["battle"]["step"] == 20
    assert s["quests"]["queued"] == 1
    bin_card = next(c for c in s["skills"] if c["id"] == "bin")
    assert (bin_card["level"], bin_card["max_level"], bin_card["working_level"]) == (2, 30, 3)
    assert [r["accuracy"] for r in bin_card["recent"]] == [0.8, 1.0, 0.8]
    assert s["achievements"][0]["name"] == "First Blood"
    assert s["auth"]["token_required"] is False


def test_events_since_kinds_and_paging(client, realm):
    emit_steps(realm, 1, 5)
    realm.events.emit("battle.start", quest_id=1, name="q", examples=3, epochs=1, step=0)
    all_ = client.get("/api/events?since=0").get_json()
    assert [e["kind"] for e in all_["events"]] == ["step"] * 5 + ["battle.start"]
    assert all_["more"] is False and all_["last_id"] == all_["events"][-1]["id"]
    page = client.get("/api/events?since=2&limit=2").get_json()
    assert [e["id"] for e in page["events"]] == [3, 4] and page["more"] is True
    battle = client.get("/api/events?since=0&kinds=battle.*").get_json()["events"]
    assert [e["kind"] for e in battle] == ["battle.start"]


def test_metrics_downsampling_keeps_extremes(client, realm):
    rows = [(time.time() + i, "step", json.dumps({"step": i, "loss": 1.0})) for i in range(1, 5001)]
    rows[1234] = (rows[1234][0], "step", json.dumps({"step": 1235, "loss": 9.0}))  # a spike
    rows[4321] = (rows[4321][0], "step", json.dumps({"step": 4322, "loss": 0.01}))  # a dip
    with realm.store.tx() as conn:
        conn.executemany("INSERT INTO events(ts, kind, payload) VALUES (?, ?, ?)", rows)
    realm.events.emit("val", step=2500, val_loss=1.5)
    m = client.get("/api/metrics?max_points=200").get_json()
    assert m["total_steps"] == 5000 and m["downsampled"] is True
    assert len(m["train"]) <= 200
    values = [p[2] for p in m["train"]]
    assert max(values) == 9.0 and min(values) == 0.01
    assert [1235, 9.0] in [[p[0], p[2]] for p in m["train"]]
    assert m["val"] == [[2500, m["val"][0][1], 1.5]]
    steps = [p[0] for p in m["train"]]
    assert steps == sorted(steps)
    t = client.get("/api/metrics?max_points=100&axis=time").get_json()
    assert t["axis"] == "time" and len(t["train"]) <= 100
    assert client.get("/api/metrics?axis=sideways").status_code == 400


def test_quest_board_priority_cancel_retry(client, realm):
    a = add_quest(realm, "a.jsonl")
    b = add_quest(realm, "b.jsonl")
    bad = reject_quest(realm)
    board = client.get("/api/quests").get_json()
    assert [q["name"] for q in board["columns"]["queued"]] == ["a.jsonl", "b.jsonl"]
    failed = board["columns"]["failed"][0]
    assert failed["reason"] == "line 1: not valid JSON" and failed["error"]["validator"] == "spec"
    r = client.post(f"/api/quests/{b.id}/priority", json={"priority": "high"})
    assert r.status_code == 200 and r.get_json()["priority"] == "high"
    assert [q["name"] for q in client.get("/api/quests").get_json()["columns"]["queued"]] == [
        "b.jsonl",
        "a.jsonl",
    ]
    assert client.post(f"/api/quests/{b.id}/priority", json={"priority": "urgent"}).status_code == 409
    r = client.post(f"/api/quests/{a.id}/cancel")
    assert r.get_json()["status"] == "cancelled"
    assert client.post(f"/api/quests/{a.id}/cancel").status_code == 409
    r = client.post(f"/api/quests/{bad.id}/retry")
    assert r.status_code == 200 and r.get_json()["inbox_path"] == "inbox/broken.jsonl"
    assert (realm.home.inbox / "broken.jsonl").exists()
    assert client.post(f"/api/quests/{a.id}/dance").status_code == 404
    assert client.post("/api/quests/999/retry").status_code == 404
    assert client.get(f"/api/quests/{b.id}").get_json()["name"] == "b.jsonl"
    assert client.get("/api/quests?name=b.jsonl").get_json()["columns"]["queued"][0]["id"] == b.id


def test_upload_goes_through_intake_201_location(client, realm):
    good = b'{"messages": [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}]}\n' * 3
    r = client.post(
        "/api/quests",
        data={"file": (io.BytesIO(good), "../../etc/My Quest!.jsonl"), "priority": "high"},
        content_type="multipart/form-data",
    )
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert r.headers["Location"] == f"/api/quests/{body['quest']['id']}"
    assert "/" not in body["name"] and body["name"].endswith(".jsonl")
    assert body["quest"]["status"] == "queued" and body["quest"]["priority"] == "high"
    r = client.post("/api/quests?name=broken.jsonl", data=b"{oops\n")
    assert r.status_code == 201
    assert r.get_json()["quest"]["status"] == "failed" and r.get_json()["quest"]["reason"]
    assert client.post("/api/quests", data=b"x").status_code == 400
    r = client.post("/api/quests?priority=urgent&name=a.jsonl", data=good)
    assert r.status_code == 400


def test_upload_size_limit(realm):
    from sentinels.config import load_config
    from sentinels.realm import Realm

    small = Realm(load_config(home=realm.home.root, overrides={"tavern.max_upload_mb": 1}))
    client = create_app(small, testing=True).test_client()
    r = client.post("/api/quests?name=big.jsonl", data=b"x" * (1024 * 1024 + 10))
    assert r.status_code == 413
    assert not list(realm.home.inbox.glob("big*"))


def test_control_is_queued_through_arena_control(client, realm):
    r = client.post("/api/control", json={"action": "pause"})
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "requested" and [c["action"] for c in body["pending_commands"]] == ["pause"]
    assert realm.events.latest("control.sent").payload["action"] == "pause"
    assert client.get("/api/state").get_json()["pending_commands"][0]["action"] == "pause"
    assert client.post("/api/control", json={"action": "dance"}).status_code == 400


def test_skills_and_eval_history(client, realm):
    seed_guild(realm)
    skills = client.get("/api/skills").get_json()["skills"]
    assert {s["id"] for s in skills} >= {"bin", "sy"}
    ev = client.get("/api/skills/BIN/evals").get_json()
    assert ev["skill"]["name"] == "Binary Alchemy" and len(ev["evals"]) == 4
    assert ev["evals"][0]["items"][1] == {
        "prompt": "①① - ⓪① = ?",
        "expected": "①⓪",
        "response": "①①",
        "correct": False,
    }
    assert client.get("/api/skills/nope/evals").status_code == 404


def test_config_read_validate_and_write_to_home(client, realm):
    before = DEFAULT_CONFIG.read_text()
    c = client.get("/api/config").get_json()
    assert c["source"] == "repo" and c["config"]["training"]["batch_size"] == 2
    assert "ports.tavern" in c["restart_keys"] and "home" not in c["config"]
    cfg = c["config"]
    cfg["training"]["batch_size"] = 8
    cfg["ports"]["tavern"] = 9999
    r = client.put("/api/config", json={"config": cfg})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["changed"] == ["ports.tavern", "training.batch_size"]
    assert r.get_json()["restart_needed"] == ["ports.tavern"]
    text = (realm.home.root / "realm.yaml").read_text()
    saved = yaml.safe_load(text)
    assert saved["training"]["batch_size"] == 8
    # Only the changed values moved: the repo file's comments and flow lists are still there.
    assert "# longest example (DIO's context)" in text and "skills: [bin, sy]" in text
    assert "batch_size: 8" in text and "tavern: 9999" in text
    assert DEFAULT_CONFIG.read_text() == before
    assert client.get("/api/config").get_json()["source"] == "home"
    cfg["training"]["batch_size"] = "lots"
    r = client.put("/api/config", json={"config": cfg})
    assert r.status_code == 422
    assert r.get_json()["key"] == "training.batch_size" and "expected an integer" in r.get_json()["error"]
    r = client.put("/api/config", json={"yaml": "training: [unclosed"})
    assert r.status_code == 422
    r = client.put("/api/config", json={"yaml": "# mine\ntraining:\n  batch_size: 2  # small\n"})
    assert r.status_code == 200, r.get_json()
    assert "batch_size: 2  # small" in (realm.home.root / "realm.yaml").read_text()
    assert client.put("/api/config", json={"nope": 1}).status_code == 400


def test_token_rule_for_mutating_calls(realm):
    from sentinels.config import load_config
    from sentinels.realm import Realm

    open_app = create_app(realm, bind="0.0.0.0", testing=True).test_client()
    r = open_app.post("/api/control", json={"action": "pause"})
    assert r.status_code == 403 and "tavern.token" in r.get_json()["error"]
    assert open_app.get("/api/state").status_code == 200  # reads stay open
    locked = Realm(load_config(home=realm.home.root, overrides={"tavern.token": "s3cret"}))
    c = create_app(locked, bind="0.0.0.0", testing=True).test_client()
    assert c.post("/api/control", json={"action": "pause"}).status_code == 401
    assert (
        c.post("/api/control", json={"action": "pause"}, headers={"X-Realm-Token": "nope"}).status_code == 401
    )
    ok = c.post("/api/control", json={"action": "pause"}, headers={"X-Realm-Token": "s3cret"})
    assert ok.status_code == 202
    assert c.get("/api/state").get_json()["auth"]["token_required"] is True
    loop = create_app(realm, testing=True).test_client()
    r = loop.post("/api/control", json={"action": "pause"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.get_json()["error"]


def test_socket_connect_hello_relay_push_and_catch_up(app, realm):
    relay = app.extensions["tavern.relay"]
    a = socketio.test_client(app)
    b = socketio.test_client(app)
    assert a.is_connected() and b.is_connected()
    hello = a.get_received()
    assert hello[0]["name"] == "hello" and hello[0]["args"][0]["last_event_id"] == 0
    b.get_received()
    relay.poll_once()  # first poll only records the head
    emit_steps(realm, 1, 3)
    pushed = relay.poll_once()
    assert [e["payload"]["step"] for e in pushed] == [1, 2, 3]
    for client in (a, b):  # one tail, broadcast to the room: every client gets the same batch
        got = client.get_received()
        assert [m["name"] for m in got] == ["events"]
        assert [e["payload"]["step"] for e in got[0]["args"][0]] == [1, 2, 3]
    assert relay.poll_once() == []
    missed = a.emit("catch_up", {"since": 1}, callback=True)
    assert [e["payload"]["step"] for e in missed] == [2, 3]
    assert a.emit("catch_up", {"since": 0, "kinds": ["battle.*"]}, callback=True) == []
    a.disconnect()
    assert not a.is_connected() and b.is_connected()
    b.disconnect()
