"""SY in the original skill server's format (issue #16 items 2 and 3): hand-made eval chats in its
two JSON answer shapes (tests/data/sy_original/, written from the issue's description) import as an
eval-set version of their own, are quarantined by intake, and score exactly: gold 1, whitespace and
key order free, an echo of the prompt, every tile or every candidate word 0, at every level in the
files. Our own SY formats keep honest scoring too (a clue given two words is a miss)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from arena.intake.checks import EvalIndex
from arena.intake.quarantine import quarantine_key
from guild.generators import generate, get_generator
from guild.importers import IMPORTERS, EvalImportError
from guild.sy_import import import_evals
from tests.conftest import REPO, run_realm

DATA = REPO / "tests" / "data" / "sy_original"
FILES = {"sy_evals.jsonl": {1: 2, 3: 2, 12: 1, 30: 1}, "level_07.jsonl": {7: 2}}


def chats() -> list[dict]:
    out = []
    for name in FILES:
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            turns = [m for m in row["messages"] if m["role"] != "system"]
            out.append({"prompt": turns[0]["content"], "expected": turns[1]["content"], "file": name})
    return out


def sy_score(prompt: str, expected: str, response: str) -> bool:
    return get_generator("sy").score(prompt, expected, response)


def tiles_of(prompt: str) -> list[str]:
    return re.search(r"^Syllable tiles: (.+)$", prompt, re.M).group(1).split(" | ")


def repeated_keys(clues: dict, words: list[str], flat: bool) -> str:
    """Each clue key repeated once per candidate word, the gold one last."""
    parts = []
    for k, v in clues.items():
        gold = v if flat else v["word"]
        for w in [*(x for x in words if x != gold), gold]:
            parts.append(f'"{k}": ' + json.dumps(w if flat else {**v, "word": w}))
    body = "{" + ", ".join(parts) + "}"
    return body if flat else '{"solutions": ' + body + "}"


def dishonest(prompt: str, expected: str) -> dict[str, str]:
    """Responses that must all score 0: echoes, every tile, every candidate word, and near misses."""
    gold = json.loads(expected)
    flat = "solutions" not in gold
    clues = gold if flat else gold["solutions"]
    words = [v if flat else v["word"] for v in clues.values()]
    tiles = tiles_of(prompt)

    def each(value) -> str:  # every clue answered with `value`
        if flat:
            return json.dumps({k: value for k in clues})
        return json.dumps({"solutions": {k: {**v, "word": value} for k, v in clues.items()}})

    first = next(iter(clues))
    out = {
        "echo": prompt,
        "echo in JSON": json.dumps({"1": prompt}),
        "tile line": "Syllable tiles: " + " | ".join(tiles),
        "every tile joined": each("".join(tiles)),
        "every tile listed": each(tiles),
        "every word spaced": each(" ".join(words)),
        "every word listed": each(words),
        # JSON parsers keep the last of repeated keys: the gold word last must still be a miss.
        "every word as repeated keys": repeated_keys(clues, words, flat),
        "lower case": expected.lower(),
        "one clue missing": json.dumps(
            {k: v for k, v in clues.items() if k != first}
            if flat
            else {"solutions": {k: v for k, v in clues.items() if k != first}}
        ),
        "an extra clue": json.dumps(
            {**clues, "99": "EXTRA"} if flat else {"solutions": {**clues, "99": {"word": "EXTRA"}}}
        ),
        "clue as a number": expected.replace(f'"{first}":', f"{first}:", 1),
        "code fence": "```json\n" + expected + "\n```",
        "chatter": "Here you go: " + expected,
        "two objects": expected + " " + expected,
        "empty": "",
    }
    if not flat:
        entry = clues[first]
        if "syllables" in entry:
            out["syllables reversed"] = json.dumps(
                {"solutions": {**clues, first: {**entry, "syllables": [*reversed(entry["syllables"]), "X"]}}}
            )
            out["every tile as syllables"] = json.dumps(
                {"solutions": {k: {**v, "syllables": tiles} for k, v in clues.items()}}
            )
            out["syllables missing"] = json.dumps(
                {"solutions": {k: {"word": v["word"]} for k, v in clues.items()}}
            )
        else:
            out["syllables not asked"] = json.dumps(
                {"solutions": {k: {**v, "syllables": [v["word"]]} for k, v in clues.items()}}
            )
        out["extra field"] = json.dumps({"solutions": {**clues, first: {**entry, "why": "because"}}})
    return out


@pytest.mark.parametrize("item", chats(), ids=lambda it: f"{it['file']}:{it['expected'][:20]}")
def test_original_gold_scores_exactly_and_dishonest_answers_do_not(item):
    prompt, expected = item["prompt"], item["expected"]
    gold = json.loads(expected)
    assert sy_score(prompt, expected, expected)

    # Whitespace and key order are free: pretty-printed, keys reversed at every level.
    def reorder(obj):
        return {k: reorder(v) for k, v in reversed(obj.items())} if isinstance(obj, dict) else obj

    assert sy_score(prompt, expected, "\n  " + json.dumps(reorder(gold), indent=3) + "\n")
    for name, response in dishonest(prompt, expected).items():
        assert not sy_score(prompt, expected, response), name


def test_import_writes_an_eval_set_version_intake_quarantines(home):
    out = {}
    for name, levels in FILES.items():
        options = {"name": "Syllo L7"} if name == "level_07.jsonl" else {}
        out[name] = IMPORTERS["sy"](home, DATA / name, **options)
        assert (out[name]["skill"], out[name]["levels"]) == ("sy", levels)
        dest = Path(out[name]["path"])
        assert dest == home / "evalsets" / "sy" / out[name]["version"]
        assert sorted(p.name for p in dest.iterdir()) == [f"level-{lv:02d}.jsonl" for lv in levels]
    assert out["level_07.jsonl"]["version"] == "import-syllo-l7"
    assert re.fullmatch(r"import-[0-9a-f]{12}", out["sy_evals.jsonl"]["version"])
    # Importing a file again writes the same version, byte for byte.
    first = {p: p.read_bytes() for p in Path(out["sy_evals.jsonl"]["path"]).iterdir()}
    again = import_evals(home, DATA / "sy_evals.jsonl")
    assert again["version"] == out["sy_evals.jsonl"]["version"]
    assert {p: p.read_bytes() for p in Path(again["path"]).iterdir()} == first
    rows = [
        json.loads(line)
        for p in sorted((home / "evalsets" / "sy").glob("import-*/level-*.jsonl"))
        for line in p.read_text(encoding="utf-8").splitlines()
    ]
    assert len(rows) == 8 and {r["skill"] for r in rows} == {"sy"}
    assert {r["key"] for r in rows} >= {
        "sy|free|determined|art|today",
        "sy|animal|corner|forest|letter|pencil",
    }
    # Intake's quarantine holds every imported prompt (EvalIndex globs evalsets/**/*.jsonl)...
    held = EvalIndex(home / "evalsets").prompts()
    assert all(held[quarantine_key(it["prompt"])].startswith("sy level ") for it in chats())
    # ... and refuses a quest that trains on one, through the real CLI.
    leak = home.parent / "leak.jsonl"
    it = chats()[5]
    leak.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": it["prompt"]}, {"role": "assistant", "content": "X"}]}
        )
        + "\n",
        encoding="utf-8",
    )
    proc = run_realm("quest", "add", str(leak), home=home)
    assert "eval quarantine" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    # The imported rows score through `realm skill check`: gold 1.0, echo 0.0.
    answers = home.parent / "answers.jsonl"
    answers.write_text(
        "".join(
            json.dumps({"prompt": r["prompt"], "expected": r["expected"], "response": resp}) + "\n"
            for r in rows
            for resp in (r["expected"], r["prompt"])
        ),
        encoding="utf-8",
    )
    proc = run_realm("skill", "check", "sy", str(answers), home=home, check=True)
    assert json.loads(proc.stdout) == {"n": 16, "correct": 8, "accuracy": 0.5}


def _line(prompt: str, gold: object, **extra) -> str:
    return json.dumps(
        {
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": json.dumps(gold)},
            ],
            **extra,
        }
    )


@pytest.mark.parametrize(
    "lines, words",
    [
        (
            [
                _line(
                    'Clues: 1. free\nReturn JSON: {"1": "WORD"}',
                    {"solutions": {"1": {"word": "FREE"}}},
                    level=1,
                )
            ],
            ["line 1: the prompt asks for flat but the answer is solutions"],
        ),
        (
            [
                _line(
                    'Return JSON: {"solutions": {"1": {"word": "WORD", "syllables": ["SYL"]}}}',
                    {"solutions": {"1": {"word": "FREE"}}},
                    level=2,
                )
            ],
            ["asks for solutions with syllables but the answer is solutions"],
        ),
        ([_line('Return JSON: {"1": "WORD"}', {"1": "FREE"})], ["line 1: level None is not 1..50"]),
        ([_line('Return JSON: {"1": "WORD"}', {"1": "FREE"}, level=51)], ["level 51"]),
        (
            [_line('Return JSON: {"1": "WORD"}', {"answers": [{"clue": 1, "word": "FREE"}]}, level=1)],
            ["not one of the original's SY shapes"],
        ),
        ([_line("Name a word.", {"1": "FREE"}, level=1)], ["no 'Return JSON:' template"]),
        (
            ["{not json", _line('Return JSON: {"1": "WORD"}', {"1": "FREE"}, level=1), '{"prompt": "p"}'],
            ["line 1: ", "line 3: not a chat"],
        ),
        ([""], ["no eval chats"]),
    ],
)
def test_bad_files_are_refused_with_their_lines_and_nothing_is_written(home, tmp_path, lines, words):
    src = tmp_path / "evals.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EvalImportError) as err:
        import_evals(home, src)
    for w in words:
        assert w in str(err.value), str(err.value)
    assert not (home / "evalsets").exists()


@pytest.fixture(scope="module")
def native_items():
    g = get_generator("sy")
    return [it for lv in (1, 10, 25, 50) for it in generate(g, lv, 4, 5)]


def test_our_formats_score_gold_and_refuse_echoes_tiles_and_candidates(native_items):
    assert {"{", "1"} <= {it["expected"][0] for it in native_items}  # both of our answer formats
    for it in native_items:
        prompt, expected = it["prompt"], it["expected"]
        words = it["key"].split("|")[1:]
        tiles = re.search(r"^Tiles: (.+)$", prompt, re.M).group(1).split(" | ")
        n = len(words)
        assert sy_score(prompt, expected, expected)
        candidates = {
            "echo": prompt,
            "tile line": "Tiles: " + " | ".join(tiles),
            "every tile per clue": "\n".join(f"{i}. {' '.join(tiles)}" for i in range(1, n + 1)),
            "every word per clue": "\n".join(
                f"{i}. {' '.join(w.upper() for w in words)}" for i in range(1, n + 1)
            ),
            # Every candidate on its own line, the gold one first or last: a clue given two words misses.
            "every word, gold first": "\n".join(
                f"{i}. {w.upper()}"
                for i, gold in enumerate(words, 1)
                for w in [gold, *(x for x in words if x != gold)]
            ),
            "every word, gold last": "\n".join(
                f"{i}. {w.upper()}"
                for i, gold in enumerate(words, 1)
                for w in [*(x for x in words if x != gold), gold]
            ),
            "every word in JSON, gold first": json.dumps(
                {
                    "answers": [
                        {"clue": i, "word": w.upper()} for i, g in enumerate(words, 1) for w in [g, *words]
                    ]
                }
            ),
        }
        for name, response in candidates.items():
            assert not sy_score(prompt, expected, response), (name, it["level"])
        # Saying the same word twice is not listing candidates.
        repeated = "\n".join(f"{i}. {w.upper()}" for _ in range(2) for i, w in enumerate(words, 1))
        assert sy_score(prompt, expected, repeated)


def test_import_evals_cli_imports_selects_and_refuses(home, tmp_path):
    """`realm skill import-evals sy FILE` (the command dispatches to IMPORTERS; guild/cli.py)."""
    proc = run_realm(
        "skill", "import-evals", "sy", str(DATA / "level_07.jsonl"), "--name", "l7", "--select", home=home
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["skill"], summary["version"], summary["items"]) == ("sy", "import-l7", 2)
    assert json.loads((home / "evalsets" / "sy" / "selected.json").read_text())["version"] == "import-l7"
    bad = tmp_path / "bad.jsonl"
    bad.write_text((DATA / "level_07.jsonl").read_text().replace('"role": "assistant"', '"role": "user"', 1))
    proc = run_realm("skill", "import-evals", "sy", str(bad), home=home)
    assert proc.returncode != 0 and "line 1: expected one user then one assistant" in proc.stderr, proc.stderr
