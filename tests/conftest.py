"""Shared fixtures: every test gets a fresh temporary realm home; servers get free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REALM_PY = REPO / "realm.py"

sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_realm(*args: str, home: Path | None = None, timeout: float = 600, check: bool = False, env=None):
    """Run the real CLI in a subprocess, as a user would."""
    argv = [sys.executable, str(REALM_PY), *args]
    if home is not None:
        argv += ["--home", str(home)]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("REALM_HOME", None)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"realm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def realm(home: Path):
    """An initialised realm facade on a temporary home."""
    from realm import Realm

    r = Realm.open(home)
    r.init()
    yield r
    r.store.close()


def write_home_config(home: Path, overrides: dict) -> dict:
    """The repo's config with dotted-key overrides ("training.eval_every": 100), as <home>/realm.yaml."""
    import yaml

    data = yaml.safe_load((REPO / "configs" / "realm.yaml").read_text())
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (home / "realm.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return data
