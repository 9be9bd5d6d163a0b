"""The guardian restarts a crashed service with backoff and stops children on request."""

from __future__ import annotations

import sys
import threading

from sentinels.guardian import Guardian, Service
from sentinels.locks import AlreadyRunning, InstanceLock, is_held
from tests.helpers import isolated_config, run_realm, wait_until


def test_crashing_service_is_restarted_with_backoff(realm):
    marker = realm.home.root / "starts.txt"
    crash = Service(
        "crasher", [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)"]
    )
    stay = Service("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
    stop = threading.Event()
    g = Guardian(realm.home.root, [crash, stay], stop)
    t = threading.Thread(target=g.run)
    t.start()
    try:
        # started, crashed, restarted at least twice
        wait_until(lambda: marker.exists() and len(marker.read_text()) >= 3, 60, "three starts")
        assert crash.restarts >= 2
        assert crash.backoff >= 4.0  # 1 s, then 2 s, then 4 s: doubling
        assert is_held(realm.home.run, "guardian")
        assert stay.proc is not None and stay.proc.poll() is None
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    assert stay.proc.poll() is not None  # SIGTERM passed on to the child
    assert not is_held(realm.home.run, "guardian")


def test_instance_lock_refuses_second_holder(realm):
    with InstanceLock(realm.home.run, "arena"):
        try:
            InstanceLock(realm.home.run, "arena").acquire()
        except AlreadyRunning as exc:
            assert "arena already runs" in str(exc)
        else:
            raise AssertionError("a second lock holder was allowed")
    assert not is_held(realm.home.run, "arena")


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_up_and_down_round_trip(home):
    # A temp home with every port free (nothing on 8888 or any fixed port) and no idle quests.
    cfg = isolated_config(home)
    up = run_realm("up", home=home, check=True, timeout=60)
    assert "the realm is up" in up.stdout
    # Every local service runs under the guardian, the VaultKeeper API included.
    vault_health = f"http://127.0.0.1:{cfg['ports']['vault']}/health"
    wait_until(lambda: _answers(vault_health), 60, f"the VaultKeeper at {vault_health}")
    again = run_realm("up", home=home, check=True, timeout=60)
    assert "already up" in again.stdout
    st = run_realm("status", "--json", home=home, check=True)
    assert '"guardian": true' in st.stdout
    assert '"vault": true' in st.stdout
    down = run_realm("down", home=home, check=True, timeout=180)
    assert "the realm is down" in down.stdout
    assert "not running" in run_realm("down", home=home, check=True).stdout
