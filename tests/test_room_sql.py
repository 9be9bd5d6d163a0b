"""One owner per table: no SQL on another room's tables outside watchtower/ and the table's owner.

Each room declares its tables in its own schema module (vault/schema.py, arena/schema.py,
guild/schema.py); the room's package owns them. Every room reads another room's tables through the
owner's functions, or through the watchtower (watchtower/), the one place where read models may run
SQL on any table. This test parses the `CREATE TABLE` names, scans every Python file of the rooms for
string literals that are SQL naming a table (f-strings joined around their placeholders, docstrings
aside), and fails on any that names a table of another room outside watchtower/.

Not scanned: tests/ and bench/ (they build and inspect realms directly, as a user with sqlite3
would), and installed packages. The scanner proves it can see: it finds SQL the owners do run, the
watchtower's reads of other rooms' tables, and an offender planted in a temporary room.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

SCHEMAS = ("vault/schema.py", "arena/schema.py", "guild/schema.py")
READ_MODELS = "watchtower"
NOT_ROOMS = {"tests", "bench", "node_modules", "build", "dist"}
SQL_VERB = re.compile(r"\b(select|insert|update|delete|replace)\b", re.I)
SQL_TABLE = re.compile(r"\b(?:from|into|update|join)\s+[\[\"`]?(\w+)", re.I)
CREATE_TABLE = re.compile(r"CREATE\s+(?:VIRTUAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\[\"`]?(\w+)", re.I)

# (file, table): why that file may run that SQL. Keep this short; each entry is a decision.
EXCEPTIONS: dict[tuple[str, str], str] = {
    (
        "guild/schema.py",
        "state",
    ): "m002 removed the guild's own old `guild.hero` key from the shared state table; an applied"
    " migration is history (it has run in every existing home and is a no-op in a new one)",
}


def declared_tables(root: Path = REPO) -> dict[str, str]:
    """{table: the room (package) that declares it}."""
    tables = {}
    for rel in SCHEMAS:
        for name in CREATE_TABLE.findall((root / rel).read_text(encoding="utf-8")):
            tables[name] = rel.split("/", 1)[0]
    return tables


def _sql_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring; an f-string is one text with
    `{}` where its placeholders are, so "SELECT {cols} FROM t" is seen whole."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    inside_fstrings = set()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                inside_fstrings.add(id(v))
                parts.append(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}")
            out.append((node.lineno, "".join(parts)))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in inside_fstrings
        ):
            out.append((node.lineno, node.value))
    return out


def sql_tables(path: Path, tables: dict[str, str], root: Path = REPO) -> list[tuple[str, int, str]]:
    """(file relative to root, line, table) for each SQL string in the file that names a table."""
    rel = path.relative_to(root).as_posix()
    found = []
    for line, text in _sql_strings(ast.parse(path.read_text(encoding="utf-8"))):
        if SQL_VERB.search(text):
            found += [(rel, line, t) for t in SQL_TABLE.findall(text) if t in tables]
    return sorted(set(found))


def room_files(root: Path = REPO) -> list[Path]:
    """Every Python file of the project's rooms (and the CLI), not tests, benches or environments."""
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") for p in parts) or parts[0] in NOT_ROOMS or "node_modules" in parts:
            continue
        out.append(path)
    return out


def offenders(root: Path = REPO) -> list[str]:
    tables = declared_tables(root)
    bad = []
    for path in room_files(root):
        for rel, line, table in sql_tables(path, tables, root):
            room = rel.split("/", 1)[0] if "/" in rel else rel
            if room in (tables[table], READ_MODELS) or (rel, table) in EXCEPTIONS:
                continue
            bad.append(f"{rel}:{line}: SQL on {table} (owned by {tables[table]}/)")
    return bad


def test_the_scanner_sees_sql():
    tables = declared_tables()
    # Every room's tables are parsed, the newest migrations' included.
    assert {"events", "state", "checkpoints", "aliases", "series"} <= {
        t for t, r in tables.items() if r == "vault"
    }
    assert {"quests", "commands"} <= {t for t, r in tables.items() if r == "arena"}
    assert {"skills", "evals", "achievements", "planner_decisions"} <= {
        t for t, r in tables.items() if r == "guild"
    }
    # It finds SQL the owners run (plain strings, and f-strings seen whole)...
    assert "skills" in {t for *_, t in sql_tables(REPO / "guild/progression.py", tables)}
    assert "commands" in {t for *_, t in sql_tables(REPO / "arena/control.py", tables)}
    assert "checkpoints" in {t for *_, t in sql_tables(REPO / "vault/ledger.py", tables)}
    assert "series" in {t for *_, t in sql_tables(REPO / "watchtower/metrics.py", tables)}
    # ...and the watchtower's reads of other rooms' tables, which are allowed only there.
    assert "quests" in {t for *_, t in sql_tables(REPO / "watchtower/lineage.py", tables)}
    assert "evals" in {t for *_, t in sql_tables(REPO / "watchtower/compare.py", tables)}
    scanned = {p.relative_to(REPO).parts[0] for p in room_files()}
    assert {"arena", "guild", "sentinels", "tavern", "vault", "watchtower", "realm.py"} <= scanned
    assert not scanned & {"tests", "bench", ".venv"}


def test_the_scanner_flags_a_planted_offender(tmp_path):
    for rel in SCHEMAS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((REPO / rel).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "tavern").mkdir()
    (tmp_path / "tavern" / "peek.py").write_text(
        '"""A Tavern module that reads the arena\'s table itself (SELECT * FROM quests in a docstring is fine)."""\n'
        "def peek(store, cols):\n"
        '    return store.query(f"SELECT {cols} FROM quests WHERE status = ?", ("queued",))\n',
        encoding="utf-8",
    )
    (tmp_path / "watchtower").mkdir()
    (tmp_path / "watchtower" / "ok.py").write_text(
        'def ok(store):\n    return store.query("SELECT count(*) FROM quests")\n', encoding="utf-8"
    )
    assert offenders(tmp_path) == ["tavern/peek.py:3: SQL on quests (owned by arena/)"]


def test_no_room_runs_sql_on_another_rooms_tables():
    bad = offenders()
    assert bad == [], (
        "read another room's tables through its functions or a watchtower read model; write them only"
        " through the owner:\n" + "\n".join(bad)
    )
