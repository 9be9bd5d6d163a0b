"""Comparing two checkpoints: per-skill accuracy and val loss side by side, and per problem who solves it.

`compare(realm, a, b)` behind `realm compare A B [--json]` and the Tavern's GET /api/compare?a=&b=.
A and B are any reference the vault resolves (`vault.catalog.resolve_id`: a step, `step-1200`,
`checkpoint_1200`, a canonical name, `latest`, an alias such as `champion`), optionally prefixed with
the hero's name as the Oracle takes it (`dio@champion`); each must name a checkpoint in the ledger.

Where the answers come from. The guild stores every eval's problems, answers and verdicts: in
`evals` with the step it ran at, and per checkpoint in `checkpoint_evals` (guild/champion.py: the eval
at the checkpoint's step, or a quick eval of its weights). Per (skill, level), a checkpoint's answers
are its `checkpoint_evals` row, else the newest `evals` row at its step (SQL on the guild's table is
allowed here and only here, outside the guild). The pairs compared are those either checkpoint has;
when neither has any, each active skill at its current training level. A side with nothing stored
for a pair is scored now by the guild's own scoring (`Guild.score_skill`: its eval set, answer budget
and scorer, recording nothing) over greedy answers from `arena.inference` generation on that
checkpoint's folder. Answers scored here are not stored: evals are the guild's to write. Each side
says its `source`: "eval", "quick", "scored" (now), "none" (scoring off) or "unavailable" (with why).
Must not write anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from vault import ids
from vault.catalog import close_matches, resolve_id
from vault.errors import AssetNotFound
from vault.ledger import Ledger

if TYPE_CHECKING:
    from guild.guild import Guild
    from sentinels.realm import Realm

log = logging.getLogger("realm.watchtower.compare")


class CompareError(Exception):
    """A comparison that cannot be made as asked; `status` is the HTTP code the Tavern answers with."""

    status = 400


class CheckpointNotFound(CompareError, LookupError):
    """A reference that names no checkpoint in the ledger (the message lists the valid forms)."""

    status = 404


@dataclass(frozen=True)
class Side:
    """One checkpoint being compared, as the ledger knows it."""

    ref: str
    asset_id: str
    name: str
    step: int
    folder: Path | None
    deleted: bool
    val_loss: float | None
    train_loss: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "asset_id": self.asset_id,
            "name": self.name,
            "step": self.step,
            "deleted": self.deleted,
            "val_loss": self.val_loss,
            "train_loss": self.train_loss,
        }


def resolve_checkpoint(realm: Realm, ref: str) -> Side:
    """The checkpoint `ref` names (vault resolution; a `hero@` prefix is dropped), or CheckpointNotFound."""
    text = str(ref).strip()
    hero, at, rest = text.partition("@")
    if at and hero.lower() == realm.config.hero.name.lower():
        text = rest
    try:
        asset_id = resolve_id(realm.store, text)
    except AssetNotFound as exc:
        raise CheckpointNotFound(str(exc)) from exc
    if ids.kind_of(asset_id) != "checkpoint":
        raise CompareError(f"{ref!r} names {asset_id}, not a checkpoint: only checkpoints can be compared")
    step = int(asset_id.split("_", 1)[1])
    row = Ledger(realm.store).get(step)
    if row is None:
        close = close_matches(realm.store, str(step))
        hint = f"; the nearest are {', '.join(close)}" if close else "; the ledger holds no checkpoint yet"
        raise CheckpointNotFound(f"{ref!r} names {asset_id}, which the ledger does not hold{hint}")
    return Side(
        ref=str(ref),
        asset_id=asset_id,
        name=row["name"],
        step=step,
        folder=_folder(realm, row),
        deleted=bool(row["deleted"]),
        val_loss=row.get("val_loss"),
        train_loss=row.get("train_loss"),
    )


def _folder(realm: Realm, row: dict[str, Any]) -> Path | None:
    # This home's models/ first: a copied or moved home keeps the ledger's old absolute paths.
    for cand in (realm.home.models / row["name"], Path(row["path"])):
        if (cand / "config.json").is_file():
            return cand
    return None


# ---- the answers the guild stored ------------------------------------------------------------------
def stored_evals(realm: Realm, side: Side) -> dict[tuple[str, int], dict[str, Any]]:
    """{(skill, level): {"source", "eval_id", "items"}} of what the guild stored for this checkpoint.

    The checkpoint's own record (`guild.champion.checkpoint_evals`: the guild's eval at its step,
    source "eval", or a quick eval of its weights, source "quick") wins over an `evals` row at its
    step at another level (the newest such row per pair, source "eval")."""
    from guild.champion import checkpoint_evals

    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in realm.store.query(
        "SELECT id, skill, level, items FROM evals WHERE step = ? ORDER BY id", (side.step,)
    ):  # ORDER BY id: the newest of a pair wins
        out[(r["skill"], int(r["level"]))] = {
            "source": "eval",
            "eval_id": r["id"],
            "items": orjson.loads(r["items"] or "[]"),
        }
    for r in checkpoint_evals(realm.store, side.name):
        out[(r["skill"], int(r["level"]))] = {
            "source": "quick" if r["source"] == "quick" else "eval",
            "eval_id": r["eval_id"],
            "items": r["items"],
        }
    return out


def _current_pairs(realm: Realm, guild: Guild) -> list[tuple[str, int]]:
    """Each active skill at the level it trains at now (read only: no skill rows are created)."""
    from guild import progression

    levels = progression.skill_levels(realm.store)
    pairs = []
    for sid, spec in guild.specs.items():
        mastered = levels.get(sid, {}).get("mastered_level", 0)
        pairs.append((sid, progression.training_level(mastered, spec.max_level)))
    return pairs


class Scorer:
    """The guild's eval, run on a checkpoint without storing it; one loaded model per folder."""

    def __init__(self, realm: Realm, guild: Guild):
        self.realm, self.guild = realm, guild
        self._generate: dict[Path, Any] = {}

    def _generate_fn(self, folder: Path):
        if folder not in self._generate:
            from arena.inference import load_checkpoint_hero, make_generate_fn

            model, tokenizer = load_checkpoint_hero(folder)
            self._generate[folder] = make_generate_fn(
                model, tokenizer, max_new_tokens=self.realm.config.training.max_new_tokens
            )
        return self._generate[folder]

    def score(self, side: Side, skill: str, level: int) -> list[dict[str, Any]]:
        if side.folder is None:
            raise CompareError(f"{side.name} has no eval for {skill} L{level} and no local folder to score")
        if skill not in self.guild.specs:
            raise CompareError(f"{side.name} has no eval for {skill} L{level}, and {skill} is not active")
        # The guild's own scoring, which records nothing (its eval set, answer budget and scorer).
        items, _seconds = self.guild.score_skill(self._generate_fn(side.folder), skill, level)
        return items


def _side_result(
    side: Side, evals: dict, pair: tuple[str, int], scorer: Scorer | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """({"accuracy", "correct", "n", "source", "eval_id"}, items) for one side of one pair."""
    row = evals.get(pair)
    if row is not None:
        items, source, eval_id = row["items"], row["source"], row["eval_id"]
    elif scorer is None:
        return {"source": "none", "eval_id": None, "accuracy": None, "correct": None, "n": 0}, []
    else:
        try:
            items, source, eval_id = scorer.score(side, *pair), "scored", None
        except (CompareError, ValueError) as exc:
            log.warning("compare: %s", exc)
            return {
                "source": "unavailable",
                "error": str(exc),
                "eval_id": None,
                "accuracy": None,
                "correct": None,
                "n": 0,
            }, []
    correct = sum(1 for it in items if it.get("correct"))
    n = len(items)
    acc = correct / n if n else None
    return {"source": source, "eval_id": eval_id, "accuracy": acc, "correct": correct, "n": n}, items


def _problems(a_items: list[dict], b_items: list[dict]) -> dict[str, Any]:
    """Problems matched by prompt (A's order), each with both answers and verdicts and who solves it;
    `a_only`/`b_only` repeat the problems one side solves and the other does not."""
    b_by_prompt = {it["prompt"]: it for it in b_items}
    problems, unmatched = [], 0
    for ia in a_items:
        ib = b_by_prompt.get(ia["prompt"])
        if ib is None:
            unmatched += 1
            continue
        ca, cb = bool(ia.get("correct")), bool(ib.get("correct"))
        problems.append(
            {
                "prompt": ia["prompt"],
                "expected": ia.get("expected"),
                "a_answer": ia.get("answer"),
                "a_correct": ca,
                "b_answer": ib.get("answer"),
                "b_correct": cb,
                "solved_by": "both" if ca and cb else "a" if ca else "b" if cb else "neither",
            }
        )
    unmatched += len({it["prompt"] for it in b_items} - {it["prompt"] for it in a_items})
    solved = [p["solved_by"] for p in problems]
    return {
        "a_only": [p for p in problems if p["solved_by"] == "a"],
        "b_only": [p for p in problems if p["solved_by"] == "b"],
        "both": solved.count("both"),
        "neither": solved.count("neither"),
        "unmatched": unmatched,
        "problems": problems,
    }


def compare(
    realm: Realm,
    a: str,
    b: str,
    *,
    skills: list[str] | None = None,
    score_missing: bool = True,
) -> dict[str, Any]:
    """The comparison of checkpoints `a` and `b` (see the module docstring for where answers come
    from); `skills` keeps only those skills' rows."""
    from guild.guild import Guild

    side_a, side_b = resolve_checkpoint(realm, a), resolve_checkpoint(realm, b)
    evals_a, evals_b = stored_evals(realm, side_a), stored_evals(realm, side_b)
    guild = Guild.from_realm(realm)
    pairs = sorted(set(evals_a) | set(evals_b)) or _current_pairs(realm, guild)
    if skills:
        wanted = {s.strip().lower() for s in skills if s.strip()}
        pairs = [p for p in pairs if p[0] in wanted]
    scorer = Scorer(realm, guild) if score_missing else None
    skills = []
    for pair in pairs:
        ra, items_a = _side_result(side_a, evals_a, pair, scorer)
        rb, items_b = _side_result(side_b, evals_b, pair, scorer)
        skills.append({"skill": pair[0], "level": pair[1], "a": ra, "b": rb, **_problems(items_a, items_b)})
    va, vb = side_a.val_loss, side_b.val_loss
    better = None if va is None or vb is None or va == vb else ("a" if va < vb else "b")
    return {
        "a": side_a.to_dict(),
        "b": side_b.to_dict(),
        "val_loss": {"a": va, "b": vb, "lower": better},
        "skills": skills,
    }
