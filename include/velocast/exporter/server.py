"""The MLOps exporter: registry, audit and warehouse state as Prometheus metrics (``:9101``).

Prometheus scrapes ``GET /metrics``; every value is computed at scrape time from

* the registry ``summary.json`` on GCS (``velocast.ml.registry``): the champion per environment and
  model type;
* BigQuery (the client library, emulator-aware; no Airflow needed): the audit table
  ``model_decisions`` (weekly monitor-and-train runs), ``ingestion_log`` (DAG 1) and
  ``hourly_predictions`` (DAG 2).

Each *source* is read at most once per ``settings.exporter_cache_seconds`` (a scrape inside that
time reuses the last result: BigQuery bills every query), with one query per table. A source that
cannot be read — missing table or dataset, emulator down, malformed registry — never fails the
scrape: its series are absent, ``velocast_exporter_source_up{source}`` is 0 and
``velocast_exporter_scrape_errors_total{source,kind}`` counts the failed reads (``kind``:
``not_found`` for a missing table/dataset/bucket, ``error`` for anything else). An empty registry
or an empty table is not an error: the source is up and only the series that need a row are absent.

Every metric is listed in ``METRICS`` (name, type, labels, help); ``observability/README.md``
renders the same list, and the Prometheus rule tests use it as the set of known names.
Timestamps are Unix seconds (UTC); a DATE column (``run_date``, ``prediction_date``) is exported
as its midnight UTC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import pandas as pd
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_wsgi_server

from velocast.gcp.clients import bigquery_client
from velocast.ml.registry import ENVIRONMENTS, Registry, RegistryEntry
from velocast.settings import VelocastSettings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


log = logging.getLogger(__name__)

PREFIX: Final = "velocast"
SOURCES: Final = ("registry", "model_decisions", "ingestion_log", "hourly_predictions")
# Decisions and promotions are counted over the runs of the last DECISION_WINDOW_DAYS days.
DECISION_WINDOW_DAYS: Final = 28
BRANCHES: Final = ("WAIT", "RETRAIN")
# NONE: the run waited (no challenger was trained, decision is null).
DECISIONS: Final = ("REJECT", "SKIP", "DEPLOY", "NONE")
INGESTION_STATUSES: Final = ("success", "rejected")
SPLITS: Final = ("test_baseline", "test_current")


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as exposed (counters end in _total)
    kind: Literal["gauge", "counter"]
    labels: tuple[str, ...]
    help: str
    source: str


def _spec(
    name: str, kind: Literal["gauge", "counter"], labels: tuple[str, ...], help_: str, source: str
) -> MetricSpec:
    return MetricSpec(f"{PREFIX}_{name}", kind, labels, help_, source)


_EM = ("env", "model_type")
METRICS: Final[tuple[MetricSpec, ...]] = (
    # --- registry ------------------------------------------------------------------------------
    _spec("registry_entries", "gauge", _EM, "Models registered in summary.json", "registry"),
    _spec(
        "registry_champions",
        "gauge",
        ("env",),
        "Model types with a flagged champion (0 when none: nothing promoted yet)",
        "registry",
    ),
    _spec(
        "registry_champion_info",
        "gauge",
        (*_EM, "run_id", "test_mode"),
        "1 for the flagged champion of each environment and model type",
        "registry",
    ),
    _spec(
        "registry_champion_r2",
        "gauge",
        (*_EM, "split"),
        "Champion R² on test_baseline / test_current at training time (absent when undefined)",
        "registry",
    ),
    _spec(
        "registry_champion_created_timestamp_seconds",
        "gauge",
        _EM,
        "When the champion's registry entry was created",
        "registry",
    ),
    # --- model_decisions (weekly monitor-and-train) -------------------------------------------
    _spec(
        "model_last_run_timestamp_seconds",
        "gauge",
        _EM,
        "logged_at of the last monitor-and-train run",
        "model_decisions",
    ),
    _spec(
        "model_last_branch",
        "gauge",
        (*_EM, "branch"),
        "1 for the branch (WAIT | RETRAIN) of the last run, 0 for the others",
        "model_decisions",
    ),
    _spec(
        "model_last_decision",
        "gauge",
        (*_EM, "decision"),
        "1 for the decision (REJECT | SKIP | DEPLOY | NONE = waited) of the last run, 0 for the others",
        "model_decisions",
    ),
    _spec(
        "model_drift_share",
        "gauge",
        _EM,
        "Share of drifted feature columns measured by the last run (absent when not measured)",
        "model_decisions",
    ),
    _spec(
        "model_champion_recent_r2",
        "gauge",
        _EM,
        "Champion R² on the recent actuals, measured by the last run (absent when not measured)",
        "model_decisions",
    ),
    _spec(
        "model_challenger_r2",
        "gauge",
        (*_EM, "split"),
        "Challenger R² on test_baseline / test_current in the last run (absent when it waited)",
        "model_decisions",
    ),
    _spec(
        "model_decisions_window",
        "gauge",
        (*_EM, "decision"),
        f"Runs per decision over the last {DECISION_WINDOW_DAYS} days (by run_date)",
        "model_decisions",
    ),
    _spec(
        "model_promotions_window",
        "gauge",
        _EM,
        f"Runs that promoted their challenger over the last {DECISION_WINDOW_DAYS} days",
        "model_decisions",
    ),
    _spec(
        "model_decisions_window_days",
        "gauge",
        (),
        "Length of the window of the *_window metrics, in days",
        "model_decisions",
    ),
    _spec(
        "model_last_promotion_timestamp_seconds",
        "gauge",
        _EM,
        "logged_at of the last run that promoted a challenger",
        "model_decisions",
    ),
    # --- ingestion_log (DAG 1) ------------------------------------------------------------------
    _spec(
        "ingestion_last_success_timestamp_seconds",
        "gauge",
        (),
        "logged_at of the last successful ingestion run",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_timestamp_seconds",
        "gauge",
        (),
        "logged_at of the last ingestion run, whatever its status",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_status",
        "gauge",
        ("status",),
        "1 for the status (success | rejected) of the last ingestion run, 0 for the others",
        "ingestion_log",
    ),
    _spec("ingestion_last_run_rows_fetched", "gauge", (), "Rows fetched by the last run", "ingestion_log"),
    _spec("ingestion_last_run_rows_loaded", "gauge", (), "Rows loaded by the last run", "ingestion_log"),
    _spec(
        "ingestion_last_run_rows_quarantined",
        "gauge",
        (),
        "Rows quarantined by the last run",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_rejected_share",
        "gauge",
        (),
        "rows_quarantined / rows_fetched of the last run",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_duration_seconds",
        "gauge",
        (),
        "Wall time of the last run (absent when not recorded)",
        "ingestion_log",
    ),
    # --- hourly_predictions (DAG 2) ------------------------------------------------------------
    _spec(
        "predictions_last_date_timestamp_seconds",
        "gauge",
        (),
        "The latest prediction_date in hourly_predictions (midnight UTC)",
        "hourly_predictions",
    ),
    _spec(
        "predictions_last_date_rows",
        "gauge",
        ("model_type",),
        "Rows of the latest prediction_date, by model type",
        "hourly_predictions",
    ),
    _spec(
        "predictions_last_written_timestamp_seconds",
        "gauge",
        (),
        "The latest predicted_at of the latest prediction_date",
        "hourly_predictions",
    ),
    # --- the exporter itself --------------------------------------------------------------------
    _spec("exporter_source_up", "gauge", ("source",), "1 if the last read of the source worked", "exporter"),
    _spec(
        "exporter_scrape_errors_total",
        "counter",
        ("source", "kind"),
        "Failed reads of a source (kind: not_found | error)",
        "exporter",
    ),
    _spec(
        "exporter_source_refresh_duration_seconds",
        "gauge",
        ("source",),
        "Duration of the last read of the source",
        "exporter",
    ),
    _spec(
        "exporter_source_refresh_timestamp_seconds",
        "gauge",
        ("source",),
        "When the source was last read (scrapes in between reuse that read)",
        "exporter",
    ),
)
_SPECS: Final = {spec.name: spec for spec in METRICS}


def metric_names() -> frozenset[str]:
    """Every series name the exporter can expose."""
    return frozenset(_SPECS)


# --- value helpers -------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    """None, NaN, pandas' NA and NaT (rows may come from a DataFrame)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes)) or not pd.api.types.is_scalar(value):
        return False
    return bool(pd.isna(value))


def as_float(value: Any) -> float | None:
    return None if _missing(value) else float(value)


def as_timestamp(value: Any) -> float | None:
    """Unix seconds of a datetime (naive = UTC), a date (midnight UTC) or an ISO 8601 string."""
    if _missing(value):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    raise TypeError(f"not a timestamp: {value!r}")


def as_date(value: Any) -> date | None:
    if _missing(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"not a date: {value!r}")


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    spec = _SPECS[f"{PREFIX}_{name}"]
    labels = list(spec.labels)
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name.removesuffix("_total"), spec.help, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=labels)


class _Families:
    """Families built in order, created on first use (a family without samples is not emitted)."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(self, name: str, labels: Sequence[str], value: float | None) -> None:
        if value is None:
            return
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _family(name)
        family.add_metric(list(labels), value)

    def result(self) -> list[Metric]:
        return [family for family in self._families.values() if family.samples]


def _state_set(
    families: _Families, name: str, base: Sequence[str], states: Sequence[str], current: str | None
) -> None:
    """One series per known state (1 for ``current``, 0 otherwise); an unknown state is added."""
    values = list(states) if current is None or current in states else [*states, current]
    for state in values:
        families.add(name, [*base, state], 1.0 if state == current else 0.0)


# --- pure: source data → metric families ----------------------------------------------------------


def registry_families(summary: Mapping[str, Any]) -> list[Metric]:
    """The registry document (``Registry.summary()``) → registry metric families."""
    families = _Families()
    environments = summary.get("environments") or {}
    for env in ENVIRONMENTS:
        models = (environments.get(env) or {}).get("models") or []
        entries = [RegistryEntry.model_validate(item) for item in models]
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry.model_type] = counts.get(entry.model_type, 0) + 1
        for model_type, count in sorted(counts.items()):
            families.add("registry_entries", [env, model_type], float(count))
        champions = sorted((e for e in entries if e.is_champion), key=lambda e: e.model_type)
        families.add("registry_champions", [env], float(len({e.model_type for e in champions})))
        for champion in champions:
            labels = [env, champion.model_type]
            families.add(
                "registry_champion_info",
                [*labels, champion.run_id, str(champion.test_mode).lower()],
                1.0,
            )
            for split in SPLITS:
                r2 = getattr(champion.metrics, split).r2
                families.add("registry_champion_r2", [*labels, split], as_float(r2))
            families.add(
                "registry_champion_created_timestamp_seconds", labels, as_timestamp(champion.created_at)
            )
    return families.result()


def _key(row: Mapping[str, Any]) -> tuple[str, str]:
    return (str(row["env"]), str(row["model_type"]))


def decision_families(
    rows: Iterable[Mapping[str, Any]], *, today: date, window_days: int = DECISION_WINDOW_DAYS
) -> list[Metric]:
    """``model_decisions`` rows → decision metric families.

    ``rows`` must hold, per (env, model_type), at least the latest run, the latest promoting run
    and every run whose ``run_date`` lies in the window (``decisions_sql`` selects exactly that);
    extra older rows do not change the result.
    """
    window_start = today - timedelta(days=window_days - 1)
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    last_promotion: dict[tuple[str, str], float] = {}
    in_window: dict[tuple[str, str], dict[str, int]] = {}
    promotions: dict[tuple[str, str], int] = {}
    for row in rows:
        key = _key(row)
        logged_at = as_timestamp(row["logged_at"]) or 0.0
        current = latest.get(key)
        if current is None or logged_at > (as_timestamp(current["logged_at"]) or 0.0):
            latest[key] = row
        promoted = not _missing(row.get("promoted")) and bool(row.get("promoted"))
        if promoted:
            last_promotion[key] = max(last_promotion.get(key, 0.0), logged_at)
        run_date = as_date(row.get("run_date"))
        counts = in_window.setdefault(key, dict.fromkeys(DECISIONS, 0))
        promotions.setdefault(key, 0)
        if run_date is not None and window_start <= run_date <= today:
            decision = row.get("decision")
            label = "NONE" if _missing(decision) else str(decision)
            counts[label] = counts.get(label, 0) + 1
            promotions[key] += int(promoted)

    families = _Families()
    for key in sorted(latest):
        row = latest[key]
        labels = list(key)
        families.add("model_last_run_timestamp_seconds", labels, as_timestamp(row["logged_at"]))
        branch = row.get("branch")
        _state_set(families, "model_last_branch", labels, BRANCHES, None if _missing(branch) else str(branch))
        decision = row.get("decision")
        _state_set(
            families,
            "model_last_decision",
            labels,
            DECISIONS,
            "NONE" if _missing(decision) else str(decision),
        )
        families.add("model_drift_share", labels, as_float(row.get("drift_share")))
        families.add("model_champion_recent_r2", labels, as_float(row.get("champion_recent_r2")))
        for split in SPLITS:
            families.add("model_challenger_r2", [*labels, split], as_float(row.get(f"challenger_r2_{split}")))
        for decision_label, count in in_window[key].items():
            families.add("model_decisions_window", [*labels, decision_label], float(count))
        families.add("model_promotions_window", labels, float(promotions[key]))
        families.add("model_last_promotion_timestamp_seconds", labels, last_promotion.get(key))
    families.add("model_decisions_window_days", [], float(window_days))
    return families.result()


def ingestion_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """``ingestion_log`` rows (at least the latest run and the latest successful one) → families."""
    ordered = sorted(rows, key=lambda row: as_timestamp(row["logged_at"]) or 0.0)
    families = _Families()
    if not ordered:
        return families.result()
    last = ordered[-1]
    successes = [row for row in ordered if row.get("status") == "success"]
    if successes:
        families.add("ingestion_last_success_timestamp_seconds", [], as_timestamp(successes[-1]["logged_at"]))
    families.add("ingestion_last_run_timestamp_seconds", [], as_timestamp(last["logged_at"]))
    _state_set(families, "ingestion_last_run_status", [], INGESTION_STATUSES, str(last["status"]))
    for column in ("rows_fetched", "rows_loaded", "rows_quarantined"):
        families.add(f"ingestion_last_run_{column}", [], as_float(last.get(column)))
    families.add("ingestion_last_run_rejected_share", [], as_float(last.get("rejected_share")))
    families.add("ingestion_last_run_duration_seconds", [], as_float(last.get("duration_seconds")))
    return families.result()


def prediction_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Rows ``(prediction_date, model_type, row_count, last_predicted_at)`` of the latest date."""
    families = _Families()
    rows = list(rows)
    if not rows:
        return families.result()
    last_date = max(d for d in (as_date(row["prediction_date"]) for row in rows) if d is not None)
    latest = [row for row in rows if as_date(row["prediction_date"]) == last_date]
    families.add("predictions_last_date_timestamp_seconds", [], as_timestamp(last_date))
    for row in sorted(latest, key=lambda row: str(row["model_type"])):
        families.add("predictions_last_date_rows", [str(row["model_type"])], as_float(row["row_count"]))
    written = [t for t in (as_timestamp(row.get("last_predicted_at")) for row in latest) if t is not None]
    families.add("predictions_last_written_timestamp_seconds", [], max(written) if written else None)
    return families.result()


# --- I/O: one query per table ---------------------------------------------------------------------

_DECISION_COLUMNS: Final = (
    "airflow_run_id, run_date, env, model_type, branch, decision, promoted, drift_share, "
    "champion_recent_r2, challenger_r2_test_baseline, challenger_r2_test_current, logged_at"
)
_INGESTION_COLUMNS: Final = (
    "ingestion_run_id, status, rows_fetched, rows_loaded, rows_quarantined, rejected_share, "
    "duration_seconds, logged_at"
)


def decisions_sql(table_id: str, window_start: date) -> str:
    """The latest run and the latest promotion per (env, model_type), plus the window's runs."""
    return (
        # WHERE TRUE: BigQuery has refused a QUALIFY without WHERE, GROUP BY or HAVING.
        f"SELECT {_DECISION_COLUMNS} FROM `{table_id}` WHERE TRUE "
        f"QUALIFY run_date >= DATE '{window_start.isoformat()}' "
        "OR ROW_NUMBER() OVER (PARTITION BY env, model_type ORDER BY logged_at DESC) = 1 "
        "OR (promoted AND ROW_NUMBER() OVER "
        "(PARTITION BY env, model_type, promoted ORDER BY logged_at DESC) = 1)"
    )


def ingestion_sql(table_id: str) -> str:
    """The latest run and the latest run of each status."""
    return (
        f"SELECT {_INGESTION_COLUMNS} FROM `{table_id}` WHERE TRUE "
        "QUALIFY ROW_NUMBER() OVER (ORDER BY logged_at DESC) = 1 "
        "OR ROW_NUMBER() OVER (PARTITION BY status ORDER BY logged_at DESC) = 1"
    )


def predictions_sql(table_id: str) -> str:
    return (
        "SELECT prediction_date, model_type, COUNT(*) AS row_count, MAX(predicted_at) AS last_predicted_at "
        f"FROM `{table_id}` WHERE prediction_date = (SELECT MAX(prediction_date) FROM `{table_id}`) "
        "GROUP BY prediction_date, model_type"
    )


Reader = Callable[[], list[Metric]]


class WarehouseSources:
    """The readers of the four sources (the BigQuery client is created on first use)."""

    def __init__(
        self,
        settings: VelocastSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        window_days: int = DECISION_WINDOW_DAYS,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.window_days = window_days
        self._client: bigquery.Client | None = None
        self._registry: Registry | None = None

    @property
    def client(self) -> bigquery.Client:
        # The BigQuery client library itself (emulator-aware), not Airflow's hook: the exporter
        # is its own process and needs no Airflow connection.
        if self._client is None:
            self._client = bigquery_client(self.settings)
        return self._client

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        job = self.client.query(sql, location=self.settings.gcp_location)
        return [{str(key): value for key, value in row.items()} for row in job.result()]

    def registry(self) -> list[Metric]:
        if self._registry is None:
            self._registry = Registry(self.settings)
        return registry_families(self._registry.summary())

    def model_decisions(self) -> list[Metric]:
        today = self.clock().date()
        window_start = today - timedelta(days=self.window_days - 1)
        rows = self._rows(decisions_sql(self.settings.decisions_table_id, window_start))
        return decision_families(rows, today=today, window_days=self.window_days)

    def ingestion_log(self) -> list[Metric]:
        return ingestion_families(self._rows(ingestion_sql(self.settings.ingestion_log_table_id)))

    def hourly_predictions(self) -> list[Metric]:
        return prediction_families(self._rows(predictions_sql(self.settings.predictions_table_id)))

    def readers(self) -> dict[str, Reader]:
        return {
            "registry": self.registry,
            "model_decisions": self.model_decisions,
            "ingestion_log": self.ingestion_log,
            "hourly_predictions": self.hourly_predictions,
        }


# --- the collector ---------------------------------------------------------------------------------


def error_kind(error: BaseException) -> Literal["not_found", "error"]:
    return "not_found" if isinstance(error, NotFound) else "error"


@dataclass
class _Reading:
    families: list[Metric]
    up: bool
    read_at: float  # monotonic
    finished_at: float  # wall clock
    duration: float


class MlopsCollector:
    """A prometheus_client collector: reads each source when its cached reading is too old."""

    def __init__(
        self,
        readers: Mapping[str, Reader],
        *,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.readers = dict(readers)
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self._readings: dict[str, _Reading] = {}
        self._errors: dict[tuple[str, str], int] = {}
        # One scrape refreshes at a time (the HTTP server is threaded): no duplicate queries.
        self._lock = threading.Lock()

    def _read(self, source: str, reader: Reader) -> _Reading:
        started = self.monotonic()
        try:
            families, up = reader(), True
        except Exception as error:  # a source must never fail the scrape
            kind = error_kind(error)
            log.warning("exporter: reading %s failed (%s): %s", source, kind, error)
            self._errors[(source, kind)] = self._errors.get((source, kind), 0) + 1
            families, up = [], False
        finished = self.monotonic()
        return _Reading(families, up, started, self.wall_clock(), finished - started)

    def refresh(self) -> dict[str, _Reading]:
        with self._lock:
            now = self.monotonic()
            for source, reader in self.readers.items():
                reading = self._readings.get(source)
                if reading is None or now - reading.read_at >= self.cache_seconds:
                    self._readings[source] = self._read(source, reader)
            return dict(self._readings)

    def collect(self) -> Iterator[Metric]:
        readings = self.refresh()
        for reading in readings.values():
            yield from reading.families
        up = _family("exporter_source_up")
        duration = _family("exporter_source_refresh_duration_seconds")
        refreshed = _family("exporter_source_refresh_timestamp_seconds")
        for source, reading in readings.items():
            up.add_metric([source], 1.0 if reading.up else 0.0)
            duration.add_metric([source], reading.duration)
            refreshed.add_metric([source], reading.finished_at)
        errors = _family("exporter_scrape_errors_total")
        for source in self.readers:
            for kind in ("not_found", "error"):
                errors.add_metric([source, kind], float(self._errors.get((source, kind), 0)))
        yield from (up, errors, duration, refreshed)


def build_registry(
    settings: VelocastSettings,
    *,
    readers: Mapping[str, Reader] | None = None,
    window_days: int = DECISION_WINDOW_DAYS,
) -> CollectorRegistry:
    """A registry holding the exporter's collector (readers default to the real sources)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = MlopsCollector(
        readers if readers is not None else WarehouseSources(settings, window_days=window_days).readers(),
        cache_seconds=settings.exporter_cache_seconds,
    )
    registry.register(collector)
    return registry


def start_exporter(
    settings: VelocastSettings,
    *,
    host: str = "0.0.0.0",  # scraped from the network in a container
    port: int | None = None,
    readers: Mapping[str, Reader] | None = None,
    window_days: int = DECISION_WINDOW_DAYS,
) -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` (0 picks a free port) in a daemon thread.

    Stop with ``server.shutdown(); server.server_close()``; ``server.server_port`` is the port.
    """
    server, _thread = start_wsgi_server(
        settings.exporter_port if port is None else port,
        addr=host,
        registry=build_registry(settings, readers=readers, window_days=window_days),
    )
    log.info("velocast exporter serving http://%s:%d/metrics", host, server.server_port)
    return server


def serve_forever(
    settings: VelocastSettings, *, host: str, port: int, window_days: int = DECISION_WINDOW_DAYS
) -> None:
    """The ``velocast exporter`` command: serve until interrupted."""
    server = start_exporter(settings, host=host, port=port, window_days=window_days)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
