"""Verify examples from the evals' wrong answers (#16 item 6, guild/verify.py): they pass intake, carry
no eval prompt or eval problem, and are labelled by the skill's own scorer."""

from __future__ import annotations

import json

from msgspec.structs import replace

from arena.intake.quarantine import quarantine_key
from arena.intake.service import Intake
from guild import verify
from guild.guild import Guild

WRONG_VALUE = "①⓪①⓪①⓪①⓪①"  # 341: no BIN level-1 problem has this answer


def make_guild(realm, **overrides) -> Guild:
    overrides.setdefault("train_unready", True)  # SY at once: these tests script its answers
    cfg = replace(realm.config, guild=replace(realm.config.guild, **overrides))
    return Guild(realm.home.root, realm.store, realm.events, cfg)


def mistaken_bin_hero(guild: Guild):
    """Evals of BIN: the first item right, one echo, one without the call, the rest a wrong value."""

    def generate(prompts, max_new_tokens=None):
        level = guild.skill_state("bin")["training_level"]
        gold = {it["prompt"]: it["expected"] for it in guild.eval_set("bin", level)}
        out = []
        for i, p in enumerate(prompts):
            call = verify.head(gold[p], p)
            out.append([gold[p], p, f"= {WRONG_VALUE}"][i] if i < 3 else f"{call} = {WRONG_VALUE}")
        return out

    return generate


def split_verify(line: dict) -> tuple[str, str, str, str]:
    """(problem, candidate, label, gold) of a verify line."""
    user, answer = line["messages"][0]["content"], line["messages"][1]["content"]
    problem, _, rest = user.partition("\n\nProposed answer:\n")
    candidate, _, question = rest.rpartition("\n\n")
    assert question == verify.VERIFY_QUESTION
    label, _, gold = answer.partition("\n")
    return problem, candidate, label, gold


def eval_items(realm, skill: str) -> list[dict]:
    return [
        json.loads(x)
        for p in (realm.home.root / "evalsets" / skill).rglob("*.jsonl")
        for x in p.read_text(encoding="utf-8").splitlines()
    ]


def check_quarantine(realm, skill: str, lines: list[dict]) -> None:
    items = eval_items(realm, skill)
    keys = {quarantine_key(it["prompt"]) for it in items}
    heads = {quarantine_key(h) for it in items if (h := verify.head(it["expected"], it["prompt"]))}
    for line in lines:
        user = line["messages"][0]["content"]
        assert quarantine_key(user) not in keys
        if line["metadata"].get("kind") == "verify":
            problem, candidate, _, _ = split_verify(line)
            assert quarantine_key(problem) not in keys
            text = quarantine_key(candidate)
            own = quarantine_key(problem)
            # No eval prompt, nor an eval problem's call, that the shown problem does not itself have.
            assert not any(k in text and k not in own for k in keys), candidate
            assert not any(h in text and h not in own for h in heads), candidate


def test_no_verify_examples_at_share_zero(realm):
    guild = make_guild(realm, skills=("bin",), idle_quest_tokens=8192)
    assert guild.cfg.verify_share == 0.0  # the default, until a measurement says it helps
    guild.evaluate(mistaken_bin_hero(guild), 10)
    path = guild.write_idle_quest(realm.home.inbox)
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text(encoding="utf-8"))
    assert meta["verify"] == 0 and meta["written"]["verify"] == 0
    assert "Proposed answer" not in path.read_text(encoding="utf-8")


def test_bin_verify_examples(realm):
    guild = make_guild(realm, skills=("bin",), idle_quest_tokens=8192, verify_share=0.3)
    guild.evaluate(mistaken_bin_hero(guild), 10)
    wrong = verify.wrong_answers(realm.store, "bin", 1)
    assert {w["answer"] for w in wrong} == {f"= {WRONG_VALUE}"} | {
        f"{verify.head(it['expected'], it['prompt'])} = {WRONG_VALUE}".strip()
        for it in guild.eval_set("bin", 1)[3:]
    }  # the right answer and the echo are not verify material
    path = guild.write_idle_quest(realm.home.inbox)
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text(encoding="utf-8"))
    act = json.loads(realm.store.one("SELECT action FROM planner_decisions")["action"])
    assert meta["verify"] == round(act["level_mix"]["1"] * 0.3) > 0
    checks = [x for x in lines if x["metadata"] == {"skill": "bin", "level": 1, "kind": "verify"}]
    assert checks and meta["written"]["verify"] == len(checks) == meta["count"] - meta["written"]["direct"]
    # About the planned share of the examples trained (each part was sized for the same epochs); in
    # tokens a little more, a verify example being the problem, a candidate and the gold.
    tokens = {
        id(x): guild.example_sizes.count(x["messages"][0]["content"], x["messages"][1]["content"])
        for x in lines
    }
    share = sum(tokens[id(x)] for x in checks) / sum(tokens.values())
    assert 0.2 < share < 0.55, share
    labels = []
    client = guild.client("bin")
    for line in checks:
        problem, candidate, label, gold = split_verify(line)
        # The label is the scorer's verdict on the candidate for this problem; the gold follows.
        assert label == ("CORRECT" if client.score(problem, gold, candidate) else "INCORRECT")
        assert client.score(problem, gold, gold)
        if label == "INCORRECT":
            # The hero's wrong value, moved onto this problem's call (or shown as it was).
            call = verify.head(gold, problem)
            assert candidate in (f"{call} = {WRONG_VALUE}", f"= {WRONG_VALUE}")
        else:
            assert candidate == gold
        labels.append(label)
    assert {"CORRECT", "INCORRECT"} == set(labels)
    check_quarantine(realm, "bin", lines)
    q = Intake.for_realm(realm).process_file(path)
    assert q.status == "queued" and q.example_count == len(lines), q.reason


def test_sy_verify_examples_and_none_without_mistakes(realm):
    guild = make_guild(realm, skills=("sy",), idle_quest_tokens=16384, verify_share=0.5)
    # Without wrong answers there is nothing to verify: the share goes to direct practice.
    first = guild.write_idle_quest(realm.home.inbox)
    assert json.loads(first.with_name(first.name + ".meta.json").read_text())["verify"] == 0
    items = guild.eval_set("sy", 1)

    def swapped(prompts, max_new_tokens=None):  # each puzzle answered with the next one's gold
        gold = [it["expected"] for it in items]
        return [gold[(i + 1) % len(gold)] for i in range(len(prompts))]

    guild.evaluate(swapped, 10)
    path = guild.write_idle_quest(realm.home.inbox)
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    checks = [x for x in lines if x["metadata"].get("kind") == "verify"]
    assert checks
    client = guild.client("sy")
    for line in checks:
        problem, candidate, label, gold = split_verify(line)
        assert label == ("CORRECT" if client.score(problem, gold, candidate) else "INCORRECT")
    assert {split_verify(x)[2] for x in checks} == {"CORRECT", "INCORRECT"}
    check_quarantine(realm, "sy", lines)
    q = Intake.for_realm(realm).process_file(path)
    assert q.status == "queued" and q.example_count == len(lines), q.reason
