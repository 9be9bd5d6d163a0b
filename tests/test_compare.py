"""`realm compare A B` and GET /api/compare on real checkpoints: exact per-problem output.

The shared `trained_home` holds three real checkpoints (steps 10, 20, 30). The expected output is
computed independently of the watchtower: from what the guild stored (its `checkpoint_evals` and
`evals` rows, read here with plain SQL) or, for a checkpoint with nothing stored, from a direct greedy
generate call on that checkpoint's folder scored by the skill's own scorer.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.conftest import TRAINED_STEPS
from tests.helpers import free_port, query, run_realm, start_tavern, stop

SKILL = "bin"


def _folder(home: Path, step: int) -> tuple[str, Path]:
    [row] = query(home, "SELECT name FROM checkpoints WHERE step = ? AND deleted = 0", [step])
    return row["name"], home / "models" / row["name"]


def generated(home: Path, step: int, skill: str, level: int) -> list[dict]:
    """The eval set answered greedily by the checkpoint itself, scored by the skill's scorer."""
    from arena.inference import load_checkpoint_hero, make_generate_fn
    from guild.client import open_skill
    from guild.evalsets import load_eval_set, skills_dir
    from guild.guild import ANSWER_MARGIN
    from guild.skills import load_skill
    from sentinels.realm import Realm

    cfg = Realm.open(home).config
    items = load_eval_set(home, skill, level, cfg.guild)
    model, tokenizer = load_checkpoint_hero(_folder(home, step)[1])
    generate = make_generate_fn(model, tokenizer, max_new_tokens=cfg.training.max_new_tokens)
    budget = max(len(it["expected"].encode()) for it in items) + ANSWER_MARGIN
    answers = generate([it["prompt"] for it in items], max_new_tokens=budget)
    client = open_skill(load_skill(skill, skills_dir(cfg.guild)))
    return [
        {
            "prompt": it["prompt"],
            "expected": it["expected"],
            "answer": a,
            "correct": client.score(it["prompt"], it["expected"], a),
        }
        for it, a in zip(items, answers, strict=True)
    ]


def stored_pairs(home: Path, step: int) -> dict[tuple[str, int], tuple[list[dict], str, int | None]]:
    """{(skill, level): (items, source, eval_id)} the guild stored for the checkpoint at `step`."""
    name, _ = _folder(home, step)
    out = {}
    for r in query(home, "SELECT id, skill, level, items FROM evals WHERE step = ? ORDER BY id", [step]):
        out[(r["skill"], r["level"])] = (json.loads(r["items"]), "eval", r["id"])
    for r in query(
        home, "SELECT skill, level, items, source, eval_id FROM checkpoint_evals WHERE checkpoint = ?", [name]
    ):
        out[(r["skill"], r["level"])] = (
            json.loads(r["items"]),
            "quick" if r["source"] == "quick" else "eval",
            r["eval_id"],
        )
    return out


def expected_rows(home: Path, step_a: int, step_b: int, skill: str) -> list[dict]:
    sa, sb = stored_pairs(home, step_a), stored_pairs(home, step_b)
    pairs = sorted(p for p in set(sa) | set(sb) if p[0] == skill) or [(skill, 1)]
    rows = []
    for pair in pairs:
        sides = []
        for stored, step in ((sa, step_a), (sb, step_b)):
            items, source, eval_id = stored.get(pair) or (generated(home, step, *pair), "scored", None)
            correct = sum(1 for it in items if it["correct"])
            sides.append(
                (
                    items,
                    {
                        "source": source,
                        "eval_id": eval_id,
                        "accuracy": correct / len(items),
                        "correct": correct,
                        "n": len(items),
                    },
                )
            )
        (items_a, ra), (items_b, rb) = sides
        b_by = {it["prompt"]: it for it in items_b}
        problems = []
        for ia in items_a:
            ib = b_by[ia["prompt"]]
            ca, cb = bool(ia["correct"]), bool(ib["correct"])
            problems.append(
                {
                    "prompt": ia["prompt"],
                    "expected": ia["expected"],
                    "a_answer": ia["answer"],
                    "a_correct": ca,
                    "b_answer": ib["answer"],
                    "b_correct": cb,
                    "solved_by": {(True, True): "both", (True, False): "a", (False, True): "b"}.get(
                        (ca, cb), "neither"
                    ),
                }
            )
        rows.append(
            {
                "skill": pair[0],
                "level": pair[1],
                "a": ra,
                "b": rb,
                "a_only": [p for p in problems if p["solved_by"] == "a"],
                "b_only": [p for p in problems if p["solved_by"] == "b"],
                "both": sum(p["solved_by"] == "both" for p in problems),
                "neither": sum(p["solved_by"] == "neither" for p in problems),
                "unmatched": 0,
                "problems": problems,
            }
        )
    return rows


def test_realm_compare_two_real_checkpoints(trained_home: Path):
    first, last = TRAINED_STEPS[0], TRAINED_STEPS[-1]
    proc = run_realm(
        "compare", str(first), f"checkpoint_{last}", "--skill", SKILL, "--json", home=trained_home
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ledger = {
        r["step"]: r for r in query(trained_home, "SELECT step, name, val_loss, train_loss FROM checkpoints")
    }
    for key, step in (("a", first), ("b", last)):
        assert {k: out[key][k] for k in ("name", "step", "val_loss", "train_loss", "deleted")} == {
            "name": ledger[step]["name"],
            "step": step,
            "val_loss": ledger[step]["val_loss"],
            "train_loss": ledger[step]["train_loss"],
            "deleted": False,
        }
    lower = "a" if ledger[first]["val_loss"] < ledger[last]["val_loss"] else "b"
    assert out["val_loss"] == {"a": ledger[first]["val_loss"], "b": ledger[last]["val_loss"], "lower": lower}
    expected = expected_rows(trained_home, first, last, SKILL)
    assert out["skills"] == expected
    # Ten and thirty steps of training answer differently: the comparison tells them apart.
    assert any(p["a_answer"] != p["b_answer"] for row in expected for p in row["problems"])

    text = run_realm("compare", str(first), str(last), "--skill", SKILL, home=trained_home, check=True).stdout
    assert (
        f"A  {ledger[first]['name']}  step {first}" in text
        and f"B  {ledger[last]['name']}  step {last}" in text
    )
    assert f"{SKILL} L{expected[0]['level']}  A {expected[0]['a']['accuracy']:.2f}" in text

    missing = run_realm("compare", str(first), "99999", home=trained_home)
    assert (
        missing.returncode == 2
        and "checkpoint_99999" in missing.stderr
        and f"checkpoint_{last}" in missing.stderr
    )


def test_compare_reads_stored_answers_and_the_tavern_serves_it(trained_copy: Path):
    from guild.guild import Guild
    from sentinels.realm import Realm

    a_step, b_step = TRAINED_STEPS[1], TRAINED_STEPS[0]
    realm = Realm.open(trained_copy)
    guild = Guild.from_realm(realm)
    # An eval of the checkpoint at step 20 on BIN level 2 that solves the first two problems: answers
    # this hero could never give, so only the stored row can be where the comparison found them.
    client = guild.client(SKILL)
    items = guild.eval_set(SKILL, 2)
    crafted = []
    for i, it in enumerate(items):
        answer = it["expected"] if i < 2 else "I cannot say."
        crafted.append(
            {
                "prompt": it["prompt"],
                "expected": it["expected"],
                "answer": answer,
                "correct": client.score(it["prompt"], it["expected"], answer),
            }
        )
    assert [c["correct"] for c in crafted][:2] == [True, True]
    eval_id = guild.record_eval(SKILL, 2, crafted, a_step, 0.5)["id"]
    realm.store.close()

    port = free_port()
    proc = start_tavern(trained_copy, port)
    try:
        url = f"http://127.0.0.1:{port}/api/compare"
        r = requests.get(
            url, params={"a": f"dio@step-{a_step}", "b": f"checkpoint_{b_step}", "skill": SKILL}, timeout=300
        )
        assert r.status_code == 200, r.text
        out = r.json()
        bad = requests.get(url, params={"a": str(a_step), "b": "nope"}, timeout=30)
        half = requests.get(url, params={"a": str(a_step)}, timeout=30)
    finally:
        stop(proc)
    assert out["skills"] == expected_rows(trained_copy, a_step, b_step, SKILL)
    [row] = [r for r in out["skills"] if r["level"] == 2]
    assert row["a"] == {
        "source": "eval",
        "eval_id": eval_id,
        "accuracy": 2 / len(items),
        "correct": 2,
        "n": len(items),
    }
    assert row["b"]["source"] == "scored"
    assert [(p["prompt"], p["a_answer"]) for p in row["a_only"]] == [
        (c["prompt"], c["answer"]) for c in crafted[:2]
    ]
    assert (bad.status_code, half.status_code) == (404, 400)
    assert "valid forms" in bad.json()["error"]
