"""The Tavern reads other rooms' tables only through their functions, and honours guild.skills_dir."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import requests
import yaml

from tests.helpers import REPO, free_port, start_tavern, stop, write_home_config

SCHEMAS = ("vault/schema.py", "arena/schema.py", "guild/schema.py")
SQL_VERB = re.compile(r"\b(select|insert|update|delete|replace)\b", re.I)
SQL_TABLE = re.compile(r"\b(?:from|into|update|join)\s+[\[\"`]?(\w+)", re.I)


def declared_tables() -> dict[str, str]:
    """{table: the schema file that declares it}."""
    tables = {}
    for rel in SCHEMAS:
        for name in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", (REPO / rel).read_text()):
            tables[name] = rel
    return tables


def sql_tables(path: Path, tables: dict[str, str]) -> list[str]:
    """'file:line: table' for each string in the file (docstrings aside) that is SQL naming a table."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if SQL_VERB.search(node.value):
                found += [
                    f"{path.relative_to(REPO)}:{node.lineno}: {t} ({tables[t]})"
                    for t in SQL_TABLE.findall(node.value)
                    if t in tables
                ]
    return found


def test_the_tavern_runs_no_sql_on_other_rooms_tables():
    tables = declared_tables()
    # The Tavern owns no table: every declared one belongs to another room.
    assert {"events", "state", "series", "rollup", "quests", "commands", "skills", "evals"} <= set(tables)
    # The scanner finds what the owners do run, so an empty result below is not a blind scanner.
    assert any(": skills " in f for f in sql_tables(REPO / "guild/progression.py", tables))
    assert any(": commands " in f for f in sql_tables(REPO / "arena/control.py", tables))
    offenders = [f for path in sorted((REPO / "tavern").rglob("*.py")) for f in sql_tables(path, tables)]
    assert offenders == [], "the Tavern must read other rooms' tables through their functions:\n" + "\n".join(
        offenders
    )


def test_skills_come_from_the_configured_skills_dir(home, tmp_path):
    skills = tmp_path / "my-skills"
    skills.mkdir()
    for name in ("bin.yaml", "sy.yaml"):
        shutil.copy(REPO / "configs" / "skills" / name, skills / name)
    rune = yaml.safe_load((REPO / "configs" / "skills" / "bin.yaml").read_text())
    rune.update(id="rune", name="Rune Reading", icon="ᚱ", color="#123456", max_level=7)
    rune["generator"]["name"] = "bin"
    (skills / "rune.yaml").write_text(yaml.safe_dump(rune, allow_unicode=True), encoding="utf-8")
    write_home_config(home, {"guild.skills_dir": str(skills)})

    port = free_port()
    proc = start_tavern(home, port)
    try:
        cards = {
            c["id"]: c
            for c in requests.get(f"http://127.0.0.1:{port}/api/skills", timeout=10).json()["skills"]
        }
        assert {"bin", "sy", "rune"} <= set(cards)
        assert (cards["rune"]["name"], cards["rune"]["max_level"], cards["rune"]["color"]) == (
            "Rune Reading",
            7,
            "#123456",
        )
        assert (cards["rune"]["level"], cards["rune"]["working_level"]) == (0, 1)
        ev = requests.get(f"http://127.0.0.1:{port}/api/skills/rune/evals", timeout=10)
        assert ev.status_code == 200 and ev.json()["skill"]["name"] == "Rune Reading"
    finally:
        stop(proc)
