"""BigQuery SQL pieces: literals and table references."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from velocast.data.sql import date_literal, table_ref, time_range, timestamp_literal


def test_timestamp_literal_keeps_the_offset() -> None:
    assert (
        timestamp_literal(datetime(2024, 3, 31, 2, 5, tzinfo=UTC)) == "TIMESTAMP '2024-03-31T02:05:00+00:00'"
    )
    paris = timezone(timedelta(hours=2))
    assert (
        timestamp_literal(datetime(2024, 3, 31, 4, 5, tzinfo=paris))
        == "TIMESTAMP '2024-03-31T04:05:00+02:00'"
    )


def test_timestamp_literal_refuses_a_naive_moment() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        timestamp_literal(datetime(2024, 3, 31, 2, 5))


def test_date_literal() -> None:
    assert date_literal(date(2024, 3, 4)) == "DATE '2024-03-04'"


@pytest.mark.parametrize(
    "table_id", ["velocast-local.bike_traffic_raw.ingestion_log", "audit.model_decisions"]
)
def test_table_ref_quotes_the_whole_path(table_id: str) -> None:
    assert table_ref(table_id) == f"`{table_id}`"


@pytest.mark.parametrize(
    "table_id",
    [
        "ingestion_log",  # no dataset
        "a.b.c.d",
        "project..table",
        "project.dataset. ",
        "",
        "project.dataset.t` WHERE FALSE --",
        "project.dataset.t\\`",
        "project.dataset.t\nDROP",
    ],
)
def test_table_ref_refuses_what_it_cannot_quote(table_id: str) -> None:
    with pytest.raises(ValueError):
        table_ref(table_id)


def test_time_range_is_half_open() -> None:
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    assert time_range("counted_at", start, end) == (
        "counted_at >= TIMESTAMP '2024-01-01T00:00:00+00:00'"
        " AND counted_at < TIMESTAMP '2024-01-02T00:00:00+00:00'"
    )
    with pytest.raises(ValueError, match="before it starts"):
        time_range("counted_at", end, start)
