"""The guild's tables: skill progression, evals, achievements, quest-planner decisions and each
checkpoint's eval results (`checkpoint_evals`, written by guild/champion.py).

Other rooms read them through `guild.progression`'s and `guild.champion`'s read functions, never with
their own SQL; the watchtower's read models (watchtower/) are the one exception, as for every table.
"""

from sqlite_utils.migrations import Migrations

migrations = Migrations("guild")


@migrations()
def m001_skills_and_evals(db):
    db.execute(
        """CREATE TABLE skills (
            id TEXT PRIMARY KEY,
            mastered_level INTEGER NOT NULL DEFAULT 0,
            xp INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE evals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            step INTEGER NOT NULL,
            skill TEXT NOT NULL,
            level INTEGER NOT NULL,
            n INTEGER NOT NULL,
            correct INTEGER NOT NULL,
            accuracy REAL NOT NULL,
            seconds REAL,
            items TEXT NOT NULL DEFAULT '[]'
        )"""
    )
    db.execute("CREATE INDEX evals_skill ON evals(skill, level, id)")
    db.execute(
        """CREATE TABLE achievements (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            unlocked_at TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute(
        """CREATE TABLE planner_decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            policy TEXT NOT NULL,
            inputs TEXT NOT NULL,
            action TEXT NOT NULL,
            quest_id INTEGER,
            outcome TEXT
        )"""
    )


@migrations()
def m002_one_hero_state(db):
    # The guild kept `guild.hero` ({level, step}) beside the arena's `hero` state only to remember
    # which hero level it had announced. The hero.level_up events now are that record (issue 12:
    # one hero state), so the old key goes; a reader can no longer find two hero levels.
    db.execute("DELETE FROM state WHERE key = 'guild.hero'")


@migrations()
def m003_checkpoint_evals(db):
    # Each checkpoint's eval results at save time, one row per active skill (guild/champion.py
    # writes them; the champion rule, the champion board and `realm compare` read them). A row
    # copies the guild's eval at the checkpoint's own step and the skill's training level when
    # there is one (`eval_id`, source 'guild'); otherwise it holds a quick eval of the checkpoint's
    # weights (source 'quick') that is not an `evals` row, so it cannot move progression or the
    # planner. `items` keeps every problem, answer and verdict, so a comparison needs no other table.
    db.execute(
        """CREATE TABLE checkpoint_evals (
            checkpoint TEXT NOT NULL,
            step INTEGER NOT NULL,
            skill TEXT NOT NULL,
            level INTEGER NOT NULL,
            mastered_level INTEGER NOT NULL,
            n INTEGER NOT NULL,
            correct INTEGER NOT NULL,
            accuracy REAL NOT NULL,
            source TEXT NOT NULL,
            eval_id INTEGER,
            seconds REAL,
            ts REAL NOT NULL,
            items TEXT NOT NULL DEFAULT '[]',
            PRIMARY KEY (checkpoint, skill)
        )"""
    )
    db.execute("CREATE INDEX checkpoint_evals_step ON checkpoint_evals(step)")
