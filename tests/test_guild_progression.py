"""Progression, achievements, the planner and idle quests, on a real SQLite realm."""

from __future__ import annotations

import json

import pytest
from msgspec.structs import replace

from arena.intake.quarantine import quarantine_key
from guild import planner
from guild.guild import Guild
from guild.progression import should_level_up


def make_guild(realm, **overrides) -> Guild:
    # These tests script SY's answers, so SY is scheduled at once; the readiness rule (SY unlocks at
    # BIN level 1) has its own test in tests/test_planner_v4.py.
    overrides.setdefault("train_unready", True)
    cfg = replace(realm.config, guild=replace(realm.config.guild, **overrides))
    return Guild(realm.home.root, realm.store, realm.events, cfg)


def answering(guild: Guild, skill: str, n_right: int):
    """A fake hero that gets the first n_right prompts of each eval right and echoes the rest."""

    def generate(prompts: list[str], max_new_tokens: int | None = None) -> list[str]:
        level = guild.skill_state(skill)["training_level"]
        gold = {it["prompt"]: it["expected"] for it in guild.eval_set(skill, level)}
        return [gold[p] + "\nDone!" if i < n_right else p for i, p in enumerate(prompts)]

    return generate


def kinds(realm, prefix: str) -> list[dict]:
    return [e.payload for e in realm.events.since(0, kinds=[prefix])]


@pytest.mark.parametrize(
    "accs, up",
    [([], False), ([1.0, 1.0], False), ([1.0, 1.0, 0.4], True), ([0.6, 1.0, 0.6], False), ([0.8] * 3, True)],
)
def test_rule(accs, up):
    assert should_level_up(list(reversed(accs)), 3, 0.8) is up


def test_level_up_only_when_mean_of_last_three_reaches_threshold(realm):
    guild = make_guild(realm, skills=("bin",))
    st = guild.skill_state("bin")
    assert (st["mastered_level"], st["training_level"], st["xp"]) == (0, 1, 0)
    for step, right in ((100, 3), (200, 5), (300, 3)):  # 0.6, 1.0, 0.6: mean 0.73
        [row] = guild.evaluate(answering(guild, "bin", right), step)
        assert not row["leveled_up"]
    assert guild.skill_state("bin")["mastered_level"] == 0
    [row] = guild.evaluate(answering(guild, "bin", 5), 400)  # last three 1.0, 0.6, 1.0: mean 0.87
    assert row["leveled_up"] and row["level"] == 1
    st = guild.skill_state("bin")
    assert (st["mastered_level"], st["training_level"], st["recent_accuracy"]) == (1, 2, [])
    assert st["xp"] == 3 + 5 + 3 + 5
    assert kinds(realm, "skill.level_up") == [{"skill": "bin", "level": 1, "step": 400}]
    done = kinds(realm, "eval.done")
    assert [d["accuracy"] for d in done] == [0.6, 1.0, 0.6, 1.0]
    assert set(done[0]) == {"skill", "level", "n", "correct", "accuracy", "step", "seconds"}
    # The next eval runs on the new training level's set, and one eval there is not enough.
    [row] = guild.evaluate(answering(guild, "bin", 5), 500)
    assert (row["level"], row["leveled_up"]) == (2, False)
    stored = realm.store.one("SELECT items FROM evals WHERE step = 100")
    items = json.loads(stored["items"])
    assert set(items[0]) == {"prompt", "expected", "answer", "correct"}
    assert [i["correct"] for i in items] == [True, True, True, False, False]
    ach = {a["id"] for a in kinds(realm, "achievement.unlocked")}
    assert {"first_level_up", "first_perfect", "all_skills"} <= ach


def test_each_skill_has_its_own_progress(realm):
    guild = make_guild(realm, skills=("bin", "sy"))
    calls, budgets = [], []

    def gen(prompts, max_new_tokens=None):
        calls.append(len(prompts))
        budgets.append(max_new_tokens)
        return prompts

    rows = guild.evaluate(gen, 10)
    assert [(r["skill"], r["level"], r["accuracy"]) for r in rows] == [("bin", 1, 0.0), ("sy", 1, 0.0)]
    assert calls == [5, 5]
    # The eval budget covers each level's longest answer: SY L1 answers are longer than 64 tokens.
    for skill, budget in zip(("bin", "sy"), budgets, strict=True):
        longest = max(len(it["expected"].encode()) for it in guild.eval_set(skill, 1))
        assert budget == longest + 16
    assert budgets[1] > 64
    with realm.store.tx() as conn:
        conn.execute("UPDATE skills SET mastered_level = 4 WHERE id = 'sy'")
    assert guild.skill_state("sy")["training_level"] == 5
    assert guild.skill_state("bin")["training_level"] == 1


def test_hero_level_and_milestones(realm):
    guild = make_guild(realm)
    assert guild.check_progress(999, 0) == []
    assert kinds(realm, "hero.level_up") == []
    assert guild.check_progress(1000, 1) == ["first_quest", "steps_1k"]
    assert guild.check_progress(1500, 1) == []
    assert guild.check_progress(2100, 1, uptime_s=8 * 24 * 3600) == ["week_uptime"]
    assert [e["level"] for e in kinds(realm, "hero.level_up")] == [1, 2]
    assert guild.on_champion(2100, "checkpoint-2100") and not guild.on_champion(2200)
    unlocked = kinds(realm, "achievement.unlocked")
    assert [a["id"] for a in unlocked] == ["first_quest", "steps_1k", "week_uptime", "first_champion"]
    assert set(unlocked[0]) == {"id", "name", "description"}
    assert realm.store.scalar("SELECT count(*) FROM achievements") == 4


def test_idle_quest_and_sidecar(realm):
    guild = make_guild(realm, skills=("bin",), idle_quest_size=100)
    inbox = realm.home.inbox
    path = guild.write_idle_quest(inbox)
    sidecar = path.with_name(path.name + ".meta.json")
    assert sorted(p.name for p in inbox.iterdir()) == sorted([path.name, sidecar.name])  # no temp left
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    assert {k: meta[k] for k in ("spec", "priority", "generator", "skill", "level", "source")} == {
        "spec": "skill_v1",
        "priority": "low",
        "generator": {"id": "bin", "version": 2},
        "skill": "bin",
        "level": 1,
        "source": "guild",
    }
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    # No eval yet: the planner doubles practice (200 examples); BIN is the only skill, so no probe.
    # Each distinct problem is written once and the sidecar asks for enough epochs to train about 200.
    assert meta["count"] == len(lines) == len({json.dumps(x) for x in lines})
    assert meta["level_mix"] == {"1": 200}
    assert meta["count"] * meta["epochs"] >= 200 > meta["count"] * (meta["epochs"] - 1)
    assert isinstance(meta["seed"], int)
    assert sidecar.stat().st_mtime_ns <= path.stat().st_mtime_ns
    first = lines[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][0]["content"].startswith(("Compute:", "["))
    assert first["metadata"] == {"skill": "bin", "level": 1}
    evals = {
        quarantine_key(json.loads(x)["prompt"])
        for p in (realm.home.root / "evalsets").rglob("*.jsonl")
        for x in p.read_text().splitlines()
    }
    assert not {quarantine_key(x["messages"][0]["content"]) for x in lines} & evals
    # The decision is recorded, and the next eval of that skill becomes its outcome.
    dec = realm.store.one("SELECT * FROM planner_decisions")
    assert json.loads(dec["action"])["file"] == path.name and dec["outcome"] is None
    assert json.loads(dec["inputs"])["skills"][0]["skill"] == "bin"
    guild.evaluate(lambda ps, **_: ps, 50)
    outcome = json.loads(realm.store.one("SELECT outcome FROM planner_decisions")["outcome"])
    assert (outcome["level"], outcome["accuracy"], outcome["step"]) == (1, 0.0, 50)
    second = guild.write_idle_quest(inbox)
    assert (
        second != path
        and json.loads(second.with_name(second.name + ".meta.json").read_text())["seed"] != meta["seed"]
    )


def test_planner_heuristic_and_review_mix():
    v = planner.SkillView
    far = v("bin", 0, 1, 30, (0.1, 0.2, 0.0), 0.8, 0)
    near = v("sy", 3, 4, 50, (0.7, 0.7), 0.8, 0)
    act = planner.decide([near, far], 512, 0.2)
    assert (act["skill"], act["count"], act["level_mix"]) == ("bin", 1024, {"1": 1024})
    starved = v("sy", 3, 4, 50, (0.7, 0.7), 0.8, 6)
    act = planner.decide([far, starved], 512, 0.2)
    assert act["skill"] == "sy" and act["count"] == 256
    assert act["level_mix"] == {"1": 17, "2": 17, "3": 17, "4": 205}
    assert sum(planner.level_mix(9, 8, 100, 0.25).values()) == 100
    assert set(planner.level_mix(9, 8, 100, 0.25)) == {4, 5, 6, 7, 8, 9}


def test_planner_backs_off_a_stalled_skill():
    """A skill with STALL_EVALS evals at its level, none above 0, waits STALL_RETRY quests between tries."""
    v = planner.SkillView
    n, wait = planner.STALL_EVALS, planner.STALL_RETRY
    learning = v("bin", 0, 1, 30, (0.8, 0.8, 0.6), 0.8, 0, evals_at_level=n + 3, best_at_level=0.8)
    # Not yet stalled (one eval short): SY's bigger gap wins, with double-size quests (v1's rule).
    sy = v("sy", 0, 1, 50, (0.0, 0.0, 0.0), 0.8, 0, evals_at_level=n - 1)
    assert planner.decide([learning, sy], 512, 0.2)["skill"] == "sy"
    assert planner.decide([sy], 512, 0.2)["count"] == 1024
    # Stalled: BIN, almost mastered, goes on until SY has waited STALL_RETRY quests; then SY, quarter-size.
    for k in range(wait):
        stalled = v("sy", 0, 1, 50, (0.0, 0.0, 0.0), 0.8, k, evals_at_level=n)
        assert planner.decide([learning, stalled], 512, 0.2)["skill"] == "bin", k
    due = v("sy", 0, 1, 50, (0.0, 0.0, 0.0), 0.8, wait, evals_at_level=n)
    act = planner.decide([learning, due], 512, 0.2)
    assert (act["skill"], act["count"], act["stalled"]) == ("sy", 128, True)
    # Learned a little, then forgot while SY trained: at 0 now, but not stalled; it gets full practice.
    forgot = v("bin", 0, 1, 30, (0.0, 0.0, 0.0), 0.8, 0, evals_at_level=n + 3, best_at_level=0.6)
    act = planner.decide([forgot, v("sy", 0, 1, 50, (0.0,) * 3, 0.8, 3, evals_at_level=n)], 512, 0.2)
    assert (act["skill"], act["count"], act["stalled"]) == ("bin", 1024, False)
    # Every skill stalled and none due: v1's rule among them (the first in guild.skills on a tie),
    # at full size: there is no learning skill to give the compute to.
    fresh = [v(s, 0, 1, 30, (0.0,) * 3, 0.8, 0, evals_at_level=n) for s in ("bin", "sy")]
    act = planner.decide(fresh, 512, 0.2)
    assert (act["skill"], act["count"], act["stalled"]) == ("bin", 1024, True)
    # A lone stalled skill is not shrunk either: quarter-size quests would only mean more evals.
    act = planner.decide([due], 512, 0.2)
    assert (act["skill"], act["count"], act["stalled"]) == ("sy", 1024, True)


def test_guild_plan_reads_the_stall_from_real_evals(realm):
    guild = make_guild(realm, skills=("sy", "bin"))  # SY first: without the stall rule it wins the tie
    patience = guild.specs["sy"].stall_evals  # SY's own (configs/skills/sy.yaml), not the default
    assert patience > planner.STALL_EVALS
    with realm.store.tx() as conn:
        for skill, level, acc in [("sy", 2, 0.4)] + [("sy", 1, 0.0)] * (patience - 1):
            conn.execute(
                "INSERT INTO evals(ts, step, skill, level, n, correct, accuracy, seconds, items)"
                " VALUES (0, 0, ?, ?, 5, ?, ?, 0, '[]')",
                (skill, level, int(acc * 5), acc),
            )
    assert guild.plan()[1]["skill"] == "sy"  # one eval short of its patience: not stalled yet
    with realm.store.tx() as conn:
        for skill, level, acc in [("sy", 1, 0.0)]:
            conn.execute(
                "INSERT INTO evals(ts, step, skill, level, n, correct, accuracy, seconds, items)"
                " VALUES (0, 0, ?, ?, 5, ?, ?, 0, '[]')",
                (skill, level, int(acc * 5), acc),
            )
    _, action = guild.plan()
    inputs = json.loads(realm.store.one("SELECT inputs FROM planner_decisions ORDER BY id DESC")["inputs"])
    sy = next(s for s in inputs["skills"] if s["skill"] == "sy")
    # The 0.4 was at level 2, not SY's training level (1): it does not end the stall.
    assert (sy["evals_at_level"], sy["best_at_level"], sy["stall_evals"]) == (patience, 0.0, patience)
    assert action["skill"] == "bin"  # SY is stalled and not due; BIN, never evaluated, is not stalled
