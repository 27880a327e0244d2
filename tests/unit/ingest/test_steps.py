"""The pure parts of the DAG 1 steps (``velocast.ingest.steps``): names, the quarantine frame, SQL.

The steps' I/O (the API, GCS, BigQuery) runs in ``tests/dags/test_ingest_bike_counts.py``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from velocast import contract
from velocast.ingest import steps
from velocast.ingest.run import IngestionRun
from velocast.ingest.window import plan_window
from velocast.settings import VelocastSettings

WINDOW = plan_window(datetime(2024, 1, 10, 1, tzinfo=UTC), trailing_days=3)
RUN_ID = "scheduled__2024-01-10T01:00:00+00:00"


def make_run(settings: VelocastSettings) -> IngestionRun:
    return IngestionRun(WINDOW, RUN_ID, settings.model_copy(update={"staging_prefix": "staging/ingest"}))


def test_staged_files_are_named_by_logical_date_and_run(settings: VelocastSettings) -> None:
    run = make_run(settings)
    assert steps.run_key(run) == "scheduled__2024_01_10T01_00_00_00_00"
    assert steps.staging_prefix(run) == "staging/ingest/2024-01-10/scheduled__2024_01_10T01_00_00_00_00"


def test_ndjson_records_skip_blank_lines(tmp_path) -> None:
    path = tmp_path / "raw.ndjson"
    path.write_text('{"a": 1}\n\n{"a": "É"}\n', encoding="utf-8")
    assert steps.read_ndjson_records(path) == [{"a": 1}, {"a": "É"}]


def rejected_rows(reason: str, count: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "raw_record": ['{"id": 1}'] * count,
            "reason": [reason] * count,
            "counter_id": ["c1"] * count,
            "counted_at": ["2024-01-08T10:00:00Z"] * count,
            "extra": ["dropped"] * count,
        }
    )


def test_quarantine_frame_has_the_rejected_rows_and_the_run() -> None:
    now = datetime(2024, 1, 10, 1, 5, tzinfo=UTC)
    frame = steps.build_quarantine_frame(
        [rejected_rows("unparseable date", 2), rejected_rows("x", 0), rejected_rows("negative", 1)],
        WINDOW,
        RUN_ID,
        now,
    )
    assert list(frame.columns) == [
        *contract.REJECTED_ROW_COLUMNS,
        "logical_date",
        "ingestion_run_id",
        "window_start",
        "window_end",
        "quarantined_at",
    ]
    assert set(frame.columns) == set(contract.load_contract(contract.QUARANTINE).column_names)
    assert list(frame.reason) == ["unparseable date", "unparseable date", "negative"]
    assert str(frame.counted_at.dtype) == "datetime64[ns, UTC]"
    assert set(frame.logical_date) == {date(2024, 1, 10)} and set(frame.ingestion_run_id) == {RUN_ID}


def test_quarantine_frame_of_nothing_keeps_its_columns() -> None:
    frame = steps.build_quarantine_frame([], WINDOW, RUN_ID, datetime(2024, 1, 10, tzinfo=UTC))
    assert len(frame) == 0
    assert set(contract.REJECTED_ROW_COLUMNS) <= set(frame.columns)


def test_load_replaces_the_days_with_data_within_the_window(settings: VelocastSettings) -> None:
    run = make_run(settings)
    assert steps._replaced_days(run, (date(2024, 1, 7), date(2024, 1, 9))) == (
        "counted_at >= TIMESTAMP '2024-01-07T00:00:00+00:00'"
        " AND counted_at < TIMESTAMP '2024-01-10T00:00:00+00:00'"
        " AND DATE(counted_at) IN (DATE '2024-01-07', DATE '2024-01-09')"
    )
    assert steps._quarantine_partition(run) == "logical_date = DATE '2024-01-10'"
