"""The record of each run of DAG 1: its row in the ``ingestion_log`` table and its statsd metrics.

Every run that gets as far as a decision is recorded, whether it loaded (``success``) or was
refused for too many rejected rows (``rejected``). The exporter and the Grafana dashboard read the
table; the metrics go through Airflow's statsd client as ``<metrics_prefix>.ingest.*``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from velocast import contract
from velocast.gcp.storage import Storage
from velocast.gcp.warehouse import Warehouse, safe_table_suffix
from velocast.ingest.run import (
    ExtractOutcome,
    IngestionLogRow,
    IngestionRun,
    RunStatus,
    TransformOutcome,
)
from velocast.settings import VelocastSettings


def log_row(
    run: IngestionRun,
    status: RunStatus,
    extracted: ExtractOutcome,
    transformed: TransformOutcome,
    rows_loaded: int,
) -> IngestionLogRow:
    """The run's log row, its duration measured from the start of the extract."""
    now = datetime.now(UTC)
    return IngestionLogRow(
        ingestion_run_id=run.run_id,
        logical_date=run.window.logical_date,
        window_start=run.window.start,
        window_end=run.window.end,
        status=status,
        source_endpoint=extracted.endpoint,
        rows_fetched=transformed.rows_fetched,
        rows_loaded=rows_loaded,
        rows_quarantined=transformed.rows_quarantined,
        duplicates_dropped=transformed.duplicates_dropped,
        rejected_share=transformed.rejected_share,
        fetch_seconds=extracted.fetch_seconds,
        duration_seconds=(now - extracted.started_at).total_seconds(),
        logged_at=now,
    )


def append_log_row(row: Mapping[str, Any], settings: VelocastSettings) -> None:
    """Append one row (the table's columns by name) to ``ingestion_log`` through a staged Parquet file."""
    log_contract = contract.load_contract(contract.INGESTION_LOG)
    storage = Storage(settings)
    warehouse = Warehouse(settings)
    run_key = safe_table_suffix(str(row["ingestion_run_id"]))
    object_name = f"{settings.staging_prefix}/log/{run_key}-{time.time_ns()}.parquet"
    frame = pd.DataFrame([dict(row)])
    warehouse.load_frame(
        frame,
        log_contract,
        warehouse.table_id(log_contract),
        storage=storage,
        object_name=object_name,
        append=True,
    )
    storage.delete_prefix(object_name)


def emit_metrics(row: IngestionLogRow, settings: VelocastSettings) -> None:
    """Ingestion metrics through Airflow's statsd client (a no-op when metrics are off)."""
    from airflow.sdk.observability import stats

    prefix = f"{settings.metrics_prefix}.ingest"
    counts = {
        "rows_fetched": row.rows_fetched,
        "rows_loaded": row.rows_loaded,
        "rows_quarantined": row.rows_quarantined,
        "duplicates_dropped": row.duplicates_dropped,
    }
    for key, count in counts.items():
        stats.incr(f"{prefix}.{key}", count=count)
        stats.gauge(f"{prefix}.last_{key}", count)
    stats.gauge(f"{prefix}.rejected_share", row.rejected_share)
    stats.timing(f"{prefix}.duration", timedelta(seconds=row.duration_seconds))
    stats.timing(f"{prefix}.fetch_duration", timedelta(seconds=row.fetch_seconds))
    stats.incr(f"{prefix}.runs.{row.status}")


def record_run(
    run: IngestionRun,
    status: RunStatus,
    extracted: ExtractOutcome,
    transformed: TransformOutcome,
    rows_loaded: int,
) -> IngestionLogRow:
    """The run's row in the ingestion log, and its metrics."""
    row = log_row(run, status, extracted, transformed, rows_loaded)
    append_log_row(asdict(row), run.settings)
    emit_metrics(row, run.settings)
    return row


__all__ = ["append_log_row", "emit_metrics", "log_row", "record_run"]
