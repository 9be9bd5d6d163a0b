"""realm: the command line and the `Realm` facade.

Run `realm --help` (or `python realm.py --help`). This module wires the rooms together: it loads
the config, opens the realm home and its state store, sets up logging, and registers each room's
commands. Business logic lives in the rooms, never here.
"""

from __future__ import annotations

import importlib
import json
import logging
import logging.handlers
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import click

from sentinels.config import ConfigError, RealmConfig, load_config
from vault.events import EventLog
from vault.home import RealmHome
from vault.store import Store

log = logging.getLogger("realm")

# Rooms that add their own commands; each module exposes `commands: list[click.Command]`.
ROOM_COMMANDS: tuple[str, ...] = ("tavern.cli", "arena.quest_cli", "guild.cli", "arena.cli")


@dataclass
class Realm:
    """The facade: config + home + store + event log, opened once per process."""

    config: RealmConfig

    @classmethod
    def open(cls, home: str | Path | None = None, config_path: str | Path | None = None) -> Realm:
        return cls(load_config(config_path, home=home))

    @cached_property
    def home(self) -> RealmHome:
        return RealmHome(self.config.home_path)

    @cached_property
    def store(self) -> Store:
        return Store(self.home.db_path)

    @cached_property
    def events(self) -> EventLog:
        return EventLog(self.store)

    def init(self) -> list[str]:
        return self.home.init()

    def ensure(self) -> None:
        """Initialise the home if needed (cheap when it exists)."""
        self.init()

    def status(self) -> dict:
        self.ensure()
        quests = {
            r["status"]: r["n"]
            for r in self.store.query("SELECT status, count(*) AS n FROM quests GROUP BY status")
        }
        counts = self.store.table_counts(["events", "quests", "checkpoints", "evals", "achievements"])
        from sentinels.locks import is_held

        return {
            "home": str(self.home.root),
            "database": str(self.home.db_path),
            "counts": counts,
            "quests": {
                s: quests.get(s, 0) for s in ("queued", "processing", "completed", "failed", "skipped")
            },
            "inbox_files": sum(1 for p in self.home.inbox.iterdir() if p.is_file()),
            "services": {name: is_held(self.home.run, name) for name in ("guardian", "arena", "tavern")},
            "hero": self.store.get_state("hero", {}),
            "battle": self.store.get_state("battle", {}),
        }


def setup_logging(realm: Realm, console: bool = True) -> None:
    cfg = realm.config.logging
    root = logging.getLogger()
    root.setLevel(cfg.level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    realm.home.logs.mkdir(parents=True, exist_ok=True)
    fh = logging.handlers.RotatingFileHandler(
        realm.home.logs / "realm.log", maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8"
    )
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if console:
        ch = logging.StreamHandler(sys.stderr)
        ch.setFormatter(fmt)
        root.addHandler(ch)


def home_option(f):
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Realm home (default: REALM_HOME, then the config, then the repo root).",
    )(f)


def open_realm(home: str | None, config_path: str | None = None) -> Realm:
    """Load config for a command; a bad config ends the process with exit code 2."""
    try:
        realm = Realm.open(home, config_path)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        sys.exit(2)
    setup_logging(realm, console=False)
    return realm


class RealmGroup(click.Group):
    def get_command(self, ctx, name):
        _load_room_commands(self)
        return super().get_command(ctx, name)

    def list_commands(self, ctx):
        _load_room_commands(self)
        return super().list_commands(ctx)


_loaded = False


def _load_room_commands(group: click.Group) -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in ROOM_COMMANDS:
        for cmd in importlib.import_module(mod).commands:
            group.add_command(cmd)


@click.group(cls=RealmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="Config file.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Realm of Training: drop JSONL quests into inbox/ and watch DIO train."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def realm_from(ctx: click.Context, home: str | None) -> Realm:
    return open_realm(home, (ctx.obj or {}).get("config_path"))


@cli.command()
@home_option
@click.pass_context
def init(ctx, home):
    """Create the realm home (folders and database); safe to run again."""
    realm = realm_from(ctx, home)
    applied = realm.init()
    click.echo(f"realm home ready at {realm.home.root}")
    for name in applied:
        click.echo(f"  applied migration {name}")


@cli.command()
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx, home, as_json):
    """Show the home, the database, counts and the current battle."""
    realm = realm_from(ctx, home)
    st = realm.status()
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    click.echo(f"home      {st['home']}")
    click.echo(f"database  {st['database']}")
    click.echo("quests    " + "  ".join(f"{k}={v}" for k, v in st["quests"].items()))
    click.echo("counts    " + "  ".join(f"{k}={v}" for k, v in st["counts"].items()))
    click.echo("services  " + "  ".join(f"{k}={'up' if v else 'down'}" for k, v in st["services"].items()))
    battle = st.get("battle") or {}
    if battle:
        click.echo(
            "battle    "
            + "  ".join(
                f"{k}={battle[k]}"
                for k in ("state", "quest_id", "step", "loss", "progress", "eta_s")
                if k in battle
            )
        )


@cli.group()
def config():
    """Inspect the configuration."""


@config.command("show")
@home_option
@click.pass_context
def config_show(ctx, home):
    """Print the effective configuration as YAML."""
    import yaml

    realm = realm_from(ctx.parent, home)
    click.echo(yaml.safe_dump(realm.config.to_dict(), sort_keys=False))


def local_services(realm: Realm) -> list:
    from sentinels.guardian import realm_service

    names = cli.list_commands(click.Context(cli))
    return [realm_service(n, realm.home.root) for n in ("arena", "tavern") if n in names]


@cli.command()
@home_option
@click.option("--foreground", is_flag=True, help="Stay attached instead of running in the background.")
@click.pass_context
def up(ctx, home, foreground):
    """Start the realm's services under the guardian."""
    from sentinels.guardian import start_detached
    from sentinels.locks import is_held, read_pid

    realm = realm_from(ctx, home)
    realm.init()
    if is_held(realm.home.run, "guardian"):
        click.echo(f"the realm is already up (guardian pid {read_pid(realm.home.run / 'guardian.lock')})")
        return
    if foreground:
        ctx.invoke(guardian, home=home)
        return
    pid = start_detached(realm.home.root)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not is_held(realm.home.run, "guardian"):
        time.sleep(0.1)
    c = realm.config
    click.echo(f"the realm is up (guardian pid {pid}); home {realm.home.root}")
    click.echo(f"  Tavern  http://{c.bind}:{c.ports.tavern}/")
    click.echo(f"  logs    {realm.home.logs}/  (stop with `realm down`)")


@cli.command(hidden=True)
@home_option
@click.pass_context
def guardian(ctx, home):
    """Run the guardian in the foreground (what `realm up` starts)."""
    import threading

    from sentinels.guardian import Guardian, install_signal_handlers

    realm = realm_from(ctx, home)
    setup_logging(realm, console=True)
    stop = threading.Event()
    install_signal_handlers(stop)
    Guardian(realm.home.root, local_services(realm), stop).run()


@cli.command()
@home_option
@click.pass_context
def down(ctx, home):
    """Stop the realm: the arena checkpoints, then every service exits."""
    from sentinels.guardian import stop_pid
    from sentinels.locks import is_held, read_pid

    realm = realm_from(ctx, home)
    run = realm.home.run
    if not is_held(run, "guardian"):
        click.echo("the realm is not running")
        return
    pid = read_pid(run / "guardian.lock")
    if pid and stop_pid(pid):
        click.echo("the realm is down")
    else:
        click.echo(f"the guardian (pid {pid}) did not stop in time", err=True)
        sys.exit(1)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
