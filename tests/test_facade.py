"""The `Realm` facade lives outside the CLI module (issue 12): rooms never import `realm`.

The guardian runs realm.py as `__main__`; a room that imported `realm` loaded the file a second time
as another module (a second `Realm` class and click group).
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import REPO, clean_env

ROOMS = ("arena", "guild", "sentinels", "tavern", "vault", "watchtower")
IMPORTS_CLI = re.compile(r"^\s*(import realm\b|from realm import)", re.MULTILINE)


def test_no_room_imports_the_cli_module():
    offenders = [
        str(p.relative_to(REPO))
        for room in ROOMS
        for p in (REPO / room).rglob("*.py")
        if IMPORTS_CLI.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_cli_loads_once_with_every_room_command():
    # Registering every room's commands (what `realm --help` does) must not import `realm` again.
    code = (
        "import runpy, sys\n"
        "sys.argv = ['realm.py', '--help']\n"
        "try:\n"
        "    runpy.run_path('realm.py', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import sentinels.realm\n"
        "print('realm' in sys.modules, sorted(m for m in sys.modules if m.endswith('.cli')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    from realm import ROOM_COMMANDS

    expected = sorted(m for m in ROOM_COMMANDS if m.endswith(".cli"))
    assert last == f"False {expected}", proc.stdout
