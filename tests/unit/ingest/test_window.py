"""The ingestion window (``velocast.ingest.window``), and the contract Parquet and SQL it is loaded with."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from airflow.sdk.serde import deserialize, serialize

from velocast.contract import PARIS, QUARANTINE, RAW_COUNTS, load_contract
from velocast.data.sql import timestamp_literal
from velocast.gcp.warehouse import arrow_schema, safe_table_suffix, write_contract_parquet
from velocast.ingest.window import IngestionWindow, plan_window


def test_window_is_the_trailing_utc_days_before_the_paris_run_day() -> None:
    window = plan_window(datetime(2024, 1, 10, 2, tzinfo=PARIS), trailing_days=3)
    assert window.logical_date == date(2024, 1, 10)
    assert window.start == datetime(2024, 1, 7, tzinfo=UTC)
    assert window.end == datetime(2024, 1, 10, tzinfo=UTC)
    assert window.days == [date(2024, 1, 7), date(2024, 1, 8), date(2024, 1, 9)]


def test_window_uses_the_paris_date_of_a_utc_logical_date() -> None:
    # 23:30 UTC on the 9th is already the 10th in Paris.
    window = plan_window(datetime(2024, 1, 9, 23, 30, tzinfo=UTC), trailing_days=1)
    assert window.logical_date == date(2024, 1, 10)
    assert window.days == [date(2024, 1, 9)]


def test_window_across_the_spring_clock_change() -> None:
    window = plan_window(datetime(2024, 3, 31, 2, 0, tzinfo=UTC), trailing_days=2)
    assert window.days == [date(2024, 3, 29), date(2024, 3, 30)]
    assert (window.end - window.start).total_seconds() == 2 * 86400


def test_window_round_trips_through_xcom() -> None:
    """Through Airflow's own serde (what XCom uses), JSON in between as in the metadata database."""
    window = plan_window(datetime(2024, 1, 10, 1, tzinfo=UTC), trailing_days=3)
    back = deserialize(json.loads(json.dumps(serialize(window))))
    assert isinstance(back, IngestionWindow)
    assert back == window
    assert back.start.tzinfo is UTC and back.end.tzinfo is UTC  # not the pendulum zone serde gives back


def test_window_bounds_are_aware_and_stored_in_utc() -> None:
    paris_midnight = datetime(2024, 1, 10, tzinfo=PARIS)
    window = IngestionWindow(date(2024, 1, 10), paris_midnight - timedelta(days=1), paris_midnight)
    assert window.end == datetime(2024, 1, 9, 23, tzinfo=UTC) and window.end.tzinfo is UTC
    assert str(window) == "2024-01-08T23:00:00+00:00..2024-01-09T23:00:00+00:00 (run of 2024-01-10)"
    with pytest.raises(ValueError, match="timezone-aware"):
        IngestionWindow(date(2024, 1, 10), datetime(2024, 1, 9), datetime(2024, 1, 10, tzinfo=UTC))


@pytest.mark.parametrize("bad", [datetime(2024, 1, 10), None])
def test_window_rejects_naive_or_missing_dates(bad: datetime | None) -> None:
    with pytest.raises((ValueError, AttributeError)):
        plan_window(bad, 3)  # type: ignore[arg-type]


def test_window_rejects_non_positive_trailing_days() -> None:
    with pytest.raises(ValueError, match="trailing_days"):
        plan_window(datetime(2024, 1, 10, tzinfo=UTC), 0)


def test_contract_parquet_is_typed_by_the_contract(tmp_path) -> None:
    raw = load_contract(RAW_COUNTS)
    frame = pd.DataFrame(
        {
            "counter_id": ["a"],
            "counter_name": ["A N-S"],
            "site_id": ["1"],
            "site_name": ["A"],
            "counted_at": pd.to_datetime(["2024-01-01T00:00:00Z"]),
            "hourly_count": pd.array([3], dtype="Int64"),
            "latitude": [48.85],
            "longitude": [2.35],
            "installation_date": [None],
            "ingestion_run_id": ["r"],
            "ingested_at": pd.to_datetime(["2024-01-02T00:00:00Z"]),
        }
    )
    path = write_contract_parquet(frame, raw, tmp_path / "x.parquet")
    import pyarrow.parquet as pq

    assert pq.read_schema(path).remove_metadata() == arrow_schema(raw)


def test_contract_parquet_refuses_missing_columns(tmp_path) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        write_contract_parquet(
            pd.DataFrame({"reason": ["x"]}), load_contract(QUARANTINE), tmp_path / "q.parquet"
        )


def test_sql_literals_and_suffixes() -> None:
    assert timestamp_literal(datetime(2024, 1, 1, tzinfo=UTC)) == "TIMESTAMP '2024-01-01T00:00:00+00:00'"
    with pytest.raises(ValueError):
        timestamp_literal(datetime(2024, 1, 1))
    assert safe_table_suffix("scheduled__2024-01-01T01:00:00+00:00") == "scheduled__2024_01_01T01_00_00_00_00"
