"""`realm oracle`: the OpenAI-compatible inference server over every checkpoint the vault knows.

    realm oracle [--port 8765] [--bind 127.0.0.1] [--home H]        on the realm's own host
    realm oracle --remote [--vault URL] [--home H]                  alone on another host (a GPU box)

On the realm's host the Oracle reads the vault in-process (it has the home). With `--remote` (or
`oracle.vault_url` set) it has no realm database: it resolves ids through the VaultKeeper API at
`--vault`, else `oracle.vault_url`, else the hosts registry's `vault` service, and fetches checkpoints
into its cache (`REALM_VAULT_CACHE`) with `ask_vault_first`. Its home then holds only its logs.
It holds run/oracle.lock (one Oracle per home; `realm up` and `realm status` read it). SIGTERM (`realm
down` through the guardian) stops it with exit code 0.
"""

from __future__ import annotations

import importlib

import click


class OracleGroup(click.Group):
    """`realm oracle` serves; its subcommands (the think-budget sweep) load only when named, so serving
    and `realm --help` do not import the guild or matplotlib."""

    LAZY = {"sweep": ("tavern.oracle.sweep", "sweep_command")}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx, name):
        if name in self.LAZY and name not in self.commands:
            module, attr = self.LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=OracleGroup, invoke_without_command=True)
@click.option("--port", type=int, default=None, help="Port (default: the config's ports.oracle).")
@click.option("--bind", default=None, help="Address to bind (default: the config's bind).")
@click.option("--remote", is_flag=True, help="Resolve ids through a VaultKeeper API, not this home's vault.")
@click.option("--vault", "vault_url", default=None, help="The VaultKeeper API URL (implies --remote).")
@click.pass_context
def oracle(ctx, port, bind, remote, vault_url, home=None):
    """Serve the Oracle: chat with any checkpoint through an OpenAI-compatible API."""
    if ctx.invoked_subcommand is not None:
        return
    from sentinels.clikit import realm_from
    from sentinels.locks import AlreadyRunning, InstanceLock
    from sentinels.logs import setup_logging
    from tavern.oracle.server import serve

    realm = realm_from(ctx, home)
    remote = remote or bool(vault_url) or bool(realm.config.oracle.vault_url)
    if remote:
        for d in (realm.home.logs, realm.home.run):
            d.mkdir(parents=True, exist_ok=True)
    else:
        realm.ensure()
    setup_logging(realm, "oracle", console=True)
    host = bind or realm.config.bind
    port = port or realm.config.ports.oracle
    # run/oracle.lock: one Oracle per home, and what `realm up` and `realm status` look at.
    try:
        lock = InstanceLock(realm.home.run, "oracle").acquire()
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        serve(lambda: build_app(realm, host, remote=remote, vault_url=vault_url), host, port)
    finally:
        lock.release()


def build_app(realm, bind: str, *, remote: bool = False, vault_url: str | None = None):
    """The Oracle app for a realm: its ids over the local vault, or over the VaultKeeper API."""
    from transformers.utils import logging as hf_logging

    from tavern.oracle.app import Oracle, create_app
    from tavern.oracle.ids import LocalVault, ModelIds, RemoteVault

    hf_logging.disable_progress_bar()  # a server's log is no place for per-load progress bars
    cfg = realm.config
    if remote:
        from vault.client import VaultClient

        url = vault_url or cfg.oracle.vault_url
        client = VaultClient(url) if url else VaultClient.for_service()
        view = RemoteVault(client)
    else:
        view = LocalVault(realm)
    ids = ModelIds(view, cfg.hero.name, cfg.hero.base_model)
    return create_app(Oracle(cfg, ids, bind=bind))


def _with_home(cmd: click.Command) -> click.Command:
    from sentinels.clikit import home_option

    return home_option(cmd)


commands: list[click.Command] = [_with_home(oracle)]
