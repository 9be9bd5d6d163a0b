"""The guild's tables: skill progression, evals, achievements and quest-planner decisions."""

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
