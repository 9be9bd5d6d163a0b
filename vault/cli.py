"""`realm vault ...`: the catalog, the ledger, aliases and retention from the command line.

realm vault scan [--json]                          register what the home holds (progress bar on a terminal)
realm vault locate REF [--json]                    an asset and the zones holding it, best first
realm vault ledger [--json] [--limit N] [--skill S] [--all] [--best METRIC [--direction min|max]] [--summary]
realm vault rebuild-ledger [--json]                the ledger again from the .ledger.json sidecars
realm vault alias set NAME REF --reason WHY        point an alias (champion, ...) at a checkpoint
realm vault alias rm NAME --reason WHY
realm vault alias list [--json] / history [NAME] [--json]
realm vault retention [--dry-run] [--force] [--json]

Every command opens the realm and goes through `vault.keeper.VaultKeeper`; a `VaultError` (unknown
asset, reserved alias, last copy) is printed and exits 1. Other engineers' commands (zones, transfers,
the API server) are added to the same `vault` group in their own sections below.
"""

from __future__ import annotations

import functools
import getpass
import json
from typing import TYPE_CHECKING, Any

import click

from sentinels.clikit import home_option

if TYPE_CHECKING:
    from vault.keeper import VaultKeeper


def keeper_from(ctx: click.Context, home: str | None) -> VaultKeeper:
    """The VaultKeeper of the realm a command names (the home is initialised when new)."""
    from sentinels.clikit import realm_from
    from vault.keeper import VaultKeeper

    realm = realm_from(ctx, home)
    realm.ensure()
    return VaultKeeper(realm)


def vault_errors(f):
    """Turn the vault's typed errors into a one-line message and exit code 1."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from vault.errors import VaultError

        try:
            return f(*args, **kwargs)
        except VaultError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON result and nothing else.")


@click.group("vault")
def vault() -> None:
    """The vault: every asset in every zone, the checkpoint ledger and its aliases."""


# ---- engineer F: catalog, ledger, aliases, retention -------------------------------------------
@vault.command()
@json_option
@home_option
@click.pass_context
@vault_errors
def scan(ctx, as_json, home):
    """Register what the home holds: checkpoints, model folders, eval sets, configs, quest data."""
    from vault.progress import progress_line

    keeper = keeper_from(ctx, home)
    bar = progress_line("scan", enabled=not as_json)
    try:
        res = keeper.scan(progress=bar)
    finally:
        if bar:
            bar.finish()
    if as_json:
        emit_json(res.to_dict())
        return
    click.echo(
        f"scan: {len(res.registered)} new, {len(res.updated)} updated, {res.unchanged} unchanged,"
        f" {len(res.missing)} missing, {res.bytes_hashed / 1e6:.1f} MB hashed in {res.seconds:.2f} s"
    )
    for line in res.errors:
        click.echo(f"  skipped: {line}", err=True)


@vault.command()
@click.argument("ref")
@json_option
@home_option
@click.pass_context
@vault_errors
def locate(ctx, ref, as_json, home):
    """Where an asset lives: id, checkpoint step or name, alias, or 'latest'."""
    res = keeper_from(ctx, home).locate(ref)
    if as_json:
        emit_json(res.to_dict())
        return
    a = res.asset
    click.echo(
        f"{a.id}  {a.kind}  {a.name}  {a.size_bytes / 1e6:.1f} MB  {a.file_count} files  {a.digest[:16]}"
    )
    if not res.locations:
        click.echo("  no zone holds it")
    for loc in res.locations:
        mark = "*" if res.best and loc.zone == res.best.zone else " "
        click.echo(f" {mark}{loc.zone:<12} {loc.status:<10} {loc.path}")


def _ledger_line(r: dict[str, Any]) -> str:
    def num(v, fmt="{:.4f}"):
        return fmt.format(v) if v is not None else "-"

    tags = f"  [{', '.join(r['aliases'])}]" if r.get("aliases") else ""
    gone = "  (deleted)" if r["deleted"] else ""
    skill = f"{r['skill_name']} L{r['skill_level']}" if r.get("skill_name") else "-"
    return (
        f"{r['step']:>8}  {r['name']:<32} loss {num(r['train_loss'])}  val {num(r['val_loss'])}"
        f"  {skill:<8}{tags}{gone}"
    )


@vault.command()
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--skill", default=None, help="Only checkpoints trained on this skill.")
@click.option("--all", "include_deleted", is_flag=True, help="Include checkpoints retention deleted.")
@click.option(
    "--best", "metric", default=None, help="The best checkpoint by this metric (train_loss, val_loss, ...)."
)
@click.option(
    "--direction", type=click.Choice(["min", "max"]), default=None, help="Override the metric's direction."
)
@click.option("--summary", is_flag=True, help="Counts, latest, best and aliases.")
@json_option
@home_option
@click.pass_context
@vault_errors
def ledger(ctx, limit, skill, include_deleted, metric, direction, summary, as_json, home):
    """The checkpoint ledger: stats at save time, newest first."""
    led = keeper_from(ctx, home).ledger
    if summary:
        data: Any = led.summary()
    elif metric:
        data = led.best(metric, direction)
    else:
        data = led.list(limit=limit, skill=skill, include_deleted=include_deleted)
    if as_json:
        emit_json(data)
        return
    if summary:
        for k, v in data.items():
            click.echo(f"{k:<12} {v}")
    elif metric:
        click.echo(_ledger_line(data) if data else f"no checkpoint has a {metric}")
    else:
        for r in data:
            click.echo(_ledger_line(r))


@vault.command("rebuild-ledger")
@json_option
@home_option
@click.pass_context
@vault_errors
def rebuild_ledger(ctx, as_json, home):
    """Rewrite the ledger from the checkpoint folders' .ledger.json sidecars."""
    keeper = keeper_from(ctx, home)
    n = keeper.ledger.rebuild(keeper.realm.home.models)
    if as_json:
        emit_json({"recorded": n, "summary": keeper.ledger.summary()})
    else:
        click.echo(f"ledger rebuilt: {n} checkpoint folders recorded")


@vault.group()
def alias() -> None:
    """Aliases (champion, ...): set by hand, every move kept in the history. 'latest' is computed."""


@alias.command("set")
@click.argument("name")
@click.argument("ref")
@click.option("--reason", required=True, help="Why (kept in the alias history).")
@click.option("--by", default=None, help="Who (default: cli:<user>).")
@json_option
@home_option
@click.pass_context
@vault_errors
def alias_set(ctx, name, ref, reason, by, as_json, home):
    """Point alias NAME at REF (a step, checkpoint name or asset id)."""
    res = keeper_from(ctx, home).ledger.set_alias(name, ref, by=by or who(), reason=reason)
    if as_json:
        emit_json(res)
    elif res["moved"]:
        click.echo(f"{res['name']}: {res['from'] or '(unset)'} -> {res['asset_id']}")
    else:
        click.echo(f"{res['name']} already names {res['asset_id']}")


@alias.command("rm")
@click.argument("name")
@click.option("--reason", required=True, help="Why (kept in the alias history).")
@click.option("--by", default=None, help="Who (default: cli:<user>).")
@home_option
@click.pass_context
@vault_errors
def alias_rm(ctx, name, reason, by, home):
    """Remove alias NAME (the history keeps it)."""
    keeper_from(ctx, home).ledger.remove_alias(name, by=by or who(), reason=reason)
    click.echo(f"{name} removed")


@alias.command("list")
@json_option
@home_option
@click.pass_context
@vault_errors
def alias_list(ctx, as_json, home):
    """Every alias and what it names ('latest' included, computed)."""
    data = keeper_from(ctx, home).ledger.aliases()
    if as_json:
        emit_json(data)
        return
    for name, a in data.items():
        how = "computed" if a["computed"] else f"set by {a['set_by']}: {a['reason']}"
        click.echo(f"{name:<16} {a['asset_id']:<24} {how}")


@alias.command("history")
@click.argument("name", required=False)
@click.option("-n", "limit", type=int, default=50, show_default=True)
@json_option
@home_option
@click.pass_context
@vault_errors
def alias_history(ctx, name, limit, as_json, home):
    """Alias moves, newest first: from, to, when, by whom, why."""
    import time

    rows = keeper_from(ctx, home).ledger.alias_history(name, limit)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["at"]))
        click.echo(
            f"{when}  {r['name']:<12} {r['from_asset'] or '(unset)'} -> {r['to_asset'] or '(removed)'}"
            f"  by {r['by']}: {r['reason']}"
        )


@vault.command()
@click.option("--dry-run", is_flag=True, help="Show what would go and the bytes freed; change nothing.")
@click.option("--force", is_flag=True, help="Also delete checkpoints no other zone holds.")
@json_option
@home_option
@click.pass_context
@vault_errors
def retention(ctx, dry_run, force, as_json, home):
    """Thin local checkpoints: keep the last N, aliased ones and one per hour/day/week by age."""
    from vault import retention as ret

    keeper = keeper_from(ctx, home)
    policy = ret.RetentionPolicy.from_config(keeper.realm.config)
    plan = ret.plan(keeper.ledger, keeper.catalog, keeper.realm.home.models, policy)
    result = None if dry_run else ret.apply(plan, keeper.ledger, keeper.catalog, force=force)
    if as_json:
        emit_json(
            {"dry_run": dry_run, "plan": plan.to_dict(), "result": result.to_dict() if result else None}
        )
        return
    for d in plan.decisions:
        if d.keep:
            click.echo(f"keep  {d.name:<34} {', '.join(d.reasons)}")
        else:
            last = "  (last copy: needs --force)" if d.last_copy and not force else ""
            click.echo(f"drop  {d.name:<34} {d.size_bytes / 1e6:8.1f} MB{last}")
    if result is None:
        click.echo(f"dry run: {len(plan.drop)} would go, {plan.bytes_freed / 1e6:.1f} MB freed")
    else:
        click.echo(
            f"deleted {len(result.deleted)}, {result.bytes_freed / 1e6:.1f} MB freed;"
            f" {len(result.refused)} kept as last copies"
        )


# ---- engineer G: zones, push, pull, verify (add below) ------------------------------------------
# realm vault zone add NAME PATH_OR_URL [--token-env VAR]   a folder, an http:// officer, or an fsspec URL
# realm vault zones [--json]                                 every zone with its free space
# realm vault push ASSET ZONE / pull ASSET [ZONE] [--json]   streamed, sha256-verified, resumable
# realm vault verify [--zone Z] [--json]                     re-hash copies; exit 1 if any is bad
# realm vault remove ASSET ZONE [--force]                    delete a copy (the last verified one needs --force)
# realm vault transfers [--json]                             recent pushes and pulls
# realm officer --zone NAME --base-dir DIR [--port 8768]     a branch officer (vault/officer.py)
def _zone_keeper(ctx: click.Context, home: str | None) -> VaultKeeper:
    """The keeper, with the zones declared in zones.yaml / hosts.yaml registered."""
    from vault.zones import sync_realm_zones

    keeper = keeper_from(ctx, home)
    keeper.catalog  # noqa: B018 - opening the catalog makes sure the home's `local` zone row exists
    sync_realm_zones(keeper.realm)
    return keeper


def _mb(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e6:,.1f} MB"


@vault.group()
def zone() -> None:
    """Register zones: folders (this disk, a NAS), branch officers, fsspec URLs."""


@zone.command("add")
@click.argument("name")
@click.argument("path_or_url")
@click.option(
    "--token-env", default=None, help="Env variable with an officer's token (default REALM_OFFICER_TOKEN)."
)
@json_option
@home_option
@click.pass_context
@vault_errors
def zone_add(ctx, name, path_or_url, token_env, as_json, home):
    """Register zone NAME: a folder path, http://HOST:PORT (a branch officer) or an fsspec URL."""
    from vault.zones import add_zone

    row = add_zone(_zone_keeper(ctx, home).realm.store, name, path_or_url, token_env)
    if as_json:
        emit_json(row)
    else:
        click.echo(f"zone {row['id']}: {row['kind']} {row['url']}")


@vault.command()
@json_option
@home_option
@click.pass_context
@vault_errors
def zones(ctx, as_json, home):
    """Every zone, best first, with its free space ('unknown' where a store cannot say)."""
    from vault.zones import list_zones

    rows = list_zones(_zone_keeper(ctx, home).realm.store)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['id']:<14} {r['kind']:<8} {_mb(r['free_bytes']):>16} free  {r['url']}")


def _transfer_line(res) -> str:
    where = f"{res.src_zone} -> {res.dst_zone}"
    if res.status == "held":
        return f"{res.asset_id}: {res.dst_zone} already holds it ({res.path}); nothing moved"
    return (
        f"{res.asset_id}: {where}, {res.files_moved} files, {_mb(res.bytes_moved)} in {res.seconds:.2f} s"
        f" ({res.files_skipped} already there) -> {res.path}"
    )


def _run_transfer(label: str, move, ctx, home, as_json: bool, asset: str, zone_name: str | None) -> None:
    """Push or pull with a progress line on a terminal, then one JSON result or one summary line."""
    from vault.progress import progress_line

    keeper = _zone_keeper(ctx, home)
    bar = progress_line(label, enabled=not as_json)
    try:
        res = move(keeper, asset, zone_name, progress=bar)
    finally:
        if bar:
            bar.finish()
    if as_json:
        emit_json(res.to_dict())
    else:
        click.echo(_transfer_line(res))


@vault.command()
@click.argument("asset")
@click.argument("zone_name", metavar="ZONE")
@json_option
@home_option
@click.pass_context
@vault_errors
def push(ctx, asset, zone_name, as_json, home):
    """Copy ASSET to ZONE: streamed, verified on arrival; a second push moves nothing."""
    from vault import transfer

    _run_transfer(f"push {asset} -> {zone_name}", transfer.push, ctx, home, as_json, asset, zone_name)


@vault.command()
@click.argument("asset")
@click.argument("zone_name", metavar="[ZONE]", required=False)
@json_option
@home_option
@click.pass_context
@vault_errors
def pull(ctx, asset, zone_name, as_json, home):
    """Bring ASSET into the home from ZONE, or from the best zone holding a verified copy."""
    from vault import transfer

    _run_transfer(f"pull {asset}", transfer.pull, ctx, home, as_json, asset, zone_name)


@vault.command()
@click.option("--zone", "zone_name", default=None, help="Only the copies in this zone.")
@json_option
@home_option
@click.pass_context
@vault_errors
def verify(ctx, zone_name, as_json, home):
    """Re-hash every copy and mark corrupt or missing ones; exit code 1 when any is found."""
    from vault import transfer
    from vault.progress import progress_line

    keeper = _zone_keeper(ctx, home)
    bar = progress_line("verify", enabled=not as_json)
    try:
        res = transfer.verify(keeper, zone_name, progress=bar)
    finally:
        if bar:
            bar.finish()
    if as_json:
        emit_json(res.to_dict())
    else:
        for kind in ("corrupt", "missing", "unreachable"):
            for e in getattr(res, kind):
                click.echo(f"{kind:<12} {e['asset_id']:<24} {e['zone']:<12} {e.get('error') or e['path']}")
        click.echo(
            f"verify: {len(res.verified)} verified, {len(res.corrupt)} corrupt, {len(res.missing)} missing,"
            f" {len(res.unreachable)} unreachable; {_mb(res.bytes_hashed)} hashed in {res.seconds:.2f} s"
        )
    if not res.ok:
        ctx.exit(1)


@vault.command()
@click.argument("asset")
@click.argument("zone_name", metavar="ZONE")
@click.option("--force", is_flag=True, help="Even when it is the last verified copy.")
@json_option
@home_option
@click.pass_context
@vault_errors
def remove(ctx, asset, zone_name, force, as_json, home):
    """Delete the copy of ASSET in ZONE; the last verified copy only with --force."""
    from vault import transfer

    res = transfer.remove(_zone_keeper(ctx, home), asset, zone_name, force=force)
    if as_json:
        emit_json(res)
    else:
        click.echo(f"{res['asset_id']}: removed from {res['zone']}")
        if res.get("warning"):
            click.echo(f"warning: {res['warning']}", err=True)


@vault.command()
@click.option("--asset", default=None, help="Only this asset id.")
@click.option("-n", "limit", type=int, default=20, show_default=True)
@json_option
@home_option
@click.pass_context
@vault_errors
def transfers(ctx, asset, limit, as_json, home):
    """Recent pushes and pulls, newest first (a killed one stays `running` until retried)."""
    from vault.transfer import TransferLog

    rows = TransferLog(keeper_from(ctx, home).realm.store).list(asset_id=asset, limit=limit)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['id']:>5} {r['direction']:<5} {r['asset_id']:<24} {r['src_zone']} -> {r['dst_zone']}"
            f"  {r['status']:<11} {_mb(r['bytes_moved'])} / {_mb(r['bytes_total'])}"
        )


@click.command()
@click.option("--zone", "zone_name", required=True, help="The zone this officer serves (shown in /status).")
@click.option("--base-dir", required=True, type=click.Path(file_okay=False), help="Folder holding the zone.")
@click.option("--port", type=int, default=None, help="Port (default: ports.officer, 8768).")
@click.option("--bind", default=None, help="Address to bind (default: the config's bind, 127.0.0.1).")
@click.option(
    "--token-env", default="REALM_OFFICER_TOKEN", show_default=True, help="Env variable holding the token."
)
@home_option
@click.pass_context
def officer(ctx, zone_name, base_dir, port, bind, token_env, home):
    """Serve a branch officer: a zone on this host, over HTTP (mutations need the token)."""
    import os
    import threading
    from pathlib import Path

    from sentinels.clikit import realm_from
    from sentinels.guardian import install_signal_handlers
    from sentinels.locks import AlreadyRunning, InstanceLock
    from sentinels.logs import setup_logging
    from vault.officer import LOCK_NAME, Officer, serve
    from vault.zones import ZONE_NAME, ZoneError

    if not ZONE_NAME.match(zone_name):
        raise click.BadParameter("use 1-64 of a-z 0-9 . _ -", param_hint="--zone")
    realm = realm_from(ctx, home)
    setup_logging(realm, f"officer-{zone_name}", console=True)
    base = Path(base_dir).expanduser().resolve()
    base.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        with InstanceLock(realm.home.run, f"officer-{zone_name}"), InstanceLock(base, LOCK_NAME):
            serve(
                Officer(zone_name, base, os.environ.get(token_env) or None),
                bind or realm.config.bind,
                port or realm.config.ports.officer,
                stop,
            )
    except (AlreadyRunning, ZoneError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


# ---- engineer H: serve (add below) --------------------------------------------------------------
@vault.command()
@click.option("--port", type=int, default=None, help="Port (default: ports.vault, 8767).")
@click.option("--bind", default=None, help="Address to bind (default: the config's bind, 127.0.0.1).")
@click.option("--threads", type=int, default=16, show_default=True, help="Worker threads.")
@home_option
@click.pass_context
def serve(ctx, port, bind, threads, home):
    """Serve the VaultKeeper API (every endpoint in docs/API.md) at http://127.0.0.1:8767/."""
    from sentinels.clikit import realm_from
    from sentinels.locks import AlreadyRunning, InstanceLock
    from sentinels.logs import setup_logging
    from vault.server import serve as serve_api

    realm = realm_from(ctx, home)
    setup_logging(realm, "vault", console=True)
    realm.ensure()
    try:
        lock = InstanceLock(realm.home.run, "vault").acquire()
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        serve_api(realm, bind or realm.config.bind, port or realm.config.ports.vault, threads)
    finally:
        lock.release()


commands = [vault, officer]
