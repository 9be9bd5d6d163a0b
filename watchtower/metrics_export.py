"""The Prometheus exporter: GET /metrics on the Tavern, the VaultKeeper API and the Oracle.

Owns the metric names and how each is read; writes nothing. `mount(app, service, realm=...)` gives a
Flask app a `/metrics` route (text format 0.0.4, or OpenMetrics when the scraper asks for it) backed
by its own `CollectorRegistry`, plus a request-latency histogram, `realm_<service>_request_duration_seconds`,
observed when each response closes (a stream's whole life, not just its headers).

The realm's numbers come from `RealmCollector`, a custom collector that reads the realm at scrape
time, inside one read transaction (one consistent snapshot), through its owners' reads where they
have one (`QuestQueue.counts`, `arena.reporting.read_hero`, `Ledger.alias`, intake's `waiting_files`)
and otherwise through a few indexed reads here (the watchtower is the one room allowed SQL on
other rooms' tables, tests/test_room_sql.py). A scrape never scans the event log: every read is a
point lookup or the first row of an index, so its cost does not grow with the history
(tests/test_metrics_export.py counts SQLite's VM steps at two log lengths; bench/metrics.py times a
scrape with 1M events in the log).

Naming follows Prometheus: a `realm_` prefix, base units (seconds, bytes), `_total` on counters, and
no high-cardinality labels: no step, checkpoint or quest label anywhere; a step is a gauge's value
(`realm_champion_step`). Labels are closed sets: quest status, transfer status, the Oracle's load
kinds, and the route template, method and status code of a request.

| metric | type | from |
| --- | --- | --- |
| realm_steps_total | counter | the hero's XP (global optimizer steps, ever) |
| realm_tokens_total | counter | tokens trained, when the trainer reports them |
| realm_hero_level | gauge | the hero's level |
| realm_loss, realm_val_loss | gauge | the newest train / val loss (the vault's `series`) |
| realm_quests{status} | gauge | quests by status |
| realm_queue_depth, realm_inbox_files | gauge | queued quests; files waiting in the inbox |
| realm_checkpoints, realm_checkpoint_bytes | gauge | live checkpoints in the ledger and their bytes |
| realm_latest_checkpoint_step, realm_champion_step | gauge | the newest checkpoint's step; the `champion` alias's |
| realm_event_log_last_id, realm_event_log_lag_seconds | gauge | the newest event, and seconds since it |
| realm_step_event_age_seconds | gauge | seconds since the newest step event |
| realm_disk_free_bytes, realm_disk_total_bytes | gauge | the home's filesystem |
| realm_vault_transfers_total{status}, realm_vault_transfers_running | counter, gauge | finished transfers by outcome; running ones |
| realm_vault_transfer_bytes_total | counter | bytes moved by every transfer |
| realm_tavern_relay_lag_events | gauge | events the Tavern's relay has not pushed yet (Tavern) |
| realm_oracle_* | mixed | loaded models, loads, jobs, batches, generated tokens (Oracle) |
| realm_<service>_request_duration_seconds | histogram | request latency per route template |
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from flask import Flask

    from sentinels.realm import Realm

log = logging.getLogger("realm.watchtower.metrics_export")

CHAMPION = "champion"  # the alias the guild moves (guild.champion.CHAMPION); kept literal so the
# Oracle's process, which serves this exporter, does not import the guild
TRANSFER_OUTCOMES = ("done", "failed", "interrupted")  # vault.transfer's terminal statuses
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds; up to two minutes because an Oracle generation or a Vault push can take that long."""


class MetricsError(RuntimeError):
    """The exporter was set up wrongly (an unknown service name)."""


# ---- reading the realm ----------------------------------------------------------------------------
def _one(conn, sql: str, params: tuple = ()) -> tuple | None:
    row = conn.execute(sql, params).fetchone()
    return tuple(row) if row is not None else None


def read_realm(realm: Realm, now: float | None = None) -> dict[str, Any]:
    """Every realm number /metrics exports, read in one snapshot (plain values; None when unknown)."""
    from arena.intake.inbox import waiting_files
    from arena.queue import QuestQueue
    from arena.reporting import read_hero
    from vault.ledger import Ledger
    from vault.schema import series_rows

    now = time.time() if now is None else now
    store = realm.store
    conn = store.connect()
    own_tx = not conn.in_transaction
    if own_tx:
        conn.execute("BEGIN")  # deferred: a read snapshot, no lock a writer waits on
    try:
        quests = QuestQueue(realm.home, store, realm.events).counts()
        hero = read_hero(store, realm.events, quests.get("completed", 0))
        battle = store.get_state("battle", {}) or {}
        loss = _one(conn, f"SELECT loss FROM series WHERE {series_rows('loss')} ORDER BY step DESC LIMIT 1")
        val = _one(
            conn, f"SELECT val_loss FROM series WHERE {series_rows('val_loss')} ORDER BY step DESC LIMIT 1"
        )
        # A max() over the primary key and an index seek: the log's length does not matter.
        last = _one(conn, "SELECT id, ts FROM events WHERE id = (SELECT max(id) FROM events)")
        last_step = _one(conn, "SELECT ts FROM events WHERE kind = 'step' ORDER BY id DESC LIMIT 1")
        ckpt = _one(
            conn,
            "SELECT count(*), coalesce(sum(size_bytes), 0), max(step) FROM checkpoints WHERE deleted = 0",
        )
        champion = Ledger(store).alias(CHAMPION)
        transfers = {
            status: (int(n), int(moved or 0))
            for status, n, moved in conn.execute(
                "SELECT status, count(*), sum(bytes_moved) FROM transfers GROUP BY status"
            )
        }
    finally:
        if own_tx:
            conn.execute("COMMIT")
    try:
        disk = shutil.disk_usage(realm.home.root)
    except OSError:  # a home on a vanished mount: report what we can, not a 500
        disk = None
    tokens = hero.get("tokens", battle.get("tokens"))
    return {
        "steps": int(hero.get("xp") or 0),
        "tokens": int(tokens) if tokens is not None else None,
        "hero_level": int(hero.get("level") or 0),
        "loss": loss[0] if loss else None,
        "val_loss": val[0] if val else None,
        "quests": quests,
        "queue_depth": quests.get("queued", 0),
        "inbox_files": len(waiting_files(realm.home.inbox)),
        "checkpoints": int(ckpt[0]) if ckpt else 0,
        "checkpoint_bytes": int(ckpt[1]) if ckpt else 0,
        "latest_checkpoint_step": ckpt[2] if ckpt else None,
        "champion_step": _checkpoint_step(champion),
        "event_log_last_id": int(last[0]) if last else 0,
        "event_log_lag_s": max(0.0, now - last[1]) if last else None,
        "step_event_age_s": max(0.0, now - last_step[0]) if last_step else None,
        "disk_free_bytes": disk.free if disk else None,
        "disk_total_bytes": disk.total if disk else None,
        "transfers": transfers,
    }


def _checkpoint_step(asset_id: str | None) -> int | None:
    from vault import ids

    if not asset_id or ids.kind_of(asset_id) != "checkpoint":
        return None
    return int(asset_id.split("_", 1)[1])


# (name, help, key of read_realm's dict); a value of None (not known yet) is left out of the scrape.
REALM_COUNTERS = (
    ("realm_steps", "Optimizer steps the hero has taken, ever (its XP).", "steps"),
    ("realm_tokens", "Tokens the hero has trained on, ever.", "tokens"),
)
REALM_GAUGES = (
    ("realm_hero_level", "The hero's level (XP // 1000).", "hero_level"),
    ("realm_loss", "The newest reported training loss.", "loss"),
    ("realm_val_loss", "The newest reported validation loss.", "val_loss"),
    ("realm_queue_depth", "Quests queued for training.", "queue_depth"),
    ("realm_inbox_files", "Files waiting in the inbox.", "inbox_files"),
    ("realm_checkpoints", "Live checkpoints in the ledger.", "checkpoints"),
    ("realm_checkpoint_bytes", "Bytes of the live checkpoints.", "checkpoint_bytes"),
    ("realm_latest_checkpoint_step", "Step of the newest live checkpoint.", "latest_checkpoint_step"),
    ("realm_champion_step", "Step of the checkpoint the champion alias names.", "champion_step"),
    ("realm_event_log_last_id", "Id of the newest event.", "event_log_last_id"),
    ("realm_event_log_lag_seconds", "Seconds since the newest event.", "event_log_lag_s"),
    ("realm_step_event_age_seconds", "Seconds since the newest step event.", "step_event_age_s"),
    ("realm_disk_free_bytes", "Free bytes on the home's filesystem.", "disk_free_bytes"),
    ("realm_disk_total_bytes", "Size of the home's filesystem.", "disk_total_bytes"),
)


class RealmCollector(Collector):
    """The realm's numbers, read at scrape time (see the module docstring's table)."""

    def __init__(self, realm: Realm):
        self.realm = realm

    def collect(self) -> Iterable[Metric]:
        r = read_realm(self.realm)
        for name, doc, key in REALM_COUNTERS:
            if r[key] is not None:
                yield CounterMetricFamily(name, doc, value=r[key])
        for name, doc, key in REALM_GAUGES:
            if r[key] is not None:
                yield GaugeMetricFamily(name, doc, value=r[key])
        quests = GaugeMetricFamily("realm_quests", "Quests by status.", labels=["status"])
        for status, n in r["quests"].items():
            quests.add_metric([status], n)
        yield quests
        yield from transfer_metrics(r["transfers"])


def transfer_metrics(transfers: dict[str, tuple[int, int]]) -> Iterator[Metric]:
    """Vault transfers: finished ones by outcome (terminal, so the counters only grow), running ones,
    and the bytes every transfer has moved."""
    done = CounterMetricFamily(
        "realm_vault_transfers", "Finished vault transfers by outcome.", labels=["status"]
    )
    for status in TRANSFER_OUTCOMES:
        done.add_metric([status], transfers.get(status, (0, 0))[0])
    yield done
    yield GaugeMetricFamily(
        "realm_vault_transfers_running",
        "Vault transfers in progress.",
        value=transfers.get("running", (0, 0))[0],
    )
    yield CounterMetricFamily(
        "realm_vault_transfer_bytes", "Bytes moved by vault transfers.", sum(b for _, b in transfers.values())
    )


class RelayCollector(Collector):
    """The Tavern's relay: how many events it has yet to push (0 once it has caught up)."""

    def __init__(self, relay: Any):
        self.relay = relay

    def collect(self) -> Iterable[Metric]:
        pushed = self.relay.last_id
        if pushed is None:  # not started: no browser has connected yet
            return
        behind = max(0, self.relay.events.last_id() - pushed)
        yield GaugeMetricFamily(
            "realm_tavern_relay_lag_events", "Events not yet pushed to browsers.", value=behind
        )


class OracleCollector(Collector):
    """The Oracle's own state: what is loaded, loads by kind, and the engine's counters."""

    def __init__(self, manager: Any, engine: Any):
        self.manager, self.engine = manager, engine

    def collect(self) -> Iterable[Metric]:
        m, e = self.manager.status(), self.engine.status()
        yield GaugeMetricFamily(
            "realm_oracle_loaded_models", "Checkpoints in memory.", value=len(m["loaded"])
        )
        yield GaugeMetricFamily(
            "realm_oracle_loading_models", "Checkpoints loading now.", value=len(m["loading"])
        )
        yield GaugeMetricFamily(
            "realm_oracle_model_bytes", "Memory of the loaded checkpoints.", value=m["memory"]["models_bytes"]
        )
        loads = CounterMetricFamily("realm_oracle_model_loads", "Checkpoint loads by kind.", labels=["kind"])
        for kind, n in m["loads"].items():
            loads.add_metric([kind], n)
        yield loads
        yield GaugeMetricFamily("realm_oracle_active_jobs", "Generations running now.", value=e["active"])
        yield GaugeMetricFamily(
            "realm_oracle_queued_jobs", "Generations waiting for a batch.", value=e["queued"]
        )
        yield CounterMetricFamily("realm_oracle_jobs", "Generations finished.", e["jobs"])
        yield CounterMetricFamily("realm_oracle_batches", "Batches run.", e["batches"])
        yield CounterMetricFamily("realm_oracle_cancelled_jobs", "Generations cancelled.", e["cancelled"])
        yield CounterMetricFamily("realm_oracle_generated_tokens", "Tokens generated.", e["tokens"])


# ---- serving ----------------------------------------------------------------------------------------
SERVICES = ("tavern", "vault", "oracle")


def make_registry(realm: Realm | None, collectors: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry of its own per app (never the process-global one: tests build many apps side by side)."""
    registry = CollectorRegistry(auto_describe=False)
    if realm is not None:
        registry.register(RealmCollector(realm))
    for c in collectors:
        registry.register(c)
    return registry


def render(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The exposition body and its content type (OpenMetrics when `accept` asks for it)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def mount(
    app: Flask, service: str, *, realm: Realm | None, collectors: Iterable[Collector] = ()
) -> CollectorRegistry:
    """GET /metrics on `app` and a latency histogram over its requests; returns the registry."""
    from flask import Response, g, request

    if service not in SERVICES:
        raise MetricsError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    registry = make_registry(realm, collectors)
    latency = Histogram(
        f"realm_{service}_request_duration_seconds",
        f"Seconds from a {service} request's arrival to the end of its response.",
        ["endpoint", "method", "code"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )

    @app.before_request
    def _metrics_start() -> None:
        g.metrics_t0 = time.perf_counter()

    @app.after_request
    def _metrics_observe(response):
        t0 = g.get("metrics_t0")
        if t0 is not None:
            # The route template, never the path: a path holds ids (a high-cardinality label).
            endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            labels = (endpoint, request.method, str(response.status_code))
            response.call_on_close(_observer(latency, labels, t0))
        return response

    def metrics() -> Response:
        body, content_type = render(registry, request.headers.get("Accept", ""))
        return Response(body, content_type=content_type)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
    return registry


def _observer(latency: Histogram, labels: tuple[str, str, str], t0: float) -> Callable[[], None]:
    def observe() -> None:
        latency.labels(*labels).observe(time.perf_counter() - t0)

    return observe
