"""The Armory over real HTTP: `PUT /api/config` against `realm tavern` on a free loopback port.

A structured edit changes only the keys it names (issue #12 defect 4), a section set to null and a
body of the wrong shape are refused with 422 naming the field (defect 3), and a "(restart)" key that
changed is listed in restart_needed.
"""

from __future__ import annotations

import pytest
import requests
import yaml

from sentinels.config import DEFAULT_CONFIG, load_config
from tests.helpers import free_port, start_tavern, stop, write_home_config

TOKEN = "armory-test-token"


@pytest.fixture
def tavern(realm):
    """`realm tavern` on this home, with a home realm.yaml carrying a token and non-default keys."""
    home = realm.home.root
    write_home_config(
        home,
        {
            "tavern.token": TOKEN,
            "tavern.max_upload_mb": 7,
            "tavern.open_on_loopback": False,
            "guild.auto_generate": False,
        },
    )
    port = free_port()
    proc = start_tavern(home, port)
    yield f"http://127.0.0.1:{port}", home
    if proc.poll() is None:
        stop(proc)


def put(url: str, body, *, token: str | None = TOKEN) -> requests.Response:
    headers = {"X-Realm-Token": token} if token else {}
    return requests.put(f"{url}/api/config", json=body, headers=headers, timeout=30)


def saved(home) -> dict:
    return yaml.safe_load((home / "realm.yaml").read_text(encoding="utf-8"))


def test_partial_update_changes_only_the_keys_it_names(tavern):
    url, home = tavern
    before = saved(home)
    r = put(url, {"config": {"training": {"batch_size": 4}}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] == ["training.batch_size"] and body["restart_needed"] == []
    after = saved(home)
    assert after["training"]["batch_size"] == 4
    before["training"]["batch_size"] = 4
    assert after == before  # the token, open_on_loopback, max_upload_mb and the rest are untouched
    assert load_config(home=home).tavern.token == TOKEN
    # The token still guards the Tavern after the edit.
    assert put(url, {"config": {"training": {"batch_size": 2}}}, token=None).status_code == 401


def test_a_section_set_to_null_is_refused_and_the_file_kept(tavern):
    url, home = tavern
    text = (home / "realm.yaml").read_text(encoding="utf-8")
    r = put(url, {"config": {"training": None}})
    assert r.status_code == 422, r.text
    assert r.json()["key"] == "training" and "expected a mapping, got null" in r.json()["error"]
    assert (home / "realm.yaml").read_text(encoding="utf-8") == text
    assert load_config(home=home).tavern.max_upload_mb == 7


def test_a_changed_restart_key_is_listed_in_restart_needed(tavern):
    url, home = tavern
    r = put(url, {"config": {"ports": {"oracle": 9001}, "hero": {"base_model": "/models/other"}}})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == ["hero.base_model", "ports.oracle"]
    assert r.json()["restart_needed"] == ["hero.base_model", "ports.oracle"]
    assert saved(home)["ports"]["tavern"] == yaml.safe_load(DEFAULT_CONFIG.read_text())["ports"]["tavern"]


@pytest.mark.parametrize(
    "body, key",
    [
        ({"yaml": 123}, "yaml"),
        ({"yaml": ["training: {}"]}, "yaml"),
        ({"config": "training: {}"}, "config"),
        ({"config": [1]}, "config"),
        ({"yaml": "- just\n- a list\n"}, "<top>"),
    ],
)
def test_a_body_of_the_wrong_shape_gets_422_naming_the_field(tavern, body, key):
    url, home = tavern
    text = (home / "realm.yaml").read_text(encoding="utf-8")
    r = put(url, body)
    assert r.status_code == 422, r.text
    assert r.json()["key"] == key
    assert (home / "realm.yaml").read_text(encoding="utf-8") == text


def test_a_home_file_broken_by_a_null_section_is_repaired_by_a_partial_edit(tavern):
    """Before the fix, `{"config": {"training": null}}` was saved; such a home stops at load, and the
    Armory still accepts the edit that repairs it."""
    url, home = tavern
    data = saved(home)
    data["training"] = None
    (home / "realm.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    got = requests.get(f"{url}/api/config", timeout=30)
    assert got.status_code == 422 and got.json()["key"] == "training"
    r = put(url, {"config": {"training": {"batch_size": 3}}})
    assert r.status_code == 200, r.text
    cfg = load_config(home=home)
    assert (cfg.training.batch_size, cfg.tavern.token, cfg.tavern.max_upload_mb) == (3, TOKEN, 7)
