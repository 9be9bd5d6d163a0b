"""What every room's CLI shares: the `--home` option and opening the realm for one command.

Rooms register their commands on the `realm` group (realm.py) and take these helpers from here, so no
room imports the CLI module itself (the guardian runs realm.py as `__main__`; importing `realm`
would load it a second time).
"""

from __future__ import annotations

import sys

import click

from sentinels.config import ConfigError
from sentinels.logs import setup_logging
from sentinels.realm import Realm


def home_option(f):
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Realm home (default: REALM_HOME, then the config, then the repo root).",
    )(f)


def open_realm(home: str | None, config_path: str | None = None) -> Realm:
    """Load config for a command; a bad config ends the process with exit code 2.

    Logging goes to the one-shot commands' `cli.log` until a long-running command calls
    `setup_logging` again with its own service name."""
    try:
        realm = Realm.open(home, config_path)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        sys.exit(2)
    setup_logging(realm, None, console=False)
    return realm


def realm_from(ctx: click.Context, home: str | None) -> Realm:
    """The realm for a command, with the group's --config (from the root context's obj)."""
    return open_realm(home, (ctx.find_root().obj or {}).get("config_path"))
