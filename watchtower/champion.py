"""The champion board: every live checkpoint ranked by the champion rule, and the champion's history.

A read model (the watchtower writes nothing). It joins the vault's ledger (`checkpoints`, `aliases`,
`alias_history`) with the guild's `checkpoint_evals` in a handful of flat queries, then ranks with
`guild.champion.rank_key`, the rule's one definition, so the board and the guild that moves the
alias cannot disagree. `realm champion [--json]` (watchtower/cli.py) and the Tavern's
GET /api/champion (tavern/api/champion.py) both print `board()`.

Order: evaluated checkpoints by the rule, best first; two that tie keep step order, earlier first
(the rule keeps the earlier champion on a tie); then checkpoints without evals, newest first, with no
rank. Each row carries per-skill accuracy at the level it was scored at, the val loss and its aliases.
The board over 1,000 checkpoints is read in well under 50 ms (bench/champion.py, PERFORMANCE.md).
"""

from __future__ import annotations

from typing import Any

from guild.champion import CHAMPION, RULE, rank_key, score
from vault.ids import LATEST, checkpoint_id
from vault.store import Store

HISTORY_LIMIT = 20


def board(store: Store, *, limit: int | None = None, history: int = HISTORY_LIMIT) -> dict[str, Any]:
    """The board as JSON-ready data: the rule, the champion, ranked checkpoints and the history."""
    conn = store.connect()
    live = conn.execute(
        "SELECT step, name, created_at, train_loss, val_loss, training_file FROM checkpoints"
        " WHERE deleted = 0 ORDER BY step"
    ).fetchall()
    evals: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(
        "SELECT e.checkpoint, e.skill, e.level, e.mastered_level, e.n, e.correct, e.accuracy, e.source"
        " FROM checkpoint_evals e JOIN checkpoints c ON c.name = e.checkpoint AND c.deleted = 0"
    ):
        evals.setdefault(r[0], []).append(
            {
                "skill": r[1],
                "level": r[2],
                "mastered_level": r[3],
                "n": r[4],
                "correct": r[5],
                "accuracy": r[6],
                "source": r[7],
            }
        )
    by_asset: dict[str, list[str]] = {}
    aliases = {}
    for name, asset_id, set_at, set_by, reason in conn.execute(
        "SELECT name, asset_id, set_at, set_by, reason FROM aliases ORDER BY name"
    ):
        by_asset.setdefault(asset_id, []).append(name)
        aliases[name] = {"asset_id": asset_id, "set_at": set_at, "set_by": set_by, "reason": reason}
    latest_step = live[-1][0] if live else None

    ranked, unranked, skills = [], [], set()
    for step, name, created_at, train_loss, val_loss, training_file in live:
        asset_id = checkpoint_id(step)
        names = list(by_asset.get(asset_id, []))
        if step == latest_step:
            names.insert(0, LATEST)
        row: dict[str, Any] = {
            "rank": None,
            "name": name,
            "step": step,
            "asset_id": asset_id,
            "created_at": created_at,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "training_file": training_file,
            "aliases": names,
            "evaluated": False,
            "mastered": None,
            "accuracy": None,
            "skills": {},
        }
        s = score(name, step, evals.get(name, ()), val_loss)
        if s is None:
            unranked.append(row)
            continue
        skills.update(s.skills)
        row.update(evaluated=True, mastered=s.mastered, accuracy=s.accuracy, skills=s.skills)
        ranked.append((rank_key(s), -step, row))
    # Best first; on a tie the earlier step first (the rule keeps the earlier champion).
    ranked.sort(key=lambda t: (t[0], t[1]), reverse=True)
    rows = [r for _, _, r in ranked]
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    rows += reversed(unranked)
    total = len(rows)
    if limit is not None:
        rows = rows[: max(0, int(limit))]
    return {
        "rule": RULE,
        "champion": _champion(conn, aliases.get(CHAMPION), live),
        "leader": ranked[0][2]["name"] if ranked else None,
        "skills": sorted(skills),
        "count": total,
        "evaluated": len(ranked),
        "checkpoints": rows,
        "history": _history(conn, history, {step: name for step, name, *_ in live}),
    }


def _champion(conn, alias: dict[str, Any] | None, live: list) -> dict[str, Any] | None:
    """The alias's target with its checkpoint name and step (None when no champion is set)."""
    if alias is None:
        return None
    step = _step(alias["asset_id"])
    live_names = {s: n for s, n, *_ in live}
    return {
        **alias,
        "step": step,
        "name": _name(conn, alias["asset_id"], live_names),
        "live": step in live_names,
    }


def _history(conn, limit: int, live_names: dict[int, str]) -> list[dict[str, Any]]:
    """The champion's moves, newest first, with the checkpoint names they moved between."""
    rows = conn.execute(
        "SELECT id, from_asset, to_asset, at, by, reason FROM alias_history WHERE name = ?"
        " ORDER BY id DESC LIMIT ?",
        (CHAMPION, int(limit)),
    ).fetchall()
    keys = ("id", "from_asset", "to_asset", "at", "by", "reason")
    out = []
    for r in rows:
        h = dict(zip(keys, r, strict=True))
        h["from_name"] = _name(conn, h["from_asset"], live_names)
        h["to_name"] = _name(conn, h["to_asset"], live_names)
        out.append(h)
    return out


def _name(conn, asset_id: str | None, live_names: dict[int, str]) -> str | None:
    """A checkpoint asset's canonical name (a deleted one's from the ledger too); None otherwise."""
    step = _step(asset_id)
    if step is None:
        return None
    if step in live_names:
        return live_names[step]
    row = conn.execute(
        "SELECT name FROM checkpoints WHERE step = ? ORDER BY deleted, id DESC LIMIT 1", (step,)
    ).fetchone()
    return row[0] if row else None


def _step(asset_id: str | None) -> int | None:
    if not asset_id or not asset_id.startswith("checkpoint_"):
        return None
    tail = asset_id.split("_", 1)[1]
    return int(tail) if tail.isdigit() else None
