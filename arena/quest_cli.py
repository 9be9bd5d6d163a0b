"""Quest commands: `realm quest add|show|retry|priority|cancel`, `realm queue list`, `realm intake`.

Run `realm quest --help`. Each command opens the realm, then goes through `arena.intake.Intake`
or `arena.queue.QuestQueue`; nothing here moves a file by itself except the copy into the inbox.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading

import click

from sentinels.clikit import home_option
from vault.home import PRIORITIES


def _intake(ctx: click.Context, home: str | None):
    from arena.intake import Intake
    from sentinels.clikit import realm_from

    return Intake.for_realm(realm_from(ctx, home))


def _fail(msg: str) -> None:
    click.echo(msg, err=True)
    sys.exit(1)


def _line(q) -> str:
    extra = f"  {q.reason}" if q.reason else ""
    ex = f"{q.example_count} ex" if q.example_count is not None else "-"
    return f"#{q.id:<5} {q.status:<10} {q.priority:<7} {q.spec or '-':<14} {ex:>9}  {q.name}{extra}"


def _report(q) -> None:
    if q.status == "queued":
        dups = f", {q.duplicates_dropped} duplicate examples dropped" if q.duplicates_dropped else ""
        click.echo(f"quest #{q.id} queued ({q.priority}, {q.spec}, {q.example_count} examples{dups})")
    else:
        click.echo(f"quest #{q.id} {q.status}: {q.reason}")
        if q.error_path:
            click.echo(f"  details: {q.error_path}")


@click.group()
def quest():
    """Add, inspect, retry, re-prioritise and cancel quests."""


@quest.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--priority", type=click.Choice(PRIORITIES), default=None, help="Queue priority (default normal)."
)
@home_option
@click.pass_context
def quest_add(ctx, file, priority, home):
    """Copy FILE into the inbox (temp name + rename) and run intake on it now."""
    from arena.intake.sidecar import is_ignored, sidecar_path

    intake = _intake(ctx.parent.parent, home)
    src = os.path.abspath(file)
    name = os.path.basename(src)
    dest = intake.home.inbox / name
    if is_ignored(name):
        _fail(f"{name}: hidden, temporary or sidecar names are not quests; rename the file")
    if dest.exists() or dest.is_symlink():
        _fail(f"inbox/{name} already exists; wait for intake or rename the file")
    side_src = sidecar_path(dest.with_name(name)).name
    meta: dict = {}
    if os.path.exists(os.path.join(os.path.dirname(src), side_src)):
        with open(os.path.join(os.path.dirname(src), side_src), "rb") as f:
            try:
                meta = json.load(f)
            except ValueError:
                meta = None  # copied as-is below; intake refuses it with the reason
    if priority:
        meta = {**(meta or {}), "priority": priority} if isinstance(meta, dict) else meta
    if meta is None or meta:
        tmp = intake.home.inbox / f".{name}.meta.tmp"
        if meta is None:
            shutil.copyfile(os.path.join(os.path.dirname(src), side_src), tmp)
        else:
            tmp.write_text(json.dumps(meta))
        os.replace(tmp, sidecar_path(dest))  # the sidecar first, so intake sees both
    after = intake.store.scalar("SELECT coalesce(max(id), 0) FROM quests")
    tmp = intake.home.inbox / f".{name}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    q = intake.process_file(dest, source="cli") or intake.await_quest(name, after, 30)
    _report(q)
    sys.exit(0 if q.status == "queued" else 1)


@quest.command("show")
@click.argument("quest_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@home_option
@click.pass_context
def quest_show(ctx, quest_id, as_json, home):
    """Show one quest: status, lineage and, if refused, its error report."""
    from arena.queue import QueueError

    intake = _intake(ctx.parent.parent, home)
    try:
        q = intake.queue.get(quest_id)
    except QueueError as exc:
        _fail(str(exc))
    d = q.to_dict()
    if q.error_path and (intake.home.root / q.error_path).exists():
        d["error"] = json.loads((intake.home.root / q.error_path).read_text())
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    for key in (
        "id",
        "name",
        "status",
        "priority",
        "spec",
        "example_count",
        "duplicates_dropped",
        "line_count",
        "size_bytes",
        "sha256",
        "source",
        "skill",
        "level",
        "reason",
        "path",
        "created_at",
        "queued_at",
        "started_at",
        "finished_at",
    ):
        if d.get(key) is not None:
            click.echo(f"{key:<19}{d[key]}")
    click.echo("lineage            " + json.dumps(d["lineage"], sort_keys=True))
    for err in d.get("error", {}).get("errors", []):
        click.echo(f"  line {err['line']}: {err['message']}")


@quest.command("retry")
@click.argument("quest_id", type=int)
@home_option
@click.pass_context
def quest_retry(ctx, quest_id, home):
    """Put a failed or cancelled quest back through intake (after you fixed its file)."""
    from arena.queue import QueueError

    intake = _intake(ctx.parent.parent, home)
    try:
        path = intake.queue.retry(quest_id)
    except QueueError as exc:
        _fail(str(exc))
    after = intake.store.scalar("SELECT coalesce(max(id), 0) FROM quests")
    q = intake.process_file(path, source="retry") or intake.await_quest(path.name, after, 30)
    _report(q)
    sys.exit(0 if q.status == "queued" else 1)


@quest.command("priority")
@click.argument("quest_id", type=int)
@click.argument("level", type=click.Choice(PRIORITIES))
@home_option
@click.pass_context
def quest_priority(ctx, quest_id, level, home):
    """Move a queued quest to another priority."""
    from arena.queue import QueueError

    intake = _intake(ctx.parent.parent, home)
    try:
        q = intake.queue.set_priority(quest_id, level)
    except QueueError as exc:
        _fail(str(exc))
    click.echo(f"quest #{q.id} is now {q.priority}")


@quest.command("cancel")
@click.argument("quest_id", type=int)
@home_option
@click.pass_context
def quest_cancel(ctx, quest_id, home):
    """Cancel a queued quest: its file goes to queue/failed/ with reason 'cancelled'."""
    from arena.queue import QueueError

    intake = _intake(ctx.parent.parent, home)
    try:
        q = intake.queue.cancel(quest_id)
    except QueueError as exc:
        _fail(str(exc))
    click.echo(f"quest #{q.id} cancelled; file kept at {q.path}")


@click.group("queue")
def queue_group():
    """Look at the quest queue."""


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Include finished, failed and cancelled quests.")
@home_option
@click.pass_context
def queue_list(ctx, as_json, show_all, home):
    """Queued quests in the order the trainer takes them (with --all: every quest)."""
    intake = _intake(ctx.parent.parent, home)
    quests = intake.queue.list(None if show_all else ["processing", "queued"])
    if as_json:
        click.echo(json.dumps([q.to_dict() for q in quests], indent=2, default=str))
        return
    if not quests:
        click.echo("the queue is empty")
    for q in quests:
        click.echo(_line(q))


@click.command("intake")
@click.option("--once", is_flag=True, help="Process the inbox once and exit.")
@home_option
@click.pass_context
def intake_cmd(ctx, once, home):
    """Run intake on the inbox: once (--once), or watch it until interrupted."""
    intake = _intake(ctx.parent, home)
    if once:
        quests = intake.scan()
        for q in quests:
            click.echo(_line(q))
        click.echo(f"{len(quests)} file(s) processed")
        return
    from arena.intake.watcher import InboxWatcher
    from sentinels.guardian import install_signal_handlers

    stop = threading.Event()
    install_signal_handlers(stop)
    click.echo(f"watching {intake.home.inbox} (Ctrl-C to stop)")
    InboxWatcher(intake).run(stop)


commands: list[click.Command] = [quest, queue_group, intake_cmd]
