"""Daily ingestion of the Paris bike counts: the logic behind DAG ``ingest_bike_counts``.

Each step takes and returns small, JSON-serialisable references (window bounds, ``gs://``
URIs, counts) so that Airflow passes them through XCom; the rows themselves travel as files
staged in GCS. Steps:

1. ``plan_window``: the target UTC days from the run's logical date (a trailing window,
   because the API publishes with a lag of 1–4 days);
2. ``extract``: fetch the window from the API and stage the raw records (NDJSON) in GCS;
3. ``transform``: normalise and validate; stage the valid rows and the quarantined rows
   (Parquet) in GCS; fail loudly if the rejected share exceeds the threshold;
4. ``load``: one transaction replaces the window's days in the raw table and the run's
   partition of the quarantine table;
5. ``report``: a row in the ingestion log table, metrics, staging clean-up.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd

from velocast import contract
from velocast.data.normalize import normalize, records_to_frame
from velocast.data.sql import date_literal, timestamp_literal
from velocast.data.validation import (
    TooManyRejectedRowsError,
    check_rejected_share,
    rejected_share,
    validate_counts,
)
from velocast.gcp.storage import Storage
from velocast.gcp.warehouse import (
    Warehouse,
    safe_table_suffix,
    write_contract_parquet,
)
from velocast.ingest.opendata import OpenDataClient
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
QUARANTINE_COLUMNS = ["raw_record", "reason", "counter_id", "counted_at"]


@dataclass(frozen=True)
class IngestionWindow:
    """UTC days ``[start, end)`` re-ingested by the run of ``logical_date`` (a Paris date)."""

    logical_date: date
    start: datetime
    end: datetime

    @property
    def days(self) -> list[date]:
        count = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).date() for i in range(count)]

    def to_xcom(self) -> dict[str, str]:
        return {
            "logical_date": self.logical_date.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

    @classmethod
    def from_xcom(cls, data: dict[str, str]) -> IngestionWindow:
        return cls(
            logical_date=date.fromisoformat(data["logical_date"]),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
        )


def plan_window(logical_date: datetime, trailing_days: int) -> IngestionWindow:
    """The ``trailing_days`` whole UTC days before the logical date's day in Paris.

    Cron schedules have zero-length data intervals in Airflow 3, so the logical date (the
    scheduled 02:00 Paris tick) is the only anchor: the run of day D ingests D-n … D-1.
    """
    if logical_date.tzinfo is None:
        raise ValueError("logical_date must be timezone-aware")
    if trailing_days < 1:
        raise ValueError("trailing_days must be >= 1")
    run_day = logical_date.astimezone(PARIS).date()
    end = datetime(run_day.year, run_day.month, run_day.day, tzinfo=UTC)
    return IngestionWindow(logical_date=run_day, start=end - timedelta(days=trailing_days), end=end)


def run_key(run_id: str) -> str:
    return safe_table_suffix(run_id)


def _staging_prefix(settings: VelocastSettings, window: IngestionWindow, run_id: str) -> str:
    return f"{settings.staging_prefix}/{window.logical_date.isoformat()}/{run_key(run_id)}"


# --- 0. tables -------------------------------------------------------------------------------
def ensure_tables(settings: VelocastSettings) -> dict[str, str]:
    """Create the raw, quarantine and log tables when missing (Terraform does it in production)."""
    warehouse = Warehouse(settings)
    names = (contract.RAW_COUNTS, contract.QUARANTINE, contract.INGESTION_LOG)
    return {name: warehouse.ensure_table(contract.load_contract(name)) for name in names}


# --- 1. extract ------------------------------------------------------------------------------
def extract(window: IngestionWindow, run_id: str, settings: VelocastSettings) -> dict[str, Any]:
    started = time.time()
    storage = Storage(settings)
    with OpenDataClient(settings) as client, tempfile.TemporaryDirectory(prefix="velocast-extract-") as tmp:
        path = Path(tmp) / "raw.ndjson"
        summary = client.fetch_window_to_file(window.start, window.end, path)
        uri = storage.upload_file(path, f"{_staging_prefix(settings, window, run_id)}/raw.ndjson")
    log.info("fetched %s rows for %s → %s via %s", summary.rows, window.to_xcom(), uri, summary.endpoint)
    return {
        "raw_uri": uri,
        "rows_fetched": summary.rows,
        "endpoint": summary.endpoint,
        "fetch_seconds": summary.seconds,
        "started_at": started,
    }


# --- 2. transform ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformOutcome:
    clean_uri: str
    quarantine_uri: str
    rows_fetched: int
    rows_valid: int
    rows_quarantined: int
    duplicates_dropped: int
    rejected_share: float
    days_with_data: list[str]

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)


def read_ndjson_records(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_quarantine_frame(
    rejected: list[pd.DataFrame], window: IngestionWindow, run_id: str, now: datetime
) -> pd.DataFrame:
    frames = [frame[QUARANTINE_COLUMNS] for frame in rejected if len(frame)]
    quarantine = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    quarantine["counted_at"] = pd.to_datetime(quarantine["counted_at"], utc=True)
    quarantine["logical_date"] = window.logical_date
    quarantine["ingestion_run_id"] = run_id
    quarantine["window_start"] = window.start
    quarantine["window_end"] = window.end
    quarantine["quarantined_at"] = now
    return quarantine


def transform(
    window: IngestionWindow, raw_uri: str, run_id: str, settings: VelocastSettings
) -> TransformOutcome:
    storage = Storage(settings)
    now = datetime.now(UTC)
    prefix = _staging_prefix(settings, window, run_id)
    with tempfile.TemporaryDirectory(prefix="velocast-transform-") as tmp:
        raw_path = storage.download_file(raw_uri, Path(tmp) / "raw.ndjson")
        records = read_ndjson_records(raw_path)
        raw = records_to_frame(records)
        normalised = normalize(raw)
        # ``raw`` lets quarantined rows carry the record as received, not its normalised form.
        report = validate_counts(normalised.frame, window.start, window.end, settings, raw=raw)

        clean = report.valid.copy()
        clean["ingestion_run_id"] = run_id
        clean["ingested_at"] = now
        quarantine = build_quarantine_frame([normalised.rejected, report.quarantined], window, run_id, now)

        raw_contract = contract.load_contract(contract.RAW_COUNTS)
        quarantine_contract = contract.load_contract(contract.QUARANTINE)
        clean_uri = storage.upload_file(
            write_contract_parquet(clean, raw_contract, Path(tmp) / "clean.parquet"),
            f"{prefix}/clean.parquet",
        )
        quarantine_uri = storage.upload_file(
            write_contract_parquet(quarantine, quarantine_contract, Path(tmp) / "quarantine.parquet"),
            f"{prefix}/quarantine.parquet",
        )
    days = sorted({ts.date().isoformat() for ts in clean["counted_at"]})
    outcome = TransformOutcome(
        clean_uri=clean_uri,
        quarantine_uri=quarantine_uri,
        rows_fetched=len(records),
        rows_valid=len(clean),
        rows_quarantined=len(quarantine),
        duplicates_dropped=report.duplicates_dropped,
        rejected_share=rejected_share(len(records), len(quarantine)),
        days_with_data=days,
    )
    for result in report.expectation_results:
        log.info("expectation %s", result)
    log.info(
        "validated %s rows: %s valid, %s quarantined, %s duplicates dropped",
        outcome.rows_fetched,
        outcome.rows_valid,
        outcome.rows_quarantined,
        outcome.duplicates_dropped,
    )
    return outcome


# --- 3. load ---------------------------------------------------------------------------------
def _stage(
    warehouse: Warehouse, uri: str, table_contract: contract.TableContract, where: str, run_id: str
) -> tuple[tuple[str, str, str], int]:
    """Load ``uri`` into a run-scoped staging table; return its ``replace_rows`` triple and rows."""
    target = warehouse.table_id(table_contract)
    staging = _staging_table(warehouse, table_contract, run_id)
    rows = warehouse.load_parquet([uri], staging, table_contract, append=False)
    return (target, where, staging), rows


def _staging_table(warehouse: Warehouse, table_contract: contract.TableContract, run_id: str) -> str:
    return f"{warehouse.table_id(table_contract)}__staging_{run_key(run_id)}"


def _quarantine_partition(window: IngestionWindow) -> str:
    return f"logical_date = {date_literal(window.logical_date)}"


def load(
    window: IngestionWindow, outcome: TransformOutcome, run_id: str, settings: VelocastSettings
) -> dict[str, Any]:
    """Replace the window's days that have data, and the run's quarantine partition, atomically.

    Days for which the API returned nothing yet (publication lag) keep their current rows:
    replacing them with nothing would lose data.
    """
    warehouse = Warehouse(settings)
    raw_contract = contract.load_contract(contract.RAW_COUNTS)
    quarantine_contract = contract.load_contract(contract.QUARANTINE)
    replacements: list[tuple[str, str, str]] = []
    staged = 0
    try:
        quarantine, _ = _stage(
            warehouse, outcome.quarantine_uri, quarantine_contract, _quarantine_partition(window), run_id
        )
        replacements.append(quarantine)
        if outcome.days_with_data:
            days = ", ".join(date_literal(date.fromisoformat(day)) for day in outcome.days_with_data)
            where = (
                f"counted_at >= {timestamp_literal(window.start)}"
                f" AND counted_at < {timestamp_literal(window.end)}"
                f" AND DATE(counted_at) IN ({days})"
            )
            raw, staged = _stage(warehouse, outcome.clean_uri, raw_contract, where, run_id)
            replacements.insert(0, raw)
        warehouse.replace_rows(replacements)
    finally:
        # By name: a staging table may exist even when its load job failed half-way.
        for staged_contract in (raw_contract, quarantine_contract):
            warehouse.drop_table(_staging_table(warehouse, staged_contract, run_id))
    skipped = sorted({d.isoformat() for d in window.days} - set(outcome.days_with_data))
    if skipped:
        log.warning("no rows published yet for %s: their current rows are kept", skipped)
    log.info("replaced days %s of %s with %s rows", outcome.days_with_data, raw_contract.table, staged)
    return {
        "rows_loaded": staged,
        "days_replaced": outcome.days_with_data,
        "days_without_data": skipped,
    }


# --- 4. report -------------------------------------------------------------------------------
def log_row(
    window: IngestionWindow,
    run_id: str,
    status: Literal["success", "rejected"],
    outcome: TransformOutcome,
    extracted: dict[str, Any],
    rows_loaded: int,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "ingestion_run_id": run_id,
        "logical_date": window.logical_date,
        "window_start": window.start,
        "window_end": window.end,
        "status": status,
        "source_endpoint": extracted.get("endpoint"),
        "rows_fetched": outcome.rows_fetched,
        "rows_loaded": rows_loaded,
        "rows_quarantined": outcome.rows_quarantined,
        "duplicates_dropped": outcome.duplicates_dropped,
        "rejected_share": outcome.rejected_share,
        "fetch_seconds": float(extracted.get("fetch_seconds", 0.0)),
        "duration_seconds": now.timestamp() - float(extracted.get("started_at", now.timestamp())),
        "logged_at": now,
    }


def append_log_row(row: dict[str, Any], settings: VelocastSettings) -> None:
    log_contract = contract.load_contract(contract.INGESTION_LOG)
    storage = Storage(settings)
    warehouse = Warehouse(settings)
    object_name = f"{settings.staging_prefix}/log/{run_key(row['ingestion_run_id'])}-{time.time_ns()}.parquet"
    with tempfile.TemporaryDirectory(prefix="velocast-log-") as tmp:
        path = write_contract_parquet(pd.DataFrame([row]), log_contract, Path(tmp) / "log.parquet")
        uri = storage.upload_file(path, object_name)
    warehouse.load_parquet([uri], warehouse.table_id(log_contract), log_contract, append=True)
    storage.delete_prefix(object_name)


def record_run(
    window: IngestionWindow,
    run_id: str,
    status: Literal["success", "rejected"],
    outcome: TransformOutcome,
    extracted: dict[str, Any],
    rows_loaded: int,
    settings: VelocastSettings,
) -> dict[str, Any]:
    """The run's row in the ingestion log, and its metrics."""
    row = log_row(window, run_id, status, outcome, extracted, rows_loaded)
    append_log_row(row, settings)
    emit_metrics(row, settings)
    return row


def emit_metrics(row: dict[str, Any], settings: VelocastSettings) -> None:
    """Ingestion metrics through Airflow's statsd client (a no-op when metrics are off)."""
    from airflow.sdk.observability import stats

    prefix = f"{settings.metrics_prefix}.ingest"
    for key in ("rows_fetched", "rows_loaded", "rows_quarantined", "duplicates_dropped"):
        stats.incr(f"{prefix}.{key}", count=int(row[key]))
        stats.gauge(f"{prefix}.last_{key}", int(row[key]))
    stats.gauge(f"{prefix}.rejected_share", float(row["rejected_share"]))
    stats.timing(f"{prefix}.duration", timedelta(seconds=float(row["duration_seconds"])))
    stats.timing(f"{prefix}.fetch_duration", timedelta(seconds=float(row["fetch_seconds"])))
    stats.incr(f"{prefix}.runs.{row['status']}")


def enforce_rejected_share(
    window: IngestionWindow,
    outcome: TransformOutcome,
    extracted: dict[str, Any],
    run_id: str,
    settings: VelocastSettings,
) -> None:
    """Record a run whose rejected share is over the threshold, then fail it loudly.

    The quarantine partition is written so the rows can be inspected; the raw table is untouched.
    """
    try:
        check_rejected_share(
            outcome.rejected_share,
            settings,
            fetched=outcome.rows_fetched,
            quarantined=outcome.rows_quarantined,
        )
    except TooManyRejectedRowsError:
        warehouse = Warehouse(settings)
        quarantine_contract = contract.load_contract(contract.QUARANTINE)
        try:
            replacement, _ = _stage(
                warehouse, outcome.quarantine_uri, quarantine_contract, _quarantine_partition(window), run_id
            )
            warehouse.replace_rows([replacement])
        finally:
            warehouse.drop_table(_staging_table(warehouse, quarantine_contract, run_id))
        record_run(window, run_id, "rejected", outcome, extracted, 0, settings)
        raise


def report(
    window: IngestionWindow,
    outcome: TransformOutcome,
    extracted: dict[str, Any],
    rows_loaded: int,
    run_id: str,
    settings: VelocastSettings,
) -> dict[str, Any]:
    row = record_run(window, run_id, "success", outcome, extracted, rows_loaded, settings)
    Storage(settings).delete_prefix(_staging_prefix(settings, window, run_id) + "/")
    return {
        key: (value.isoformat() if isinstance(value, date | datetime) else value)
        for key, value in row.items()
    }
