"""One owner for the hero's stats: the Tavern's card, the published state and the guild agree.

The arena (`arena.reporting`) owns the hero's formulas and the one hero state; the guild announces
level-ups by the same rule, and a real Tavern process shows the same numbers, whether it reads the
published state or, before that state is written, the latest step event.
"""

from __future__ import annotations

import math

import requests

from arena.reporting import Reporter, hero_stats
from guild.guild import Guild
from tests.helpers import free_port, start_tavern, stop

STEP, TRAIN_LOSS, VAL_LOSS, COMPLETED, VOCAB = 2345, 2.1, 2.4, 3, 300
STATS = ("xp", "level", "level_xp", "next_level_xp", "atk", "def", "gold")


def _report_one_step(realm) -> dict:
    """What the trainer does each step: a hero from the formulas, reported through a real Reporter."""
    hero = {
        "name": realm.config.hero.name,
        **hero_stats(
            step=STEP, train_loss=TRAIN_LOSS, val_loss=VAL_LOSS, completed=COMPLETED, vocab_size=VOCAB
        ),
    }
    payload = {
        "step": STEP,
        "loss": TRAIN_LOSS,
        "progress": 0.5,
        "eta_s": 10.0,
        "tokens_per_s": 100.0,
        "xp": hero["xp"],
        "level": hero["level"],
    }
    assert Reporter(realm.store, realm.events, interval_s=0.0).step(payload, hero, force=True)
    return hero


def _card(port: int) -> dict:
    r = requests.get(f"http://127.0.0.1:{port}/api/state", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["hero"]


def test_tavern_card_published_state_and_guild_agree(realm):
    _report_one_step(realm)
    Guild.from_realm(realm).check_progress(STEP, COMPLETED)
    published = realm.store.get_state("hero")
    # The numbers the formulas in arena/reporting.py's docstring give, worked out independently,
    # so the three readers cannot agree on a wrong value.
    baseline = math.log(VOCAB)
    expected = {
        "xp": 2345,
        "level": 2,
        "level_xp": 2000,
        "next_level_xp": 3000,
        "atk": round(100 * (baseline - TRAIN_LOSS) / baseline, 2),
        "def": round(100 * (baseline - VAL_LOSS) / baseline, 2),
        "gold": 300,
    }
    assert {k: published[k] for k in STATS} == expected
    level_ups = realm.events.since(0, kinds=["hero.level_up"])
    assert [e.payload["level"] for e in level_ups] == [expected["level"]]
    step_event = realm.events.latest("step").payload
    assert {k: step_event[k] for k in ("xp", "level", "atk", "def", "gold")} == {
        k: expected[k] for k in ("xp", "level", "atk", "def", "gold")
    }

    port = free_port()
    proc = start_tavern(realm.home.root, port)
    try:
        card = _card(port)
        assert {k: card[k] for k in STATS} == expected
        assert card["name"] == realm.config.hero.name

        # Between the Reporter's two writes (the step event, then the state), or on a home whose
        # state is gone, the card comes from the step event: still the owner's numbers.
        with realm.store.tx() as conn:
            conn.execute("DELETE FROM state WHERE key = 'hero'")
        assert {k: _card(port)[k] for k in STATS} == expected
    finally:
        stop(proc)


def test_a_card_before_any_training_is_a_fresh_hero(realm):
    from tavern.game import hero_card

    card = hero_card(realm)
    assert {k: card[k] for k in STATS} == {
        "xp": 0,
        "level": 0,
        "level_xp": 0,
        "next_level_xp": 1000,
        "atk": None,
        "def": None,
        "gold": 0,
    }


def test_one_hero_state_and_an_old_guild_hero_key_is_dropped(realm):
    """A home from before kept `guild.hero` beside `hero`; the guild's migration drops it, and the
    level it recorded (also in its hero.level_up event) is not announced again."""
    store, events = realm.store, realm.events
    store.set_state("guild.hero", {"level": 2, "step": 2100})
    events.emit("hero.level_up", level=2, step=2100)
    with store.tx() as conn:  # the home as it was before guild migration m002
        conn.execute(
            "DELETE FROM _sqlite_migrations WHERE migration_set = 'guild' AND name = 'm002_one_hero_state'"
        )
    assert "guild:m002_one_hero_state" in store.migrate()
    assert store.get_state("guild.hero") is None

    guild = Guild.from_realm(realm)
    guild.check_progress(2500, 0)
    assert [e.payload["level"] for e in events.since(0, kinds=["hero.level_up"])] == [2]
    guild.check_progress(3000, 0)
    assert [e.payload["level"] for e in events.since(0, kinds=["hero.level_up"])] == [2, 3]
    # The guild writes no hero state of its own: the arena's `hero` is the only one.
    keys = [r["key"] for r in store.query("SELECT key FROM state WHERE key LIKE '%hero%'")]
    assert keys == []
