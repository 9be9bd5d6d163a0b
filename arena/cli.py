"""`realm arena` (the daemon) and the battle commands `realm pause|resume|stop|skip`.

    realm arena [--max-steps N] [--max-quests N] [--until-idle] [--home H]
    realm pause | resume | stop | skip [--home H]

The battle commands only write a row through arena.control; the running daemon takes it between
two steps (pause holds the hero in memory; stop checkpoints and exits; skip abandons the current
quest and marks it skipped). `realm up` runs `realm arena` under the guardian.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from realm import home_option, realm_from


def load_hooks(realm):
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
    from arena.daemon import ArenaDaemon
    from realm import setup_logging
    from sentinels.guardian import install_signal_handlers
    from sentinels.locks import AlreadyRunning

    realm = realm_from(ctx, home)
    setup_logging(realm, console=True)
    daemon = ArenaDaemon(
        realm, hooks=load_hooks(realm), max_steps=max_steps, max_quests=max_quests, until_idle=until_idle
    )
    install_signal_handlers(daemon.stop_event)
    try:
        code = daemon.run()
    except AlreadyRunning as exc:
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

        realm = realm_from(ctx, home)
        realm.ensure()
        cid = control.send(realm.store, realm.events, action)
        state = control.battle_state(realm.store).get("state", "not running")
        click.echo(f"{action} sent (command {cid}); the arena is {state}")

    return cmd


commands: list[click.Command] = [
    arena,
    _control_command("pause", "Pause the battle within one step; the hero stays in memory."),
    _control_command("resume", "Resume a paused battle."),
    _control_command("stop", "Checkpoint and stop the arena cleanly."),
    _control_command("skip", "Abandon the current quest (marked skipped) and go on to the next."),
]
