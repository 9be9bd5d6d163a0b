"""`realm arena` (the daemon) and the battle commands `realm pause|resume|stop|skip`.

    realm arena [--max-steps N] [--max-quests N] [--until-idle] [--home H]
    realm pause | resume | stop | skip [--home H]

The battle commands only write a row through arena.control; the running daemon takes it between
two steps (pause holds the hero in memory; stop checkpoints and exits; skip abandons the current
quest and marks it skipped). `realm up` runs `realm arena` under the guardian: a stopped arena
exits 0, which the guardian takes as "stay stopped", and `realm resume` (or `realm up`) wakes the
guardian to start it again.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

import click

from sentinels.clikit import home_option, realm_from

if TYPE_CHECKING:
    from arena.daemon import ArenaHooks
    from sentinels.realm import Realm


def load_hooks(realm: Realm) -> ArenaHooks:
    """The guild's hooks when guild/hooks.py provides `arena_hooks(realm)`, else no-ops.

    Under `accelerate launch` only rank 0 (RANK unset or 0) loads them: it alone evaluates and idles.
    """
    from arena.daemon import ArenaHooks

    if int(os.environ.get("RANK", "0")) != 0:
        return ArenaHooks()
    try:
        mod = importlib.import_module("guild.hooks")
    except ModuleNotFoundError as exc:
        if exc.name != "guild.hooks":
            raise
        return ArenaHooks()
    return mod.arena_hooks(realm)


@click.command()
@home_option
@click.option(
    "--max-steps", type=click.IntRange(min=0), default=None, help="Exit once the global step reaches N."
)
@click.option("--max-quests", type=click.IntRange(min=1), default=None, help="Exit after N battles.")
@click.option("--until-idle", is_flag=True, help="Exit when the queue is empty instead of idling.")
@click.pass_context
def arena(ctx, home, max_steps, max_quests, until_idle):
    """Run intake and the trainer in the foreground (what `realm up` starts)."""
    from arena.checkpoints import CheckpointError
    from arena.daemon import ArenaDaemon
    from sentinels.guardian import install_signal_handlers
    from sentinels.locks import AlreadyRunning
    from sentinels.logs import setup_logging

    realm = realm_from(ctx, home)
    # Each process its own rotated file: under `accelerate launch` ranks other than 0 get theirs.
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(realm, "arena" if rank == 0 else f"arena.rank{rank}", console=True)
    daemon = ArenaDaemon(
        realm, hooks=load_hooks(realm), max_steps=max_steps, max_quests=max_quests, until_idle=until_idle
    )
    install_signal_handlers(daemon.stop_event)
    try:
        code = daemon.run()
    except (AlreadyRunning, CheckpointError) as exc:
        click.echo(f"arena: {exc}", err=True)
        sys.exit(1)
    st = realm.store.get_state("battle", {})
    click.echo(f"arena stopped at step {st.get('step')}")
    sys.exit(code)


def _control_command(action: str, help_text: str) -> click.Command:
    @click.command(name=action, help=help_text)
    @home_option
    @click.pass_context
    def cmd(ctx, home):
        from arena import control
        from sentinels.locks import is_held

        realm = realm_from(ctx, home)
        realm.ensure()
        cid, woke = control.request(realm, action)
        state = control.battle_state(realm.store).get("state", "not running")
        click.echo(f"{action} sent (command {cid}); the arena is {state}")
        if woke:
            click.echo("the guardian starts the stopped arena again")
        elif action == "stop" and is_held(realm.home.run, "guardian"):
            click.echo("the arena checkpoints and stays stopped until `realm resume` or `realm up`")

    return cmd


commands: list[click.Command] = [
    arena,
    _control_command("pause", "Pause the battle within one step; the hero stays in memory."),
    _control_command(
        "resume",
        "Resume a paused battle, or start again an arena that `realm stop` stopped under `realm up`.",
    ),
    _control_command("stop", "Checkpoint and stop the arena cleanly."),
    _control_command("skip", "Abandon the current quest (marked skipped) and go on to the next."),
]
