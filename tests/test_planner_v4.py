"""The guild's planner v4 and skill readiness (#16 items 4, 5, 8): a skill the hero cannot learn waits
with a reason, idle quests are capped by compute, a never-evaluated skill is probed with a small quest,
and review draws from every skill's mastered levels, each skill's evals kept out."""

from __future__ import annotations

import json

from msgspec.structs import replace

from guild import evalsets, planner
from guild.guild import Guild
from guild.skills import load_skill, ready_for
from watchtower.skills import skill_cards


def guild_for(realm, hero=None, **guild_overrides) -> Guild:
    cfg = realm.config
    cfg = replace(cfg, guild=replace(cfg.guild, **guild_overrides), hero=replace(cfg.hero, **(hero or {})))
    return Guild(realm.home.root, realm.store, realm.events, cfg)


def _master(realm, skill: str, level: int) -> None:
    from guild import progression

    progression.skill_row(realm.store, skill)
    with realm.store.tx() as conn:
        conn.execute("UPDATE skills SET mastered_level = ? WHERE id = ?", (level, skill))


def test_sy_unlocks_once_bin_level_1_is_mastered_and_says_why_until_then(realm):
    g = guild_for(realm)
    assert g.cfg.skills == ("bin", "sy")  # the default config lists both
    assert g.scheduled == ["bin"]
    assert g.waiting["sy"].startswith("unlocks at BIN level 1 (now 0).") and "4,422" in g.waiting["sy"]
    # It is neither evaluated nor planned for.
    asked = []
    rows = g.evaluate(lambda prompts, max_new_tokens=None: asked.extend(prompts) or ["" for _ in prompts], 1)
    assert [r["skill"] for r in rows] == ["bin"]
    assert g.plan()[1]["skill"] == "bin"
    # The same guild object sees the level-up: SY is scheduled from then on, and probed first.
    _master(realm, "bin", 1)
    assert g.scheduled == ["bin", "sy"] and g.waiting == {}
    assert g.plan()[1]["skill"] == "sy"
    # guild.train_unready schedules it at once; a prerequisite that is not active does not hold it.
    _master(realm, "bin", 0)
    assert guild_for(realm, train_unready=True).scheduled == ["bin", "sy"]
    assert guild_for(realm, skills=("sy",)).scheduled == ["sy"]


def test_a_skill_that_needs_a_pretrained_hero_waits_for_dio(realm):
    from dataclasses import replace as dc_replace

    spec = dc_replace(load_skill("sy"), needs_pretrained=True, needs_skills=(), needs_why="It needs English.")
    cfg = realm.config
    why = ready_for(spec, cfg.guild, cfg.hero)
    assert why.startswith("waiting for a pretrained hero: It needs English.") and "hero.base_model" in why
    assert ready_for(spec, cfg.guild, replace(cfg.hero, base_model="/models/any")) is None
    assert ready_for(spec, cfg.guild, replace(cfg.hero, preset="qwen3-0.6b")) is None
    assert ready_for(spec, replace(cfg.guild, train_unready=True), cfg.hero) is None


def test_planning_with_every_skill_waiting_says_which_and_why(realm):
    from dataclasses import replace as dc_replace

    assert guild_for(realm, skills=("sy",)).plan()[1]["skill"] == "sy"  # BIN is not active: no hold
    g = guild_for(realm)
    g.specs["bin"] = dc_replace(g.specs["bin"], needs_skills=(("sy", 1),))  # a tree that never unlocks
    try:
        g.plan()
    except ValueError as exc:
        assert "sy: unlocks at BIN level 1" in str(exc) and "bin: unlocks at SY level 1" in str(exc)
    else:
        raise AssertionError("planning with every skill waiting must fail with the reason")


def test_skill_cards_say_why_a_skill_waits(realm):
    cards = {c["id"]: c for c in skill_cards(realm.store, realm.config.guild, realm.config.hero)}
    assert cards["bin"]["waiting"] is None and cards["bin"]["active"]
    assert cards["sy"]["waiting"] == ready_for(load_skill("sy"), realm.config.guild, realm.config.hero)
    _master(realm, "bin", 1)
    assert {c["id"]: c["waiting"] for c in skill_cards(realm.store, realm.config.guild, realm.config.hero)}[
        "sy"
    ] is None


def view(skill, mastered, training, recent=(), evals=0, since=0):
    return planner.SkillView(skill, mastered, training, 50, tuple(recent), 0.8, since, evals_at_level=evals)


def test_quests_are_capped_by_tokens_and_short_examples_keep_their_count():
    tpe = {"bin": 120.0, "sy": 560.0}
    size = lambda skill, level: tpe[skill]  # noqa: E731
    # Far from the bar (x2): BIN, short, stays at 2 x 2,048 examples; SY is capped by 2 x 262,144 tokens.
    act = planner.decide([view("bin", 0, 1, (0.0,), 3)], 2048, 0.2, 262144, size)
    assert (act["count"], act["sized_by"], act["level_mix"]) == (4096, "examples", {"1": 4096})
    act = planner.decide([view("sy", 0, 1, (0.0,), 3)], 2048, 0.2, 262144, size)
    assert (act["count"], act["sized_by"]) == (int(2 * 262144 / 560), "tokens")
    assert act["count"] * tpe["sy"] <= 2 * 262144
    # Without a size function: v2's action, in examples.
    assert planner.decide([view("sy", 0, 1, (0.0,), 3)], 2048, 0.2)["count"] == 4096


def test_a_skill_never_evaluated_is_probed_with_a_small_quest_first():
    size = lambda skill, level: 100.0  # noqa: E731
    fresh, other = view("bin", 0, 1), view("sy", 0, 1, (0.2,), 4, since=0)
    act = planner.decide([fresh, other], 2048, 0.2, 262144, size)
    assert (act["skill"], act["probe"], act["count_factor"], act["count"]) == ("bin", True, 0.25, 512)
    # Once one eval is in, the gap rule sizes it (0.0: far from the bar, x2).
    act = planner.decide([view("bin", 0, 1, (0.0,), 1), other], 2048, 0.2, 262144, size)
    assert (act["probe"], act["count"]) == (False, 4096)
    # The only scheduled skill is not probed: there is no other skill to give the compute to.
    act = planner.decide([fresh], 2048, 0.2, 262144, size)
    assert (act["probe"], act["count"]) == (False, 4096)


def test_review_comes_from_every_skills_mastered_levels_in_equal_tokens():
    tpe = {("bin", 1): 60.0, ("bin", 2): 80.0, ("bin", 3): 100.0, ("sy", 1): 500.0}
    size = lambda skill, level: tpe[(skill, level)]  # noqa: E731
    bin3 = view("bin", 2, 3, (0.4,), 2)
    sy2 = view("sy", 1, 2, (0.9, 0.9, 0.9), 3)  # near its bar: BIN's gap wins
    act = planner.decide([bin3, sy2], 1000, 0.2, 10**9, size)
    assert act["skill"] == "bin" and act["count_factor"] == 1.0
    # 200 direct examples' worth of tokens (200 x 100) split over three (skill, level) pairs.
    assert act["level_mix"] == {"1": round(20000 / 3 / 60), "2": round(20000 / 3 / 80), "3": 800}
    assert act["review_mix"] == {"sy": {"1": round(20000 / 3 / 500)}}
    assert act["tokens_per_example"]["sy:1"] == 500.0


def test_an_idle_quest_reviews_another_skill_without_its_evals(realm):
    g = guild_for(realm, train_unready=True, idle_quest_size=64)
    g.ensure_eval_sets()
    with realm.store.tx() as conn:  # SY mastered L1 earlier; BIN at L1 now
        conn.execute(
            "INSERT OR REPLACE INTO skills(id, mastered_level, xp, updated_at) VALUES ('sy', 1, 0, '')"
        )
        conn.execute(
            "INSERT INTO evals(ts, step, skill, level, n, correct, accuracy, seconds, items)"
            " VALUES (0, 0, 'bin', 1, 5, 0, 0.0, 0, '[]')"
        )
        conn.execute(
            "INSERT INTO evals(ts, step, skill, level, n, correct, accuracy, seconds, items)"
            " VALUES (0, 0, 'sy', 2, 5, 5, 1.0, 0, '[]')"
        )
    path = g.write_idle_quest(realm.home.inbox)
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    assert meta["skill"] == "bin" and set(meta["review_mix"]) == {"sy"}
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    by_skill = {s: [x for x in lines if x["metadata"]["skill"] == s] for s in ("bin", "sy")}
    assert by_skill["bin"] and by_skill["sy"]
    assert {x["metadata"]["level"] for x in by_skill["sy"]} == {1}
    banned = evalsets.quarantine_set(realm.home.root, "sy")
    assert not {evalsets.norm_prompt(x["messages"][0]["content"]) for x in by_skill["sy"]} & banned
    decision = realm.store.one("SELECT action, inputs FROM planner_decisions ORDER BY id DESC")
    assert json.loads(decision["action"])["review_mix"] == meta["review_mix"]
    assert json.loads(decision["inputs"])["review_share"] == 0.2


def test_bin_level_1_through_real_evals_unlocks_sy_and_says_so(realm):
    """The default guild, real eval sets, a hero that answers BIN with the gold: the level-up that
    masters BIN L1 emits skill.unlocked for SY, and the next eval scores SY too."""
    g = guild_for(realm)

    def gold(prompts, max_new_tokens=None):
        answers = {}
        for s in g.scheduled:
            level = g.skill_state(s)["training_level"]
            answers |= {it["prompt"]: it["expected"] for it in g.eval_set(s, level)}
        return [answers.get(p, "") for p in prompts]

    for step in (100, 200):
        assert [r["skill"] for r in g.evaluate(gold, step)] == ["bin"]
    assert not list(realm.events.since(0, kinds=["skill.unlocked"]))
    assert [(r["skill"], r["leveled_up"]) for r in g.evaluate(gold, 300)] == [("bin", True)]
    [ev] = list(realm.events.since(0, kinds=["skill.unlocked"]))
    assert ev.payload == {"skill": "sy", "by": "bin", "level": 1, "step": 300}
    assert [r["skill"] for r in g.evaluate(gold, 400)] == ["bin", "sy"]
