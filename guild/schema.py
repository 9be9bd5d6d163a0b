"""The guild's tables: skill progression, evals, achievements and quest-planner decisions.

Other rooms read them through `guild.progression`'s read functions, never with their own SQL.
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
