"""Idle quests sized by compute, a probe before a large quest, and review from every skill (#16 items 4
and 8), on a real SQLite realm with the real generators, the hero's tokenizer and intake."""

from __future__ import annotations

import json

from msgspec.structs import replace

from arena.intake.quarantine import quarantine_key
from arena.intake.service import Intake
from guild import planner
from guild.guild import Guild


def make_guild(realm, **overrides) -> Guild:
    cfg = replace(realm.config, guild=replace(realm.config.guild, **overrides))
    return Guild(realm.home.root, realm.store, realm.events, cfg)


def echo(prompts, max_new_tokens=None):
    """A hero that answers every eval by repeating the prompt: accuracy 0."""
    return list(prompts)


def quest(path):
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text(encoding="utf-8"))
    return lines, meta


def decision(realm) -> dict:
    return json.loads(realm.store.one("SELECT action FROM planner_decisions ORDER BY id DESC")["action"])


def trained_tokens(guild, lines, epochs) -> int:
    per_pass = sum(
        guild.count_tokens(x["messages"][0]["content"], x["messages"][1]["content"]) for x in lines
    )
    return per_pass * epochs


def eval_keys(realm) -> set[str]:
    return {
        quarantine_key(json.loads(x)["prompt"])
        for p in (realm.home.root / "evalsets").rglob("*.jsonl")
        for x in p.read_text(encoding="utf-8").splitlines()
    }


def test_probe_first_then_quests_sized_by_tokens(realm):
    budget = 16384
    guild = make_guild(realm, skills=("bin", "sy"), idle_quest_tokens=budget)
    # No eval yet: the first quest is a probe, a quarter of the token budget.
    first, meta = quest(guild.write_idle_quest(realm.home.inbox))
    act = decision(realm)
    assert (act["skill"], act["probe"], act["unit"], act["count"]) == ("bin", True, "tokens", budget // 4)
    assert meta["probe"] is True and meta["budget"] == budget // 4 and meta["unit"] == "tokens"
    tpe = act["examples"]["tokens_per_example"]
    assert set(tpe) == {"bin:1:direct"} and 30 < tpe["bin:1:direct"] < 120
    assert meta["level_mix"] == {"1": round(budget / 4 / tpe["bin:1:direct"])}
    # What the battle trains (distinct lines x epochs, counted with the hero's tokenizer) is the budget,
    # give or take the last epoch over BIN L1's few distinct problems.
    assert budget / 4 <= trained_tokens(guild, first, meta["epochs"]) <= budget / 4 * 1.35
    # After an eval at 0 on both skills, neither is a probe: x2 quests, sized by tokens, so SY (an
    # example ~10x a BIN one) gets far fewer examples for the same compute.
    guild.evaluate(echo, 10)
    written = {}
    for _ in range(2):
        lines, meta = quest(guild.write_idle_quest(realm.home.inbox))
        act = decision(realm)
        assert (act["probe"], act["count_factor"], act["count"]) == (False, 2.0, 2 * budget)
        written[act["skill"]] = (lines, meta, act)
    assert set(written) == {"bin", "sy"}  # the starvation bonus alternates them
    (bin_lines, bin_meta, _), (sy_lines, sy_meta, sy_act) = written["bin"], written["sy"]
    sy_tpe = sy_act["examples"]["tokens_per_example"]["sy:1:direct"]
    assert sy_tpe > 5 * tpe["bin:1:direct"]
    assert sy_meta["level_mix"]["1"] * 5 < bin_meta["level_mix"]["1"]
    for lines, meta in ((bin_lines, bin_meta), (sy_lines, sy_meta)):
        assert 2 * budget * 0.75 <= trained_tokens(guild, lines, meta["epochs"]) <= 2 * budget * 1.35
    # The decisions record their inputs: the budget and the shares.
    inputs = json.loads(realm.store.one("SELECT inputs FROM planner_decisions ORDER BY id DESC")["inputs"])
    assert (inputs["idle_quest_tokens"], inputs["review_share"], inputs["verify_share"]) == (budget, 0.2, 0.2)


def test_a_new_level_is_probed_too_and_examples_mode_still_works(realm):
    guild = make_guild(realm, skills=("bin",), idle_quest_tokens=0, idle_quest_size=100)
    _, meta = quest(guild.write_idle_quest(realm.home.inbox))
    assert (meta["unit"], meta["probe"], meta["level_mix"]) == ("examples", True, {"1": 25})
    guild.evaluate(echo, 10)
    _, meta = quest(guild.write_idle_quest(realm.home.inbox))
    assert (meta["probe"], meta["level_mix"]) == (False, {"1": 200})
    with realm.store.tx() as conn:
        conn.execute("UPDATE skills SET mastered_level = 2 WHERE id = 'bin'")
    _, meta = quest(guild.write_idle_quest(realm.home.inbox))  # level 3 has no eval yet
    assert meta["probe"] is True and meta["level"] == 3 and sum(meta["level_mix"].values()) == 25


def _master(realm, levels: dict[str, int]) -> None:
    """Skills at these mastered levels, each with an eval at its training level (so none is a probe)."""
    with realm.store.tx() as conn:
        for skill, mastered in levels.items():
            conn.execute("UPDATE skills SET mastered_level = ? WHERE id = ?", (mastered, skill))
            conn.execute(
                "INSERT INTO evals(ts, step, skill, level, n, correct, accuracy, seconds, items)"
                " VALUES (0, 0, ?, ?, 5, 1, 0.2, 0, '[]')",
                (skill, mastered + 1),
            )


def test_every_idle_quest_reviews_every_skills_mastered_levels(realm):
    guild = make_guild(
        realm, skills=("bin", "sy"), idle_quest_tokens=0, idle_quest_size=400, review_share=0.3
    )
    guild.skills_status()  # creates the skills' rows
    _master(realm, {"bin": 2, "sy": 1})
    path = guild.write_idle_quest(realm.home.inbox)
    lines, meta = quest(path)
    act = decision(realm)
    assert act["review_share"] == 0.3 and act["count"] == 800  # mean 0.2 < 0.3: x2
    # 240 review examples: half to each skill with mastered levels, then over each one's levels.
    other = "sy" if act["skill"] == "bin" else "bin"
    own_review = {k: v for k, v in act["level_mix"].items() if int(k) != act["training_level"]}
    if act["skill"] == "bin":
        assert own_review == {"1": 60, "2": 60} and act["review_mix"] == {"sy": {"1": 120}}
    else:
        assert own_review == {"1": 120} and act["review_mix"] == {"bin": {"1": 60, "2": 60}}
    assert meta["review_mix"] == act["review_mix"]
    kinds = {(x["metadata"]["skill"], x["metadata"]["level"]) for x in lines}
    assert {("bin", 1), ("bin", 2), ("sy", 1)} <= kinds
    assert (act["skill"], act["training_level"]) in kinds and other in {s for s, _ in kinds}
    # No line is an eval item of any skill, and intake takes the whole file (no quarantine refusal).
    assert not {quarantine_key(x["messages"][0]["content"]) for x in lines} & eval_keys(realm)
    q = Intake.for_realm(realm).process_file(path)
    assert q.status == "queued" and q.example_count == len(lines), q.reason


def test_planner_review_mix_and_probe_rules():
    v = planner.SkillView
    fresh = v("bin", 0, 1, 30, (), 0.8, 0)
    assert fresh.probe and planner.decide([fresh], 1000, 0.2)["count"] == 250
    a = v("bin", 7, 8, 30, (0.5,), 0.8, 0, evals_at_level=1)
    b = v("sy", 2, 3, 50, (0.9,), 0.8, 0, evals_at_level=1)
    c = v("zz", 0, 1, 10, (0.9,), 0.8, 0, evals_at_level=1)  # nothing mastered: nothing to review
    act = planner.decide([a, b, c], 1000, 0.2)
    assert act["skill"] == "bin" and not act["probe"] and act["count"] == 1000
    assert act["level_mix"] == {"3": 20, "4": 20, "5": 20, "6": 20, "7": 20, "8": 800}
    assert act["review_mix"] == {"sy": {"1": 50, "2": 50}}
    # The verify share applies only where the training level has wrong eval answers.
    assert planner.decide([a, b], 1000, 0.2, 0.25)["verify"] == 0
    wrong = replace_view(a, wrong_answers=3)
    act = planner.decide([wrong, b], 1000, 0.2, 0.25)
    assert act["verify"] == 250 and act["level_mix"]["8"] == 550


def replace_view(view, **changes):
    from dataclasses import replace as dc_replace

    return dc_replace(view, **changes)
