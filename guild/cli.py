"""`realm skill ...`: list, generate, serve, check and eval-set commands for the guild's skills.

realm skill list
realm skill generate bin --level 3 --count 5 --seed 7      # JSONL on stdout
realm skill serve bin --port 8090                          # the skill-server contract
realm skill check bin answers.jsonl                        # {"n", "correct", "accuracy"}
realm skill evalsets                                       # write missing eval sets to the home
realm skill import-evals bin DIR [--name N] [--select]     # the original's eval files, a version of their own
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sentinels.realm import Realm

log = logging.getLogger(__name__)


def _spec(realm: Realm, skill_id: str):
    from guild.evalsets import skills_dir
    from guild.skills import SkillError, load_skill

    try:
        return load_skill(skill_id, skills_dir(realm.config.guild))
    except SkillError as exc:
        raise click.ClickException(str(exc)) from exc


def _home(f):
    from sentinels.clikit import home_option

    return home_option(f)


@click.group("skill")
def skill() -> None:
    """The guild's skills: generate problems, serve them over HTTP, score answers."""


@skill.command("list")
@_home
@click.pass_context
def list_cmd(ctx, home):
    """List skills with their levels and where they come from."""
    from guild.evalsets import skills_dir
    from guild.skills import list_skills, load_skill
    from sentinels.clikit import realm_from

    realm = realm_from(ctx.find_root(), home)
    for sid in list_skills(skills_dir(realm.config.guild)):
        s = load_skill(sid, skills_dir(realm.config.guild))
        where = s.api_url or f"local generator {s.generator} v{s.generator_version}"
        click.echo(f"{s.icon} {s.id:<6} {s.name:<20} L1-{s.max_level:<3} {where}")


@skill.command()
@click.argument("skill_id")
@click.option("--level", type=int, required=True, help="Level (1..max_level).")
@click.option("--count", type=int, default=1, show_default=True, help="Problems to print.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@_home
@click.pass_context
def generate(ctx, skill_id, level, count, seed, home):
    """Print problems as JSONL (skill_v1 quest lines: messages + metadata)."""
    from guild.client import open_skill
    from sentinels.clikit import realm_from

    realm = realm_from(ctx.find_root(), home)
    client = open_skill(_spec(realm, skill_id))
    try:
        items = client.generate(level, count, seed)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    for it in items:
        line = {
            "messages": [
                {"role": "user", "content": it["prompt"]},
                {"role": "assistant", "content": it["expected"]},
            ],
            "metadata": {"skill": skill_id, "level": level, "seed": seed, "key": it.get("key")},
        }
        click.echo(json.dumps(line, ensure_ascii=False))


@skill.command()
@click.argument("skill_id")
@click.option("--host", default=None, help="Bind address (default: the realm's bind).")
@click.option("--port", type=int, default=8090, show_default=True)
@_home
@click.pass_context
def serve(ctx, skill_id, host, port, home):
    """Serve a local skill over the skill-server HTTP contract until interrupted."""
    from guild.client import LocalSkill
    from guild.server import make_server
    from sentinels.clikit import realm_from
    from sentinels.logs import setup_logging

    realm = realm_from(ctx.find_root(), home)
    # One file per server: several skills may be served from one home, each on its own port.
    setup_logging(realm, f"skill-{skill_id}-{port}", console=True)
    spec = _spec(realm, skill_id)
    if spec.remote:
        raise click.ClickException(
            f"skill {skill_id!r} is remote ({spec.api_url}); only local skills can be served"
        )
    server = make_server(LocalSkill(spec), host or realm.config.bind, port)
    h, p = server.server_address[:2]
    click.echo(f"serving skill {skill_id} on http://{h}:{p}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@skill.command()
@click.argument("skill_id")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@_home
@click.pass_context
def check(ctx, skill_id, file, home):
    """Score a JSONL file of {"prompt", "expected", "response"}; prints {"n", "correct", "accuracy"}."""
    from guild.client import open_skill
    from sentinels.clikit import realm_from

    realm = realm_from(ctx.find_root(), home)
    client = open_skill(_spec(realm, skill_id))
    n = correct = 0
    for lineno, raw in enumerate(file, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            args = [row["prompt"], row["expected"], row["response"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(
                f"line {lineno}: expected a JSON object with prompt, expected and response ({exc})"
            ) from exc
        n += 1
        correct += bool(client.score(*args))
    click.echo(json.dumps({"n": n, "correct": correct, "accuracy": correct / n if n else 0.0}))


@skill.command()
@_home
@click.pass_context
def evalsets(ctx, home):
    """Write any missing eval sets into the realm home (idempotent)."""
    from guild.evalsets import ensure_eval_sets
    from sentinels.clikit import realm_from

    realm = realm_from(ctx.find_root(), home)
    realm.ensure()
    paths = ensure_eval_sets(realm.home.root, realm.config.guild)
    click.echo(f"{len(paths)} eval-set files under {realm.home.root / 'evalsets'}", file=sys.stdout)


@skill.command("import-evals")
@click.argument("skill_id")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Version name (import-NAME); default: a hash of the files.")
@click.option("--select", is_flag=True, help="Make the guild's evals use this version from now on.")
@_home
@click.pass_context
def import_evals(ctx, skill_id, source, name, select, home):
    """Import the original system's eval data for a skill as an eval-set version of its own."""
    from guild.evalsets import select_version
    from guild.importers import IMPORTERS, EvalImportError, accepts
    from sentinels.clikit import realm_from

    realm = realm_from(ctx.find_root(), home)
    _spec(realm, skill_id)  # an unknown skill fails like every other skill command
    if skill_id not in IMPORTERS:
        raise click.ClickException(
            f"no importer for skill {skill_id!r}; known: {', '.join(sorted(IMPORTERS))}"
        )
    realm.ensure()
    if name and not accepts(skill_id, "name"):  # this skill's importer names its versions itself
        raise click.ClickException(f"--name is not supported for skill {skill_id!r}")
    try:
        result = IMPORTERS[skill_id](realm.home.root, source, **({"name": name} if name else {}))
        if select:  # one path for every skill: the guild's evals read the selected version
            select_version(realm.home.root, skill_id, result["version"])
    except (EvalImportError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for note in result.get("notes", []):
        log.warning("import-evals %s: %s", skill_id, note)
    click.echo(json.dumps({**result, "selected": select}, ensure_ascii=False))


commands: list[click.Command] = [skill]
