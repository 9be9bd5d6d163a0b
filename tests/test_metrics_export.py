"""GET /metrics on the Tavern, the VaultKeeper API and the Oracle (watchtower/metrics_export.py).

The three real servers (`realm tavern`, `realm vault serve`, `realm oracle`) run on free loopback
ports over one copy of the session's trained home, with the champion alias moved, a quest queued and
a checkpoint pushed to a second zone. Each scrape is parsed by prometheus_client's own text parser
and checked against the realm's tables, read here with plain SQL: quests by status against the
quests table, steps against the hero state's XP, the champion's step against the alias target, the
ledger's bytes, the transfers, the newest loss. Latency histograms are checked after real requests,
labels for their cardinality, and a scrape's SQLite work is counted at two log lengths: it must not
grow with the history (the timing is bench/metrics.py's).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.oracle import start_oracle
from tests.conftest import TRAINED_STEPS
from tests.helpers import (
    REALM_PY,
    REPO,
    bin_chats,
    clean_env,
    enqueue,
    events,
    free_port,
    last_event_id,
    query,
    start_tavern,
    stop,
    wait_health,
    wait_until,
)

CHAMPION_STEP = TRAINED_STEPS[1]  # not the newest: the gauge must follow the alias, not `latest`
ALLOWED_LABELS = {"status", "kind", "endpoint", "method", "code", "le"}


# ---- the realm and its three servers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def metrics_home(trained_home: Path, tmp_path_factory) -> Path:
    from sentinels.realm import Realm
    from vault.keeper import VaultKeeper
    from vault.ledger import Ledger
    from vault.transfer import push
    from vault.zones import add_zone

    home = tmp_path_factory.mktemp("metrics") / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("*.lock", "*.pid", "logs"))
    enqueue(home, "waiting.jsonl", bin_chats(8, seed=7))  # one queued quest beside the trained one
    realm = Realm.open(home)
    try:
        Ledger(realm.store).set_alias("champion", CHAMPION_STEP, by="test", reason="test_metrics_export")
        nas = home.parent / "nas"
        nas.mkdir()
        add_zone(realm.store, "nas", str(nas))
        push(VaultKeeper(realm), f"checkpoint_{TRAINED_STEPS[0]}", "nas")  # one finished transfer
    finally:
        realm.store.close()
    return home


def _start_vault(home: Path, port: int):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, str(REALM_PY), "vault", "serve", "--home", str(home), "--port", str(port)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_health(port, proc)["service"] == "vault"
    return proc


@pytest.fixture(scope="module")
def services(metrics_home: Path):
    home = metrics_home
    ports = {name: free_port() for name in ("tavern", "vault", "oracle")}
    procs = {}
    try:
        procs["tavern"] = start_tavern(home, ports["tavern"])
        procs["vault"] = _start_vault(home, ports["vault"])
        procs["oracle"] = start_oracle(home, ports["oracle"], env={"REALM_LOG_CONSOLE": "0"})
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        for proc in procs.values():
            assert stop(proc) == 0


# ---- reading a scrape and the realm -----------------------------------------------------------------
def scrape(url: str, accept: str | None = None) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one GET /metrics, through prometheus_client's parser."""
    r = requests.get(f"{url}/metrics", timeout=30, headers={"Accept": accept} if accept else {})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def one(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape_until(url: str, *series: tuple[str, dict]) -> dict:
    """A scrape holding every (name, labels) series: a request is observed when its response closes,
    which may land just after the client has read it."""

    def ready() -> dict | None:
        got = scrape(url)
        return got if all(one(got, name, **labels) for name, labels in series) else None

    return wait_until(ready, 30, f"{[n for n, _ in series]} on {url}/metrics")


def truth(home: Path) -> dict:
    """The realm's numbers read straight from its tables, as a person with sqlite3 would."""
    state = {r["key"]: json.loads(r["value"]) for r in query(home, "SELECT key, value FROM state")}
    live = query(
        home, "SELECT count(*) AS n, sum(size_bytes) AS b, max(step) AS s FROM checkpoints WHERE deleted = 0"
    )[0]
    alias = query(home, "SELECT asset_id FROM aliases WHERE name = 'champion'")[0]["asset_id"]
    steps = events(home, "step")
    newest = max(steps, key=lambda e: e["step"])
    vals = [e for e in events(home) if e.get("val_loss") is not None and "step" in e]
    done = query(home, "SELECT count(*) AS n FROM transfers WHERE status = 'done'")[0]["n"]
    return {
        "quests": {
            r["status"]: r["n"]
            for r in query(home, "SELECT status, count(*) AS n FROM quests GROUP BY status")
        },
        "xp": state["hero"]["xp"],
        "tokens": state.get("battle", {}).get("tokens"),
        "checkpoints": live["n"],
        "checkpoint_bytes": live["b"],
        "latest_step": live["s"],
        "champion_step": int(alias.split("_", 1)[1]),
        "loss": newest["loss"],
        "val_loss": max(vals, key=lambda e: (e["step"], e["event_id"]))["val_loss"] if vals else None,
        "transfers_done": done,
        "transfer_bytes": query(home, "SELECT coalesce(sum(bytes_moved), 0) AS b FROM transfers")[0]["b"],
    }


# ---- the realm's state on every service ------------------------------------------------------------
@pytest.mark.parametrize("service", ["tavern", "vault", "oracle"])
def test_each_service_exports_the_realm_state(services, metrics_home, service):
    home = metrics_home
    want = truth(home)
    before = last_event_id(home)
    got = scrape(services[service])
    after = last_event_id(home)

    assert want["quests"].get("queued") == 1 and want["transfers_done"] == 1  # the fixture's doing
    for status in ("queued", "processing", "completed", "failed", "skipped", "cancelled", "retried"):
        assert one(got, "realm_quests", status=status) == want["quests"].get(status, 0), status
    assert one(got, "realm_queue_depth") == want["quests"]["queued"]
    assert one(got, "realm_steps_total") == want["xp"] == TRAINED_STEPS[-1]
    if want["tokens"] is None:
        assert one(got, "realm_tokens_total") is None  # not reported by this trainer: left out, not 0
    else:
        assert one(got, "realm_tokens_total") == want["tokens"] > 0
    assert one(got, "realm_champion_step") == want["champion_step"] == CHAMPION_STEP
    assert one(got, "realm_latest_checkpoint_step") == want["latest_step"] == TRAINED_STEPS[-1]
    assert one(got, "realm_checkpoints") == want["checkpoints"] == len(TRAINED_STEPS)
    assert one(got, "realm_checkpoint_bytes") == want["checkpoint_bytes"] > 0
    assert one(got, "realm_loss") == pytest.approx(want["loss"])
    if want["val_loss"] is None:
        assert one(got, "realm_val_loss") is None
    else:
        assert one(got, "realm_val_loss") == pytest.approx(want["val_loss"])
    assert one(got, "realm_vault_transfers_total", status="done") == want["transfers_done"]
    assert one(got, "realm_vault_transfers_total", status="failed") == 0
    assert one(got, "realm_vault_transfers_running") == 0
    assert one(got, "realm_vault_transfer_bytes_total") == want["transfer_bytes"] > 0
    assert before <= one(got, "realm_event_log_last_id") <= after
    assert one(got, "realm_event_log_lag_seconds") >= 0
    assert one(got, "realm_step_event_age_seconds") >= 0
    assert 0 < one(got, "realm_disk_free_bytes") <= one(got, "realm_disk_total_bytes")
    assert one(got, "realm_hero_level") == want["xp"] // 1000


def test_openmetrics_when_the_scraper_asks(services):
    r = requests.get(
        f"{services['vault']}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=30
    )
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF") and "realm_steps_total" in r.text


# ---- latency histograms and labels ------------------------------------------------------------------
def test_oracle_request_latency_histogram(services):
    oracle = services["oracle"]
    body = {"model": "dio@champion", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    r = requests.post(f"{oracle}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert requests.get(f"{oracle}/v1/models/nope-404", timeout=30).status_code == 404
    labels = {"endpoint": "/v1/chat/completions", "method": "POST", "code": "200"}
    name = "realm_oracle_request_duration_seconds"
    missing = {"endpoint": "/v1/models/<path:model_id>", "method": "GET", "code": "404"}
    got = scrape_until(oracle, (f"{name}_count", labels), (f"{name}_count", missing))
    assert one(got, f"{name}_count", **labels) == 1
    assert one(got, f"{name}_bucket", **labels, le="+Inf") == 1
    assert one(got, f"{name}_sum", **labels) > 0
    assert one(got, f"{name}_count", **missing) == 1
    assert one(got, "realm_oracle_jobs_total") >= 1
    assert one(got, "realm_oracle_generated_tokens_total") >= 1
    assert one(got, "realm_oracle_loaded_models") >= 1
    # The Oracle holds the home's vault in-process, so it exports the realm too.
    assert one(got, "realm_champion_step") == CHAMPION_STEP


def test_labels_are_route_templates_never_ids(services):
    vault, tavern = services["vault"], services["tavern"]
    ref = f"checkpoint_{TRAINED_STEPS[0]}"
    assert requests.get(f"{vault}/api/asset/{ref}", timeout=30).status_code == 200
    assert requests.get(f"{vault}/no/such/{ref}", timeout=30).status_code == 404
    assert requests.get(f"{tavern}/api/state", timeout=30).status_code == 200
    name = "realm_vault_request_duration_seconds_count"
    asset = {"endpoint": "/api/asset/<path:ref>", "method": "GET", "code": "200"}
    unmatched = {"endpoint": "<unmatched>", "method": "GET", "code": "404"}
    got = scrape_until(vault, (name, asset), (name, unmatched))
    assert one(got, name, **asset) == 1 and one(got, name, **unmatched) == 1
    state = {"endpoint": "/api/state", "method": "GET", "code": "200"}
    tav = scrape_until(tavern, ("realm_tavern_request_duration_seconds_count", state))
    for samples in (got, tav, scrape(services["oracle"])):
        for _name, labels in samples:
            keys = {k for k, _ in labels}
            assert keys <= ALLOWED_LABELS, (_name, keys)
            for _k, v in labels:
                assert not re.search(r"checkpoint[-_]\d", v), (_name, labels)


# ---- cheap at scrape time ----------------------------------------------------------------------------
def _vm_steps(realm) -> int:
    """SQLite VM instructions one read of the realm's metrics costs (the store's thread connection)."""
    from watchtower.metrics_export import read_realm

    conn = realm.store.connect()
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        read_realm(realm)
    finally:
        conn.set_progress_handler(None, 1)
    return steps[0]


def _append_steps(realm, first: int, n: int) -> None:
    rows = [
        (
            1.7e9 + s,
            "step",
            json.dumps(
                {"step": s, "loss": 2.0 + 1 / s, "val_loss": 2.5}
                if s % 100 == 0
                else {"step": s, "loss": 2.0 + 1 / s}
            ),
        )
        for s in range(first, first + n)
    ]
    with realm.store.tx() as conn:
        conn.executemany("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)", rows)


def test_a_scrape_does_not_read_the_history(realm):
    """20,000 more events in the log cost a scrape (almost) nothing: no read walks the history."""
    from watchtower.metrics_export import read_realm

    _append_steps(realm, 1, 1_000)
    small = _vm_steps(realm)
    _append_steps(realm, 1_001, 20_000)
    big = _vm_steps(realm)
    # A scan of the new events alone would be >= 20,000 steps; a deeper B-tree costs a handful.
    assert big - small < 100, (small, big)
    r = read_realm(realm)
    assert r["steps"] == 21_000 and r["loss"] == pytest.approx(2.0 + 1 / 21_000)
    assert r["val_loss"] == 2.5 and r["event_log_last_id"] == 21_000


def test_a_new_realm_scrapes_without_guessing(realm):
    """Nothing trained yet: counts are 0, and what is unknown (loss, champion) is left out."""
    from prometheus_client import generate_latest

    from watchtower.metrics_export import make_registry

    text = generate_latest(make_registry(realm)).decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert one(got, "realm_steps_total") == 0 and one(got, "realm_quests", status="queued") == 0
    for absent in ("realm_loss", "realm_val_loss", "realm_champion_step", "realm_tokens_total"):
        assert one(got, absent) is None, absent
