"""`realm tavern`: run the Tavern web game alone (what `realm up` starts beside the arena).

    realm tavern [--port 8888] [--bind 127.0.0.1] [--home H]

Holds run/tavern.lock so one Tavern serves a home; SIGTERM (from `realm down` through the guardian)
stops it cleanly with exit code 0. Runs at CPU niceness `tavern.nice` (10): on a box shared with the
trainer, the scheduler gives the trainer the cores first.
"""

from __future__ import annotations

import click


@click.command()
@click.option("--port", type=int, default=None, help="Port (default: the config's ports.tavern).")
@click.option("--bind", default=None, help="Address to bind (default: the config's bind).")
@click.option("--threads", type=int, default=None, help="Worker threads (default: tavern.threads).")
@click.pass_context
def tavern(ctx, port, bind, threads, home=None):
    """Serve the Tavern: the live web game (on the config's bind and ports.tavern)."""
    from sentinels.clikit import realm_from
    from sentinels.locks import AlreadyRunning, InstanceLock
    from sentinels.logs import setup_logging
    from tavern.server import serve

    realm = realm_from(ctx, home)
    setup_logging(realm, "tavern", console=True)
    realm.ensure()
    _lower_priority(realm.config.tavern.nice)
    host = bind or realm.config.bind
    port = port or realm.config.ports.tavern
    try:
        lock = InstanceLock(realm.home.run, "tavern").acquire()
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        serve(realm, host, port, threads)
    finally:
        lock.release()


def _lower_priority(nice: int) -> None:
    """Raise this process's niceness to `nice` (never lowers it: that needs privileges)."""
    import logging
    import os

    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    logging.getLogger("realm.tavern").info("tavern niceness %d", max(nice, current))


def _with_home(cmd: click.Command) -> click.Command:
    from sentinels.clikit import home_option

    return home_option(cmd)


commands: list[click.Command] = [_with_home(tavern)]
