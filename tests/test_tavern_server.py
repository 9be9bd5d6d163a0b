"""The real server: `realm tavern` under gunicorn, real Socket.IO clients over WebSocket, SIGTERM,
restarts with automatic reconnection, and `realm up`/`realm down` with the Tavern beside the arena."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
import socketio
import yaml

from tests.conftest import REALM_PY, REPO, free_port, run_realm


def start_tavern(home, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "REALM_HOME"}
    proc = subprocess.Popen(
        [sys.executable, str(REALM_PY), "tavern", "--home", str(home), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_health(port, proc)
    return proc


def wait_health(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"tavern exited early ({proc.returncode}):\n{proc.stdout.read()}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"no /health on port {port} after {timeout}s")


def stop(proc: subprocess.Popen, timeout: float = 15) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


@pytest.fixture
def server(realm):
    port = free_port()
    proc = start_tavern(realm.home.root, port)
    yield port, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_websocket_client_gets_events_from_another_writer_and_sigterm_exits_0(server, realm):
    port, proc = server
    got: list[dict] = []
    arrived = threading.Event()
    sio = socketio.Client()

    @sio.on("events")
    def on_events(evs):
        got.extend(evs)
        arrived.set()

    # The Tavern yields the cores to the trainer: it runs at tavern.nice (10) above its parent.
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == max(10, os.getpriority(os.PRIO_PROCESS, 0))
    sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
    assert sio.transport() == "websocket"
    time.sleep(0.3)  # the relay records the head on its first poll
    eid = realm.events.emit("step", step=1, loss=2.0)
    assert arrived.wait(5), "no event pushed"
    assert got[0]["id"] == eid and got[0]["payload"] == {"step": 1, "loss": 2.0}
    second = run_realm("tavern", "--port", str(free_port()), home=realm.home.root, timeout=30)
    assert second.returncode != 0 and "already runs" in second.stderr
    sio.disconnect()
    t0 = time.monotonic()
    assert stop(proc) == 0
    assert time.monotonic() - t0 < 10


def test_clients_reconnect_after_a_restart_and_catch_up(realm):
    port = free_port()
    proc = start_tavern(realm.home.root, port)
    connects = []
    sio = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1)
    sio.on("connect", lambda: connects.append(time.monotonic()))
    sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
    seen = realm.events.last_id()
    try:
        assert stop(proc) == 0
        missed = [realm.events.emit("step", step=s, loss=1.0) for s in (10, 11)]  # while the Tavern is down
        proc = start_tavern(realm.home.root, port)
        deadline = time.monotonic() + 20
        while len(connects) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(connects) >= 2, "the client did not reconnect by itself"
        caught = sio.call("catch_up", {"since": seen}, timeout=5)
        assert [e["id"] for e in caught] == missed
    finally:
        sio.disconnect()
        stop(proc)


@pytest.mark.slow
def test_realm_up_starts_the_tavern_and_down_stops_it(home):
    port = free_port()
    data = yaml.safe_load((REPO / "configs" / "realm.yaml").read_text())
    data["ports"]["tavern"] = port
    data["guild"]["auto_generate"] = False  # keep the arena idle: this test is about the Tavern
    (home / "realm.yaml").write_text(yaml.safe_dump(data))
    up = run_realm("up", home=home, timeout=60)
    assert up.returncode == 0, up.stderr
    try:
        assert wait_health(port, timeout=60)["service"] == "tavern"
    finally:
        down = run_realm("down", home=home, timeout=120)
    assert down.returncode == 0, down.stderr
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
