"""Shared fixtures: every test gets a fresh temporary realm home; servers get free loopback ports.

Plain helpers live in tests/helpers.py; the names below are re-exported for the modules that import
them from here.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import (  # noqa: E402  (needs the repo on sys.path)
    LEARNING_BUDGET_MIN,
    REALM_PY,
    free_port,
    run_realm,
    write_home_config,
)

__all__ = ["REALM_PY", "REPO", "free_port", "run_realm", "write_home_config"]


def pytest_configure(config: pytest.Config) -> None:
    # The learning test has its own, larger timeout (tests/helpers.py); the global default must still
    # exceed its budget, so a run that drops the per-test marker cannot cut the bench off mid-budget.
    default = float(config.getini("timeout") or 0)
    if 0 < default <= LEARNING_BUDGET_MIN * 60:
        raise pytest.UsageError(
            f"pytest timeout {default:g} s does not exceed the learning test's budget "
            f"({LEARNING_BUDGET_MIN} min): raise [tool.pytest.ini_options] timeout in pyproject.toml"
        )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def realm(home: Path):
    """An initialised realm facade on a temporary home."""
    from sentinels.realm import Realm

    r = Realm.open(home)
    r.init()
    yield r
    r.store.close()


@pytest.fixture
def rng(record_property) -> random.Random:
    """A seeded random.Random. The seed is REALM_TEST_SEED when set (to replay a failure), else a new
    one; it is recorded as a test property and printed, so a failing run's output names it."""
    seed = int(os.environ.get("REALM_TEST_SEED") or random.SystemRandom().randrange(2**32))
    record_property("seed", seed)
    print(f"REALM_TEST_SEED={seed}")  # pytest shows captured output with a failure
    return random.Random(seed)


# The step numbers of the checkpoints `trained_home` holds (save every 10 steps of a 30-step run).
TRAINED_STEPS = (10, 20, 30)


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A realm home after ONE real, short training run, shared by every test of the session.

    The real `realm arena --max-steps 30` CLI trains the default DIO on 200 BIN-like chats with the
    tiny test config (tests/helpers.py `tiny_config`, save_steps 10), so the home holds three real
    checkpoints, `TRAINED_STEPS` (10, 20, 30: far enough apart that their answers differ), each
    landed in the vault (ledger rows, catalog assets, verified local locations), plus the eval sets
    the daemon writes at start. It takes about 15 s on two cores, once per session. Treat it as
    read-only: a test that changes the realm (aliases, deletions, config, a server writing its own
    logs or locks is fine) takes `trained_copy` instead.
    """
    from tests.helpers import arena, bin_chats, enqueue, tiny_config

    home = tmp_path_factory.mktemp("trained") / "home"
    home.mkdir()
    tiny_config(home, save_steps=10, keep_last=5)
    enqueue(home, "bin_add.jsonl", bin_chats(200))
    proc = arena(home, "--max-steps", str(TRAINED_STEPS[-1]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home


@pytest.fixture
def trained_copy(trained_home: Path, tmp_path: Path) -> Path:
    """A private copy of `trained_home` (shutil.copytree) for a test that mutates the realm."""
    import shutil

    dst = tmp_path / "trained"
    shutil.copytree(trained_home, dst, ignore=shutil.ignore_patterns("*.lock", "*.pid"))
    return dst
