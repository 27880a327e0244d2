"""The run's log row and metrics (``velocast.ingest.runlog``), without the warehouse.

Appending the row to BigQuery runs in the DAG tests and in the exporter's stack test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk.observability import stats

from velocast.ingest import runlog
from velocast.ingest.run import ExtractOutcome, IngestionRun, TransformOutcome
from velocast.ingest.window import plan_window
from velocast.settings import VelocastSettings

WINDOW = plan_window(datetime(2024, 1, 10, 1, tzinfo=UTC), trailing_days=3)
TRANSFORMED = TransformOutcome(
    clean_uri="gs://b/clean.parquet",
    quarantine_uri="gs://b/quarantine.parquet",
    rows_fetched=200,
    rows_valid=180,
    rows_quarantined=20,
    duplicates_dropped=3,
    rejected_share=0.1,
    days_with_data=(date(2024, 1, 7),),
)


def test_log_row_describes_the_run(settings: VelocastSettings) -> None:
    started = datetime.now(UTC) - timedelta(seconds=30)
    extracted = ExtractOutcome("gs://b/raw.ndjson", 200, "records", 4.5, started)
    row = runlog.log_row(IngestionRun(WINDOW, "manual__1", settings), "rejected", extracted, TRANSFORMED, 0)
    assert (row.ingestion_run_id, row.logical_date, row.window_start, row.window_end) == (
        "manual__1",
        WINDOW.logical_date,
        WINDOW.start,
        WINDOW.end,
    )
    assert (row.status, row.source_endpoint) == ("rejected", "records")
    assert (row.rows_fetched, row.rows_loaded) == (200, 0)
    assert (row.rows_quarantined, row.duplicates_dropped, row.rejected_share) == (20, 3, 0.1)
    assert row.fetch_seconds == 4.5
    assert 30 <= row.duration_seconds < 60  # from the start of the extract
    assert row.logged_at - started == timedelta(seconds=row.duration_seconds)


def test_metrics_are_counts_gauges_and_timings(
    settings: VelocastSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str, Any]] = []
    monkeypatch.setattr(stats, "incr", lambda name, count=1, **_: sent.append(("incr", name, count)))
    monkeypatch.setattr(stats, "gauge", lambda name, value, **_: sent.append(("gauge", name, value)))
    monkeypatch.setattr(stats, "timing", lambda name, value, **_: sent.append(("timing", name, value)))
    extracted = ExtractOutcome("gs://b/raw.ndjson", 200, "exports", 2.0, datetime.now(UTC))
    row = runlog.log_row(IngestionRun(WINDOW, "manual__1", settings), "success", extracted, TRANSFORMED, 180)

    runlog.emit_metrics(row, settings.model_copy(update={"metrics_prefix": "velocast"}))

    assert ("incr", "velocast.ingest.rows_loaded", 180) in sent
    assert ("gauge", "velocast.ingest.last_rows_quarantined", 20) in sent
    assert ("gauge", "velocast.ingest.rejected_share", 0.1) in sent
    assert ("timing", "velocast.ingest.fetch_duration", timedelta(seconds=2)) in sent
    assert ("incr", "velocast.ingest.runs.success", 1) in sent
    assert len(sent) == 4 * 2 + 1 + 2 + 1
