"""Scorers: every gold answer scores, echoes never do, chatter and harmless formatting are handled."""

from __future__ import annotations

import json
import random
import re

import pytest

from guild.bin import parse_answer
from guild.generators import generate, get_generator
from tests.conftest import run_realm

N_GOLD = 2000


def gold_items(name: str) -> list[dict]:
    g = get_generator(name)
    per = -(-N_GOLD // g.max_level)
    return [it for lv in range(1, g.max_level + 1) for it in generate(g, lv, per, 11)]


@pytest.fixture(scope="module")
def bin_items():
    return gold_items("bin")


@pytest.fixture(scope="module")
def sy_items():
    return gold_items("sy")


@pytest.mark.parametrize("name", ["bin", "sy"])
def test_every_gold_answer_scores_and_echo_scores_zero(name, request):
    items = request.getfixturevalue(f"{name}_items")
    g = get_generator(name)
    assert len(items) >= N_GOLD
    assert {it["level"] for it in items} == set(range(1, g.max_level + 1))
    gold = [g.score(it["prompt"], it["expected"], it["expected"]) for it in items]
    echo = [g.score(it["prompt"], it["expected"], it["prompt"]) for it in items]
    assert (sum(gold), sum(echo)) == (len(items), 0)


def test_bin_items_cover_tags_symbols_and_operations(bin_items):
    prompts = [it["prompt"] for it in bin_items]
    for marker in ("[verify]", "[show-work]", "[trace]", "Symbol Key:"):
        assert any(marker in p for p in prompts), marker
    ops = {it["key"].split("|")[1] for it in bin_items}
    assert {"add", "multiply", "tobinary", "todecimal", "lessthan", "sign_of", "absolute_value"} <= ops
    l1 = [it for it in bin_items if it["level"] == 1]
    assert all("Symbol Key" not in it["prompt"] for it in l1)
    assert {it["key"].split("|")[1] for it in l1} <= {
        "add",
        "increment",
        "decrement",
        "tobinary",
        "todecimal",
    }


def test_sy_items_use_both_answer_formats(sy_items):
    as_json = [it for it in sy_items if it["expected"].startswith("{")]
    assert 0.3 < len(as_json) / len(sy_items) < 0.7
    first = json.loads(as_json[0]["expected"])["answers"][0]
    assert set(first) == {"clue", "word", "tiles"} and "".join(first["tiles"]) == first["word"]


def _wrong_bin(expected: str) -> str:
    # Flip the last digit of the value on the answer line (works for every notation and for words).
    lines = expected.splitlines()
    i = next(i for i, ln in enumerate(lines) if "(" in ln.split("=")[0] and not ln.startswith("Steps"))
    value = lines[i].rsplit("= ", 1)[1]
    swaps = {"true": "false", "false": "true"}
    if value in swaps:
        new = swaps[value]
    else:
        new = value + value[-1]
    lines[i] = lines[i].rsplit("= ", 1)[0] + "= " + new
    return "\n".join(lines)


def test_wrong_answers_score_zero(bin_items, sy_items):
    g = get_generator("bin")
    assert not any(g.score(it["prompt"], it["expected"], _wrong_bin(it["expected"])) for it in bin_items)
    s = get_generator("sy")
    for it in sy_items[:300]:
        wrong = re.sub(r'"word": "([A-Z])', r'"word": "Q\1', it["expected"], count=1)
        wrong = re.sub(r"^1\. ([A-Z])", r"1. Q\1", wrong, count=1)
        assert not s.score(it["prompt"], it["expected"], wrong)
        assert not s.score(it["prompt"], it["expected"], "")


BIN_PROMPT = "Compute: add(①⓪, ①①)"
BIN_GOLD = "add(①⓪, ①①) = ①⓪①"


@pytest.mark.parametrize(
    "response, ok",
    [
        (BIN_GOLD, True),
        (BIN_GOLD + " and that is the sum. Anything else?", True),
        (BIN_GOLD + "\nHope this helps!", True),
        ("```\n" + BIN_GOLD + "\n```", True),
        ("**Answer:** ADD(①⓪,①①) = **①⓪①**", True),
        ("add(①⓪, ①①) = ① ⓪ ①", True),
        ("Answer: ①⓪①", True),
        ("①⓪①", True),
        ("Let me think.\nadd(①⓪, ①①) = ①⓪①\nVerification: 2 + 3 = 5", True),
        ("add(①⓪, ①①) = ①⓪⓪", False),
        ("add(①⓪, ①①) = ①⓪①①", False),
        ("add(①①, ①⓪) = ①⓪①", False),  # a different call is not this answer
        (BIN_PROMPT, False),
        ("①⓪① is what I think", False),  # a lone line must be just the value
        ("", False),
    ],
)
def test_bin_answer_line_rule(response, ok):
    assert get_generator("bin").score(BIN_PROMPT, BIN_GOLD, response) is ok


def test_bin_words_and_symbols():
    prompt = "[verify]\nSymbol Key:\n▲ = 0\n◇ = 1\nzorp = lessthan\nCompute: zorp(◇▲, ◇◇)"
    assert parse_answer(prompt, "zorp(◇▲, ◇◇) = True, since 2 < 3") == "true"
    assert parse_answer(prompt, "▲ = 0\n◇ = 1") is None
    p2 = "Symbol Key:\n▲ = 0\n◇ = 1\nzorp = add\nCompute: zorp(◇▲, ◇◇)"
    assert parse_answer(p2, "zorp(◇▲, ◇◇) = ◇▲◇ (5)") == "◇▲◇"


SY_PROMPT = "Syllable puzzle.\n1. [2 tiles] on this present day\n2. [2 tiles] below; beneath\nTiles: TO | DAY | UN | DER | X"
SY_JSON = '{"answers": [{"clue": 1, "word": "TODAY", "tiles": ["TO", "DAY"]}, {"clue": 2, "word": "UNDER", "tiles": ["UN", "DER"]}]}'
SY_PLAIN = "1. TODAY = TO + DAY\n2. UNDER = UN + DER"


@pytest.mark.parametrize(
    "expected, response, ok",
    [
        (SY_JSON, SY_JSON, True),
        (SY_JSON, "Sure! Here you go:\n```json\n" + SY_JSON.lower() + "\n```\nGood luck!", True),
        (SY_JSON, SY_PLAIN, True),
        (SY_PLAIN, SY_JSON, True),
        (SY_PLAIN, "1) today = to + day\n2: Under\nThat was fun. 3. extra", True),
        (SY_PLAIN, "1. TODAY = TO + DAY", False),
        (SY_PLAIN, "1. UNDER = UN + DER\n2. TODAY = TO + DAY", False),
        (SY_PLAIN, SY_PROMPT, False),
        (SY_JSON, '{"answers": [{"clue": 1, "word": "TODAY"}]}', False),
    ],
)
def test_sy_rule(expected, response, ok):
    assert get_generator("sy").score(SY_PROMPT, expected, response) is ok


def test_check_cli_prints_accuracy(tmp_path, home, bin_items):
    rows = []
    for it in bin_items[:6]:
        rows.append({"prompt": it["prompt"], "expected": it["expected"], "response": it["expected"] + " ok!"})
        rows.append({"prompt": it["prompt"], "expected": it["expected"], "response": it["prompt"]})
    f = tmp_path / "answers.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    proc = run_realm("skill", "check", "bin", str(f), home=home, check=True)
    assert json.loads(proc.stdout) == {"n": 12, "correct": 6, "accuracy": 0.5}


HINT_KINDS = {  # a clue's template words, by the kind of hint they start
    "etymology": r"^from ",
    "antonym": r"^opposite of ",
    "rhyme": r"^ends like ",
    "first letter": r"^starts with ",
    "length": r"^\d+ letters, ends in ",
    "category": r"^(category:|a kind of|a way to) ",
    "letters": r"^fill in: ",
    "synonym": r"^same as ",
    "example": r"^as in ",
}


def test_sy_hints_use_every_tier_and_never_spell_the_answer(sy_items):
    """Definitions, synonyms, categories and examples (WordNet and the glossary), etymology (the
    packaged Etymological Wordnet), endings and first letters all appear, and no hint ever contains
    its own answer word."""
    seen = set()
    for it in sy_items:
        clues = re.findall(r"^(\d+)\. \[\d tiles?\] (.+)$", it["prompt"], flags=re.M)
        words = it["key"].split("|")[1:]
        for (_, hint), word in zip(clues, words, strict=True):
            kind = next((k for k, rx in HINT_KINDS.items() if re.match(rx, hint)), "definition")
            seen.add(kind)
            # The hint's own words ("6 letters, ends in -ER") are template, not content.
            content = re.sub(HINT_KINDS[kind], "", hint) if kind in HINT_KINDS else hint
            assert word.upper() not in content.upper().replace(" ", "").replace("_", ""), (word, hint)
    assert seen == {*HINT_KINDS, "definition"}, seen
    # Antonyms exist for common glossary words only, which the tier-3 levels rarely draw.
    from guild.sy import _hint
    from guild.sy_words import ANTONYMS

    hints = {_hint(random.Random(seed), "after", 3) for seed in range(200)}
    assert "opposite of BEFORE" in hints
    assert all(w.upper() not in a.upper() for w, a in ANTONYMS.items())
