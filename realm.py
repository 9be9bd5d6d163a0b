"""realm: the command line, and nothing else.

Run `realm --help` (or `python realm.py --help`). This module is the entry point (`realm = "realm:main"`):
it builds the click group, registers each room's commands, and holds the commands that belong to no
room (init, status, config, up, down, logs). The `Realm` facade lives in `sentinels.realm` and the
helpers room CLIs share in `sentinels.clikit`; no room imports this module, because the guardian runs
it as `__main__` and an import would load it a second time. Business logic lives in the rooms.
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
import threading
import time

import click

from sentinels.clikit import home_option, realm_from
from sentinels.logs import setup_logging
from sentinels.realm import Realm

log = logging.getLogger("realm")

# Rooms that add their own commands; each module exposes `commands: list[click.Command]`.
ROOM_COMMANDS: tuple[str, ...] = (
    "tavern.cli",
    "arena.quest_cli",
    "guild.cli",
    "arena.cli",
    "vault.cli",
    "tavern.oracle.cli",
    "watchtower.cli",
    "arena.hero_cli",
)


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
    from watchtower.status import realm_status

    realm = realm_from(ctx, home)
    st = realm_status(realm)
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    click.echo(f"home      {st['home']}")
    click.echo(f"database  {st['database']}")
    click.echo("quests    " + "  ".join(f"{k}={v}" for k, v in st["quests"].items()))
    click.echo("counts    " + "  ".join(f"{k}={v}" for k, v in st["counts"].items()))
    click.echo("services  " + "  ".join(f"{k}={'up' if v else 'down'}" for k, v in st["services"].items()))
    if st.get("hero_line"):
        click.echo(f"hero      {st['hero_line']}")
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
    """The services the hosts registry assigns to this host (all four on a single host), each as
    `realm NAME ARGS --home HOME`; a bad hosts file or an unknown host ends the command (exit 2)."""
    from sentinels.guardian import SERVICE_ARGS, assigned_services, realm_service
    from sentinels.hosts import HostsError, ServiceNotFound

    names = cli.list_commands(click.Context(cli))
    try:
        assigned = assigned_services(realm.config)
    except (HostsError, ServiceNotFound) as exc:
        click.echo(f"hosts error: {exc}", err=True)
        sys.exit(2)
    # The service name is also its lock's name in run/.
    return [realm_service(n, realm.home.root, *SERVICE_ARGS[n]) for n in assigned if n in names]


@cli.command()
@home_option
@click.option("--foreground", is_flag=True, help="Stay attached instead of running in the background.")
@click.pass_context
def up(ctx, home, foreground):
    """Start the realm's services under the guardian (again, any that a `realm stop` stopped)."""
    from sentinels.guardian import start_detached, wake
    from sentinels.locks import is_held, read_pid

    realm = realm_from(ctx, home)
    realm.init()
    run = realm.home.run
    if is_held(run, "guardian"):
        # Signal only when a service is down: one that stopped cleanly waits for this wake.
        down = [s.name for s in local_services(realm) if not is_held(run, s.name)]
        if down and wake(run) is not None:
            click.echo(f"the realm is already up; starting {', '.join(down)} again")
        else:
            click.echo(f"the realm is already up (guardian pid {read_pid(run / 'guardian.lock')})")
        return
    names = [s.name for s in local_services(realm)]  # a bad hosts.yaml stops here, before detaching
    if foreground:
        ctx.invoke(guardian, home=home)
        return
    pid = start_detached(realm.home.root, realm.config.logging)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not is_held(realm.home.run, "guardian"):
        time.sleep(0.1)
    c = realm.config
    click.echo(f"the realm is up (guardian pid {pid}); home {realm.home.root}")
    click.echo(f"  services {', '.join(names)} (this host's, by the hosts registry)")
    click.echo(f"  Tavern  http://{c.bind}:{c.ports.tavern}/")
    click.echo(f"  logs    {realm.home.logs}/  (stop with `realm down`)")


@cli.command(hidden=True)
@home_option
@click.pass_context
def guardian(ctx, home):
    """Run the guardian in the foreground (what `realm up` starts)."""
    import threading

    from sentinels.guardian import Guardian, install_signal_handlers
    from sentinels.health import stuck_reason

    realm = realm_from(ctx, home)
    setup_logging(realm, "guardian", console=True)
    stop, wake = threading.Event(), threading.Event()
    install_signal_handlers(stop, wake)  # before the lock: `realm resume` may signal once it is held

    def on_stuck(why: str) -> None:
        action = "killed; it restarts from its last checkpoint"
        realm.events.emit("trainer.stuck", message=why, action=action)

    services = local_services(realm)
    every = realm.config.sentinels.stuck_check_s
    Guardian(
        realm.home.root,
        services,
        stop,
        realm.config.logging,
        wake,
        stuck_check=lambda: stuck_reason(realm),
        stuck_every_s=every,
        on_stuck=on_stuck,
    ).run()


@cli.command()
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check", "only", multiple=True, help="Run only this check (or prefix, e.g. service); repeatable."
)
@click.pass_context
def health(ctx, home, as_json, only):
    """Check the realm: services, trainer, database, disk, queue, checkpoints; exit 1 on a problem."""
    from sentinels.health import run_checks
    from sentinels.hosts import HostsError, ServiceNotFound

    realm = realm_from(ctx, home)
    try:
        report = run_checks(realm, list(only) or None)
    except (ValueError, HostsError, ServiceNotFound) as exc:
        click.echo(f"health: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for name, c in report["checks"].items():
            click.echo(f"{c['status']:<5} {name:<18} {c['message']}")
        click.echo("healthy" if report["ok"] else f"problems: {', '.join(report['problems'])}")
    sys.exit(0 if report["ok"] else 1)


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


@cli.command()
@click.argument("service", required=False)
@click.option(
    "-n", "--lines", type=click.IntRange(min=0), default=40, show_default=True, help="Lines to show."
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing lines as they are written (Ctrl-C ends).")
@home_option
@click.pass_context
def logs(ctx, service, lines, follow, home):
    """Show a service's log (guardian, arena, tavern, cli, ...), or the end of every log."""
    from sentinels.logs import LogsError, resolve, tail
    from sentinels.logs import follow as follow_logs

    realm = realm_from(ctx, home)
    try:
        paths = resolve(realm.home.logs, service)
    except LogsError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    several = len(paths) > 1
    if follow:
        # Ctrl-C (or a TERM) sets a flag that the follower checks between reads, instead of raising
        # KeyboardInterrupt wherever the main thread happens to be: raised inside a logging call, it
        # left the handler's lock held and the process hung at exit (seen once in CI).
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        for name, line in follow_logs(paths, last=lines, stop=stopping.is_set):
            click.echo(f"{name}: {line}" if several else line)
        return
    for path in paths.values():
        if several:
            click.echo(f"==> {path} <==")
        for line in tail(path, lines):
            click.echo(line)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
