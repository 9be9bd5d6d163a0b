"""The hosts registry (sentinels/hosts.py): one machine and several through the same lookup."""

from __future__ import annotations

import pytest

from sentinels.config import load_config
from sentinels.hosts import HostsError, ServiceNotFound, get_service_url, load_hosts
from tests.helpers import write_home_config

TWO_HOSTS = """\
hosts:
  trainer:
    address: 127.0.0.5
    roles: [arena, tavern, vault]
    services: {tavern: null, vault: 9767}
  nas:
    address: nas.lan
    roles: [storage]
    services: {officer: 8770, vault: 9767}
    zones:
      cellar: {token_env: CELLAR_TOKEN}
      bucket: {url: "s3://realm/dio"}
"""


def test_without_hosts_every_service_is_on_this_machine(home):
    write_home_config(home, {"bind": "0.0.0.0", "ports.vault": 9001, "ports.tavern": 9002})
    config = load_config(home=home)
    hosts = load_hosts(config)
    assert hosts.names() == ["local"]
    # A wildcard bind is reached at loopback; every port comes from the config's `ports`.
    assert hosts.get_service_url("vault") == "http://127.0.0.1:9001"
    assert hosts.get_service_url("tavern", "local") == "http://127.0.0.1:9002"
    assert hosts.get_service_url("officer") == f"http://127.0.0.1:{config.ports.officer}"
    assert hosts.zones() == {}
    with pytest.raises(ServiceNotFound, match="'oracle2'"):
        hosts.get_service_url("oracle2")


def test_several_hosts_roles_services_and_zones(home, monkeypatch):
    write_home_config(home, {"ports.tavern": 9100})
    (home / "hosts.yaml").write_text(TWO_HOSTS)
    monkeypatch.delenv("REALM_HOST", raising=False)
    hosts = load_hosts(load_config(home=home))
    assert hosts.names() == ["trainer", "nas"]
    assert hosts.get_service_url("tavern") == "http://127.0.0.5:9100"  # null: the config's port
    assert hosts.get_service_url("vault") == "http://127.0.0.5:9767"  # the first host offering it
    assert hosts.get_service_url("vault", "nas") == "http://nas.lan:9767"
    monkeypatch.setenv("REALM_HOST", "nas")  # this process runs on nas: its own vault wins
    assert hosts.get_service_url("vault") == "http://nas.lan:9767"
    assert [h.name for h in hosts.with_role("storage")] == ["nas"]
    with pytest.raises(ServiceNotFound, match="offers no 'officer'"):
        hosts.get_service_url("officer", "trainer")
    zones = hosts.zones()
    assert (zones["cellar"].url, zones["cellar"].token_env) == ("http://nas.lan:8770", "CELLAR_TOKEN")
    assert zones["bucket"].url == "s3://realm/dio"


def test_the_module_lookup_reads_the_realm_home(home, monkeypatch):
    (home / "hosts.yaml").write_text(TWO_HOSTS)
    monkeypatch.setenv("REALM_HOME", str(home))
    monkeypatch.delenv("REALM_HOST", raising=False)
    assert get_service_url("officer") == "http://nas.lan:8770"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("hosts:\n  a: {address: x, servces: {}}\n", "hosts.a.servces"),
        ("hosts:\n  a: {address: x, services: {vault: 70000}}\n", "hosts.a.services.vault"),
        ("hosts:\n  a: {roles: [x]}\n", "hosts.a.address"),
        ("hosts:\n  a: {address: x, services: {skill-bin: null}}\n", "hosts.a.services.skill-bin"),
        ("hosts:\n  a: {address: x, zones: {z: {}}}\n", "hosts.a.zones.z.url"),
        ("hosts:\n  a: {address: x, zones: {z: {url: u, token: t}}}\n", "hosts.a.zones.z.token"),
        ("hosts:\n  Big Box: {address: x}\n", "hosts.Big Box"),
    ],
)
def test_a_bad_hosts_file_names_the_file_and_key(home, text, key):
    (home / "hosts.yaml").write_text(text)
    with pytest.raises(HostsError) as err:
        load_hosts(load_config(home=home))
    assert err.value.key == key and "hosts.yaml" in err.value.source
