"""The foundation: config validation, realm init, the event log under two writers, status JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sentinels.config import ConfigError, load_config, parse_config
from tests.conftest import REPO, run_realm


def write_config(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((REPO / "configs" / "realm.yaml").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_config_loads_with_expected_ports():
    cfg = load_config()
    assert (cfg.ports.tavern, cfg.ports.oracle, cfg.ports.vault, cfg.ports.officer) == (
        8888,
        8765,
        8767,
        8768,
    )
    assert cfg.hero.name == "DIO"
    assert cfg.guild.skills == ("bin", "sy")


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda d: d["training"].update(bogus_key=1), "training.bogus_key", "unknown key"),
        (lambda d: d.update(colour="red"), "colour", "unknown key"),
        (lambda d: d["training"].update(batch_size="sixteen"), "training.batch_size", "expected an integer"),
        (lambda d: d["ports"].update(tavern=70000), "ports.tavern", "TCP port"),
        (
            lambda d: d["intake"].update(level="paranoid"),
            "intake.level",
            "one of 'quick', 'standard', 'deep'",
        ),
        (lambda d: d["guild"].update(auto_generate="yes"), "guild.auto_generate", "true or false"),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(tmp_path, home, mutate, key, words):
    path = write_config(tmp_path, mutate)
    proc = run_realm("--config", str(path), "status", home=home)
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr
    assert f"key '{key}'" in proc.stderr
    assert words in proc.stderr


def test_parse_config_error_object_names_key():
    with pytest.raises(ConfigError) as info:
        parse_config({"training": {"learning_rate": "fast"}}, "armory")
    assert (info.value.source, info.value.key) == ("armory", "training.learning_rate")


def test_home_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("REALM_HOME", str(tmp_path / "env"))
    assert load_config().home_path == (tmp_path / "env").resolve()
    assert load_config(home=tmp_path / "flag").home_path == (tmp_path / "flag").resolve()


EXPECTED_DIRS = [
    "inbox",
    "logs",
    "models",
    "queue",
    "queue/failed",
    "queue/high",
    "queue/low",
    "queue/normal",
    "queue/processing",
    "queue/recently_completed",
    "run",
]


def layout(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_dir())


def test_init_twice_is_idempotent(home):
    first = run_realm("init", home=home, check=True)
    assert "applied migration vault:m001_events_and_state" in first.stdout
    before = layout(home)
    assert before == EXPECTED_DIRS
    second = run_realm("init", home=home, check=True)
    assert "applied migration" not in second.stdout
    assert layout(home) == before

    from vault.store import Store, migration_sets

    store = Store.for_home(home)
    applied = store.applied_migrations()
    assert len(applied) == len(set(applied)) == sum(len(m._migrations) for m in migration_sets())
    rows = store.scalar("SELECT count(*) FROM _sqlite_migrations")
    assert rows == len(applied)


def test_status_json_on_fresh_home(home):
    proc = run_realm("status", "--json", home=home, check=True)
    data = json.loads(proc.stdout)
    assert data["home"] == str(home.resolve())
    assert data["database"] == str(home.resolve() / "realm.db")
    assert set(data["counts"].values()) == {0}
    assert set(data["quests"].values()) == {0}


WRITER = """
import sys
sys.path.insert(0, {repo!r})
from vault.store import Store
from vault.events import EventLog
log = EventLog(Store({db!r}))
for i in range(1000):
    log.emit("test.tick", writer={name!r}, i=i)
"""


def test_two_processes_append_1000_events_each(realm):
    db = str(realm.home.db_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.format(repo=str(REPO), db=db, name=name)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not any("database is locked" in e for e in errors)
    events = realm.events.since(0, kinds=["test.tick"], limit=5000)
    assert len(events) == 2000
    ids = [e.id for e in events]
    assert all(b > a for a, b in zip(ids, ids[1:], strict=False))
    for name in ("a", "b"):
        seq = [e.payload["i"] for e in events if e.payload["writer"] == name]
        assert seq == list(range(1000))


def test_event_since_filters_by_kind_and_prefix(realm):
    ev = realm.events
    a = ev.emit("battle.start", quest=1)
    ev.emit("step", step=1, loss=2.5)
    c = ev.emit("battle.end", quest=1)
    assert [e.id for e in ev.since(0, kinds=["battle.*"])] == [a, c]
    assert [e.kind for e in ev.since(a)] == ["step", "battle.end"]
    assert ev.since(0, limit=1)[0].payload == {"quest": 1}


def test_help_lists_commands_and_python_entry_works():
    proc = subprocess.run([sys.executable, str(REPO / "realm.py"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for cmd in ("init", "status", "config", "up", "down"):
        assert cmd in proc.stdout


def test_config_show_prints_effective_yaml(home):
    proc = run_realm("config", "show", home=home, check=True)
    data = yaml.safe_load(proc.stdout)
    assert data["home"] == str(home.resolve())
    assert data["ports"]["tavern"] == 8888
