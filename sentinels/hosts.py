"""The hosts registry: which machine runs which service, and the one way to find another service.

`get_service_url("vault")` (or "tavern", "oracle", "officer", a skill server...) is how any component
finds another one. It reads `hosts.yaml` from the realm home if there is one, else `configs/hosts.yaml`:

    hosts:
      trainer:
        address: trainer-box.lan
        roles: [arena, tavern, vault]
        services: {tavern: 8888, vault: 8767, oracle: null}   # null: the port from realm.yaml
      nas:
        address: storage-box.lan
        roles: [storage]
        services: {officer: 8768}
        zones:
          nas: {token_env: NAS_TOKEN}          # a branch-officer zone: url defaults to this host's officer

When the file declares no hosts, the registry is one host, `local`, at the config's `bind` (a
wildcard bind is reached at 127.0.0.1) with every port of the config's `ports` section. One machine
and several therefore go through the same lookup; only the data differs. When several hosts offer a
service, the one named by REALM_HOST (this machine's name in the file) wins, else the first in the file.

The file is checked by `sentinels.typed` like every file a person writes: an unknown key or a bad
port stops with a message naming the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import yaml

from sentinels.typed import TypedError, convert

if TYPE_CHECKING:
    from sentinels.config import RealmConfig

HOSTS_FILE = "hosts.yaml"
HOST_ENV = "REALM_HOST"  # which host in the file this process runs on
LOCAL_HOST = "local"
WILDCARDS = ("", "0.0.0.0", "::", "[::]")

Port = Annotated[int, msgspec.Meta(ge=1, le=65535, description="a TCP port")]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="a lower-case name")]


class HostsError(TypedError):
    """A bad hosts file, or a service no host offers; names the file/key or the service."""


class ServiceNotFound(LookupError):
    """No host in the registry offers the service (or the named host does not)."""


class ZoneDeclaration(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str | None = None
    """PATH_OR_URL of the zone; under a host it defaults to that host's officer."""
    token_env: str | None = None
    """Environment variable holding an officer zone's token."""


class HostSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    address: str
    """Hostname or IP address other hosts reach this one at."""
    roles: tuple[Name, ...] = ()
    """What the host is for (arena, tavern, vault, storage, ...): documentation and `with_role`."""
    services: dict[str, Any] = msgspec.field(default_factory=dict)
    """Service name -> port, or null for the port of that name in realm.yaml's `ports` (each entry
    is checked on its own, so an error names the service)."""
    zones: dict[str, Any] = msgspec.field(default_factory=dict)
    """Zone name -> ZoneDeclaration: zones this host serves."""


class HostsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hosts: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """Host name -> HostSpec (checked one host at a time, so an error names the host)."""


def convert_at(data: Any, type_: Any, source: str, key: str) -> Any:
    """`convert`, with the error's key prefixed by where `data` sits in the file. msgspec names an
    entry of a mapping only as `[...]`; converting entry by entry keeps the name in the message."""
    try:
        return convert(data, type_, source=source, error=HostsError)
    except HostsError as exc:
        inner = "" if exc.key == "<top>" else exc.key
        full = ".".join(k for k in (key, inner) if k)
        raise HostsError(source, full or "<top>", exc.problem) from None


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    roles: tuple[str, ...]
    services: dict[str, int]

    def url(self, service: str) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{address}:{self.services[service]}"


class Hosts:
    """The registry: hosts in file order, plus the zones declared under them."""

    def __init__(self, hosts: list[Host], zones: dict[str, ZoneDeclaration], source: str):
        self.hosts, self._zones, self.source = hosts, zones, source

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ServiceNotFound(f"no host {name!r} in {self.source}; hosts: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts if role in h.roles]

    def service_host(self, service: str, host: str | None = None) -> Host:
        if host is not None:
            h = self.host(host)
            if service not in h.services:
                raise ServiceNotFound(f"host {host!r} offers no {service!r} service ({self.source})")
            return h
        offering = [h for h in self.hosts if service in h.services]
        if not offering:
            raise ServiceNotFound(f"no host offers the {service!r} service ({self.source})")
        here = os.environ.get(HOST_ENV)
        return next((h for h in offering if h.name == here), offering[0])

    def get_service_url(self, service: str, host: str | None = None) -> str:
        return self.service_host(service, host).url(service)

    def zones(self) -> dict[str, ZoneDeclaration]:
        """Zones declared under hosts, each with its url filled in."""
        return dict(self._zones)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "hosts": [
                {"name": h.name, "address": h.address, "roles": list(h.roles), "services": h.services}
                for h in self.hosts
            ],
        }


def client_address(bind: str) -> str:
    """The address a client on this machine uses for a server bound to `bind`."""
    return "127.0.0.1" if bind in WILDCARDS else bind


def _hosts_path(home: Path | None) -> Path | None:
    from sentinels.config import REPO_ROOT

    for p in ((Path(home) / HOSTS_FILE) if home else None, REPO_ROOT / "configs" / HOSTS_FILE):
        if p is not None and p.is_file():
            return p
    return None


def load_hosts(config: RealmConfig, path: str | Path | None = None) -> Hosts:
    """The registry for a realm: `path`, else the home's hosts.yaml, else configs/hosts.yaml, else
    the single host the config describes."""
    ports = msgspec.to_builtins(config.ports)
    file = Path(path) if path else _hosts_path(config.home_path)
    spec = HostsFile()
    if file is not None:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise HostsError(str(file), "<file>", f"cannot read: {exc}") from exc
        spec = convert_at(data, HostsFile, str(file), "")
    source = str(file) if file is not None else "realm.yaml (single host)"
    if not spec.hosts:
        local = Host(LOCAL_HOST, client_address(config.bind), ("all",), dict(ports))
        return Hosts([local], {}, source)
    hosts, zones = [], {}
    for name, raw in spec.hosts.items():
        at = f"hosts.{name}"
        convert_at(name, Name, source, at)
        h = convert_at(raw, HostSpec, source, at)
        services = {}
        for svc, port in h.services.items():
            convert_at(svc, Name, source, f"{at}.services.{svc}")
            port = convert_at(port, Port | None, source, f"{at}.services.{svc}")
            if port is None and svc not in ports:
                raise HostsError(source, f"{at}.services.{svc}", "needs a port: realm.yaml has none")
            services[svc] = port if port is not None else ports[svc]
        host = Host(name, h.address, tuple(h.roles), services)
        hosts.append(host)
        for zname, zraw in h.zones.items():
            convert_at(zname, Name, source, f"{at}.zones.{zname}")
            z = convert_at(zraw, ZoneDeclaration, source, f"{at}.zones.{zname}")
            if z.url is None and "officer" not in services:
                raise HostsError(
                    source, f"hosts.{name}.zones.{zname}.url", "missing; the host runs no officer"
                )
            zones[zname] = ZoneDeclaration(z.url or host.url("officer"), z.token_env)
    return Hosts(hosts, zones, source)


def get_service_url(service: str, host: str | None = None, *, config: RealmConfig | None = None) -> str:
    """`http://address:port` of `service` (on `host`, or where the registry says it runs)."""
    if config is None:
        from sentinels.config import load_config

        config = load_config()
    return load_hosts(config).get_service_url(service, host)
