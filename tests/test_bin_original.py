"""BIN in the original's format (issue #16 items 1 and 3): the symbol language with multi-code-point
symbols, the Operations block, divide and the *_signed operations, `realm skill import-evals bin`,
and honest scoring (gold 1.0; echoes, symbol listings and candidate listings 0.0) on all of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guild.bin import OPS, BinGenerator, solve
from guild.bin_symbols import graphemes, parse_answer, parse_prompt, render_prompt
from guild.evalsets import load_eval_set, quarantine_set, skills_dir
from guild.generators import generate, get_generator, norm_prompt
from guild.skills import load_skill
from sentinels.config import GuildConfig
from tests.conftest import run_realm

DATA = Path(__file__).parent / "data" / "bin_original"
GEN = get_generator("bin")


def original_items() -> list[dict]:
    out = []
    for path in sorted(DATA.glob("level_*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        out += [{**p, "level": doc["level"]} for p in doc["problems"]]
    return out


def dishonest_responses(prompt: str, expected: str) -> list[str]:
    """Responses that must score 0: the echo, every symbol listed, every candidate listed."""
    p = parse_prompt(prompt)
    call = p.call
    gold = parse_answer(prompt, expected)
    zero, one = p.digits
    if gold in ("true", "false"):
        other = "false" if gold == "true" else "true"
    else:
        other = gold + one if not gold.endswith(one) else gold[: -len(one)] + zero
    return [
        prompt,  # the echo
        f"{call} = {zero} {one}",  # every symbol, both orders
        f"{call} = {one} {zero}",
        f"{zero} = 0\n{one} = 1",
        f"{call} = {gold} or {other}",  # every candidate, on one line or several, gold first or last
        f"{call} = {other}, {gold}",
        f"{call} = {gold}\n{call} = {other}",
        f"{call} = {other}\n{call} = {gold}",
        f"Answer: {gold}\nAnswer: {other}",
        f"{call} = true or false",
    ]


def test_the_hand_made_files_cover_levels_and_multi_code_point_symbols():
    items = original_items()
    assert {it["level"] for it in items} == {1, 5, 8, 12}
    digits = {d for it in items for d in parse_prompt(it["prompt"]).digits}
    assert any(len(d) > 1 for d in digits)  # VS16, ZWJ sequences, keycaps
    assert {"⬆️", "🏳️‍🌈", "👨‍👩‍👧", "5️⃣", "#️⃣", "👁️‍🗨️"} <= digits
    ops = {parse_prompt(it["prompt"]).op_name for it in items}
    assert {"tobinary", "divide", "add_signed", "subtract_signed", "multiply_signed"} <= ops


@pytest.mark.parametrize("item", original_items(), ids=lambda it: f"L{it['level']}-{it['prompt'][-24:]}")
def test_original_items_score_honestly(item):
    prompt, expected = item["prompt"], item["expected"]
    assert GEN.score(prompt, expected, expected)
    # Our operations compute the same gold from the prompt alone.
    assert solve(prompt) is not None and GEN.score(prompt, expected, solve(prompt))
    for bad in dishonest_responses(prompt, expected):
        assert not GEN.score(prompt, expected, bad), bad


def test_the_alias_call_with_a_decimal_argument():
    item = next(it for it in original_items() if "🔢(246062744)" in it["prompt"])
    p = parse_prompt(item["prompt"])
    assert (p.alias, p.op_name, p.args, p.notes) == ("🔢", "tobinary", ["246062744"], ("zero bit", "one bit"))
    assert parse_answer(item["prompt"], item["expected"]) == format(246062744, "b").replace(
        "0", "🥵"
    ).replace("1", "🥶")


def test_a_symbol_with_a_stray_code_point_is_not_the_symbol():
    item = next(it for it in original_items() if "⬆️" in it["prompt"])
    prompt, expected = item["prompt"], item["expected"]
    call_line = expected.splitlines()[0]
    assert not GEN.score(prompt, expected, call_line + "\ufe0f")  # VS16 glued onto the last symbol
    assert not GEN.score(prompt, expected, call_line.replace("⬆️", "⬆"))  # the bare base character
    keycap = next(it for it in original_items() if "5️⃣ = 0" in it["prompt"])
    assert parse_answer(keycap["prompt"], keycap["expected"]).startswith("#️⃣")  # read as symbols, not 5s


def test_import_evals_bin_writes_a_selectable_quarantined_version(realm, tmp_path):
    from arena.intake import Intake
    from sentinels.config import IntakeConfig

    home = realm.home.root
    proc = run_realm(
        "skill", "import-evals", "bin", str(DATA), "--name", "Original Set", "--select", home=home
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["version"], out["items"], out["selected"], out["notes"]) == (
        "import-original-set",
        14,
        True,
        [],
    )
    folder = home / "evalsets" / "bin" / "import-original-set"
    assert sorted(p.name for p in folder.iterdir()) == [f"level-{n:02d}.jsonl" for n in (1, 5, 8, 12)]
    rows = [json.loads(x) for x in (folder / "level-08.jsonl").read_text(encoding="utf-8").splitlines()]
    originals = [it for it in original_items() if it["level"] == 8]
    assert [(r["prompt"], r["expected"]) for r in rows] == [(o["prompt"], o["expected"]) for o in originals]
    assert rows[0]["metadata"] == {**originals[0]["metadata"], "bits": 9, "source": "level_08.json"}

    # Selected: the guild's evals read the imported levels, and the generated version for the others.
    assert [r["prompt"] for r in load_eval_set(home, "bin", 8)] == [o["prompt"] for o in originals]
    assert "import-" not in json.dumps(load_eval_set(home, "bin", 2)) and load_eval_set(home, "bin", 2)
    # `realm skill check` scores the imported gold 1.0 through the real CLI.
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({**r, "response": r["expected"]}) + "\n" for r in rows))
    check = run_realm("skill", "check", "bin", str(answers), home=home, check=True)
    assert json.loads(check.stdout)["accuracy"] == 1.0

    # Quarantine: the guild never generates these prompts, and intake refuses a quest that has one.
    assert norm_prompt(rows[1]["prompt"]) in quarantine_set(home, "bin")
    leak = realm.home.inbox / "leak.jsonl"
    line = {
        "messages": [{"role": "user", "content": rows[1]["prompt"]}, {"role": "assistant", "content": "x"}]
    }
    leak.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    intake = Intake(realm.home, realm.store, realm.events, IntakeConfig(level="standard"))
    assert intake.process_file(leak).status == "failed"

    # Without a name, the version is named by the files' content hash; the same files, the same name.
    again = [json.loads(run_realm("skill", "import-evals", "bin", str(DATA), home=home, check=True).stdout)]
    again.append(
        json.loads(run_realm("skill", "import-evals", "bin", str(DATA), home=home, check=True).stdout)
    )
    assert again[0]["version"] == again[1]["version"] and len(again[0]["version"]) == len("import-") + 12


def test_import_refuses_a_gold_our_scorer_cannot_read(realm, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    doc = {
        "level": 3,
        "bits": 4,
        "problems": [{"prompt": "Compute: add(①, ①)", "expected": "two", "metadata": {}}],
    }
    (bad / "level_03.json").write_text(json.dumps(doc))
    proc = run_realm("skill", "import-evals", "bin", str(bad), home=realm.home.root)
    assert proc.returncode != 0
    assert "level_03.json: key 'problems[0].expected'" in proc.stderr
    assert not (realm.home.root / "evalsets" / "bin").exists() or not any(
        (realm.home.root / "evalsets" / "bin").glob("import-*")
    )


@pytest.fixture(scope="module")
def symbolic_items() -> list[dict]:
    items = [it for lv in (8, 12, 20, 30) for it in generate(GEN, lv, 150, 5)]
    return [it for it in items if "Symbol Key:" in it["prompt"]]


def test_generated_symbol_language_round_trips(symbolic_items):
    wide = 0
    for it in symbolic_items:
        p = parse_prompt(it["prompt"])
        assert p.keyed and p.notes[0] and p.notes[1] and p.op_name in {op.name for op in OPS}
        assert render_prompt(p) == it["prompt"]  # parse -> render gives the same bytes
        assert GEN.score(it["prompt"], it["expected"], it["expected"])
        assert GEN.score(it["prompt"], it["expected"], solve(it["prompt"]))  # gold recomputed from text
        for bad in dishonest_responses(it["prompt"], it["expected"]):
            assert not GEN.score(it["prompt"], it["expected"], bad), bad
        wide += any(len(d) > 1 for d in p.digits)
    assert wide >= len(symbolic_items) // 4
    aliases = {a for it in symbolic_items for a in parse_prompt(it["prompt"]).aliases}
    assert any(len(graphemes(a)) == 2 and len(a) > 2 for a in aliases)  # e.g. ⚖️🔢: two graphemes


def test_new_operations_unlock_at_their_levels_and_the_version_is_bumped():
    names = lambda lv: {it["key"].split("|")[1] for it in generate(GEN, lv, 300, 9)}  # noqa: E731
    assert "divide" not in names(4) and "divide" in names(5)
    assert not {"add_signed", "multiply_signed"} & names(11)
    assert {"add_signed", "subtract_signed", "multiply_signed"} <= names(12)
    spec = load_skill("bin", skills_dir(GuildConfig()))
    assert spec.generator_version == BinGenerator.version == 2
    assert [lv["title"] for lv in spec.levels if lv["level"] == 5] == ["Division"]
