"""The real server: `realm tavern` under gunicorn, real Socket.IO clients over WebSocket, SIGTERM,
restarts with automatic reconnection, and `realm up`/`realm down` with the Tavern beside the arena."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests
import socketio

from tests.helpers import free_port, isolated_config, run_realm, start_tavern, stop, wait_health, wait_until

# start_tavern and stop are imported from here by tests/test_browser_tavern.py.
__all__ = ["start_tavern", "stop"]


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
    # The relay starts at the log's head on its first poll; an event written before that is history,
    # not pushed. Probe until one is pushed, so the event under test comes after the head.
    wait_until(lambda: realm.events.emit("probe") and arrived.wait(0.5), 60, "the relay to push a probe")
    eid = realm.events.emit("step", step=1, loss=2.0)
    pushed = wait_until(lambda: [e for e in got if e["id"] == eid], 60, "the step event pushed")
    assert pushed[0]["payload"] == {"step": 1, "loss": 2.0}
    second = run_realm("tavern", "--port", str(free_port()), home=realm.home.root, timeout=30)
    assert second.returncode != 0 and "already runs" in second.stderr
    sio.disconnect()
    assert stop(proc) == 0  # how long that takes is measured by bench/tavern.py


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
        wait_until(lambda: len(connects) >= 2, 60, "the client to reconnect by itself")
        caught = sio.call("catch_up", {"since": seen}, timeout=5)
        assert [e["id"] for e in caught] == missed
    finally:
        sio.disconnect()
        stop(proc)


@pytest.mark.slow
def test_realm_up_starts_the_tavern_and_down_stops_it(home):
    # Free ports for every service, and no idle quests: the arena stays idle, this test is the Tavern's.
    port = isolated_config(home)["ports"]["tavern"]
    up = run_realm("up", home=home, timeout=60)
    assert up.returncode == 0, up.stderr
    try:
        assert wait_health(port, timeout=60)["service"] == "tavern"
    finally:
        down = run_realm("down", home=home, timeout=120)
    assert down.returncode == 0, down.stderr
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
