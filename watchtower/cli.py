"""The watchtower's commands: `realm compare A B [--json]` and `realm lineage [--json]`.

Each opens the realm and prints a read model (`watchtower.compare`, `watchtower.lineage`); nothing
here writes. A reference that names no checkpoint exits 2 with the vault's message (valid forms,
closest ids); a reference that names something that is not a checkpoint exits 2 too.
"""

from __future__ import annotations

import json
from typing import Any

import click

from sentinels.clikit import home_option, realm_from


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _num(v: float | None, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def _acc(r: dict[str, Any]) -> str:
    if r.get("accuracy") is None:
        return f"- ({r['source']})"
    return f"{r['accuracy']:.2f} ({r['correct']}/{r['n']}, {r['source']})"


def _show_problems(title: str, problems: list[dict[str, Any]]) -> None:
    if not problems:
        return
    click.echo(f"    {title}:")
    for p in problems:
        click.echo(f"      {p['prompt']!r}")
        click.echo(f"        expected {p['expected']!r}")
        click.echo(f"        A        {p['a_answer']!r}")
        click.echo(f"        B        {p['b_answer']!r}")


def _show_compare(out: dict[str, Any]) -> None:
    for key in ("a", "b"):
        s = out[key]
        gone = "  (deleted)" if s["deleted"] else ""
        click.echo(
            f"{key.upper()}  {s['name']}  step {s['step']}  val_loss {_num(s['val_loss'])}"
            f"  train_loss {_num(s['train_loss'])}{gone}"
        )
    lower = out["val_loss"]["lower"]
    click.echo(f"val_loss lower: {lower.upper() if lower else 'neither'}")
    for row in out["skills"]:
        click.echo(
            f"{row['skill']} L{row['level']}  A {_acc(row['a'])}  B {_acc(row['b'])}"
            f"  both {row['both']}  neither {row['neither']}"
        )
        _show_problems("A solves, B does not", row["a_only"])
        _show_problems("B solves, A does not", row["b_only"])


@click.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--skill", "skills", multiple=True, help="Only this skill (repeatable).")
@click.option(
    "--no-score",
    is_flag=True,
    help="Only read stored evals; never run the eval on a checkpoint that has none at its step.",
)
@home_option
@click.pass_context
def compare_cmd(ctx, a, b, as_json, skills, no_score, home):
    """Compare checkpoints A and B: accuracy per skill, val loss, and who solves which eval problem."""
    from watchtower.compare import CompareError, compare

    realm = realm_from(ctx, home)
    realm.ensure()
    try:
        out = compare(realm, a, b, skills=list(skills), score_missing=not no_score)
    except CompareError as exc:
        click.echo(f"realm compare: {exc}", err=True)
        ctx.exit(2)
    if as_json:
        _emit_json(out)
    else:
        _show_compare(out)


def _show_group(title: str, key: str, rows: list[dict[str, Any]]) -> None:
    click.echo(title)
    for r in rows:
        q, e = r["quests"], r["examples"]
        if not (q["accepted"] or q["refused"]):
            continue
        click.echo(
            f"  {r[key]:<24} quests {q['accepted']} accepted, {q['refused']} refused;"
            f" examples {e['accepted']} accepted, {e['refused']} refused"
        )
        for reason in r["top_reasons"]:
            click.echo(f"      {reason['count']:>4}  {reason['reason']}")


@click.command("lineage")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@home_option
@click.pass_context
def lineage_cmd(ctx, as_json, home):
    """Quests and examples accepted and refused, per generator, validator and source, with top reasons."""
    from watchtower.lineage import lineage_stats

    realm = realm_from(ctx, home)
    realm.ensure()
    out = lineage_stats(realm.store)
    if as_json:
        _emit_json(out)
        return
    _show_group("per generator", "generator", out["generators"])
    _show_group("per validator", "validator", out["validators"])
    _show_group("per source", "source", out["sources"])


commands = [compare_cmd, lineage_cmd]


# ---- realm champion (engineer M's section: the champion board, watchtower/champion.py) -------------
def _skill_cell(v: dict[str, Any] | None) -> str:
    return "-" if v is None else f"L{v['level']} {100 * v['accuracy']:.0f}%"


def _show_board(out: dict[str, Any]) -> None:
    import time

    champ = out["champion"]
    if champ is None:
        click.echo("champion: none yet")
    else:
        name = champ["name"] or champ["asset_id"]
        click.echo(f"champion: {name}  (set by {champ['set_by']}: {champ['reason']})")
    click.echo(f"rule: {out['rule']}")
    skills = out["skills"]
    head = f"{'rank':>4}  {'checkpoint':<30} {'step':>8} {'mastered':>8} {'acc':>6}"
    head += "".join(f" {s.upper():>9}" for s in skills) + f" {'val_loss':>9}  aliases"
    click.echo(head)
    for r in out["checkpoints"]:
        rank = "-" if r["rank"] is None else str(r["rank"])
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.0f}%"
        mastered = "-" if r["mastered"] is None else str(r["mastered"])
        per = "".join(f" {_skill_cell(r['skills'].get(s)):>9}" for s in skills)
        click.echo(
            f"{rank:>4}  {r['name']:<30} {r['step']:>8} {mastered:>8} {acc:>6}{per}"
            f" {_num(r['val_loss']):>9}  {', '.join(r['aliases'])}"
        )
    if out["count"] > len(out["checkpoints"]):
        click.echo(f"... {out['count'] - len(out['checkpoints'])} more (--limit)")
    click.echo("history:")
    for h in out["history"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["at"]))
        frm = h["from_name"] or h["from_asset"] or "none"
        to = h["to_name"] or h["to_asset"] or "removed"
        click.echo(f"  {when}  {frm} -> {to}  by {h['by']}: {h['reason']}")


@click.command("champion")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Checkpoints listed."
)
@home_option
@click.pass_context
def champion_cmd(ctx, as_json, limit, home):
    """The champion board: checkpoints ranked by the champion rule, and the champion's history."""
    from watchtower.champion import board

    realm = realm_from(ctx, home)
    realm.ensure()
    out = board(realm.store, limit=limit)
    if as_json:
        _emit_json(out)
    else:
        _show_board(out)


commands.append(champion_cmd)
# ---- end of engineer M's section -------------------------------------------------------------------
