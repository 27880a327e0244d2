"""DAG 2's SQL: the exact strings, and what they select, run on SQLite after a literal translation.

BigQuery's ``TIMESTAMP '…'`` / ``DATE '…'`` literals become plain ISO strings for SQLite, and the
tables hold ISO strings of UTC instants (one format, so text order is time order). The rest of the
SQL (backquoted ids, LEFT JOIN, COALESCE, COUNT(DISTINCT), UNION ALL) runs unchanged.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from velocast.predict.days import day_start, local_hours
from velocast.predict.queries import (
    active_counters_sql,
    actuals_sql,
    data_cutoff_sql,
    day_completeness_sql,
    predictions_for_day_sql,
)
from velocast.predict.scoring import complete_days

RAW = "project.raw.hourly_counts"
PREDICTIONS = "project.predictions.hourly_predictions"


def test_active_counters_sql_reads_the_14_days_before_d() -> None:
    assert active_counters_sql(RAW, date(2024, 3, 31)) == (
        "SELECT counter_id, MAX(counter_name) AS counter_name FROM `project.raw.hourly_counts` "
        "WHERE counted_at >= TIMESTAMP '2024-03-16T23:00:00+00:00' "
        "AND counted_at < TIMESTAMP '2024-03-30T23:00:00+00:00' GROUP BY counter_id ORDER BY counter_id"
    )


def test_data_cutoff_sql_reads_the_same_window() -> None:
    assert data_cutoff_sql(RAW, date(2024, 10, 27)) == (
        "SELECT MAX(counted_at) AS last_counted_at FROM `project.raw.hourly_counts` "
        "WHERE counted_at >= TIMESTAMP '2024-10-12T22:00:00+00:00' "
        "AND counted_at < TIMESTAMP '2024-10-26T22:00:00+00:00'"
    )


def test_actuals_sql_reads_one_local_day() -> None:
    assert actuals_sql(RAW, date(2024, 10, 27)) == (
        "SELECT counter_id, counted_at, hourly_count FROM `project.raw.hourly_counts` "
        "WHERE counted_at >= TIMESTAMP '2024-10-26T22:00:00+00:00' "
        "AND counted_at < TIMESTAMP '2024-10-27T23:00:00+00:00' ORDER BY counter_id, counted_at"
    )


def test_predictions_for_day_sql_reads_the_two_runs_that_forecast_it() -> None:
    assert predictions_for_day_sql(PREDICTIONS, date(2024, 3, 31)) == (
        "SELECT prediction_date, counter_id, predicted_for, predicted_count, model_type, model_run_id, "
        "model_version FROM `project.predictions.hourly_predictions` "
        "WHERE prediction_date >= DATE '2024-03-30' AND prediction_date <= DATE '2024-03-31' "
        "AND predicted_for >= TIMESTAMP '2024-03-30T23:00:00+00:00' "
        "AND predicted_for < TIMESTAMP '2024-03-31T22:00:00+00:00' "
        "ORDER BY counter_id, predicted_for, prediction_date"
    )


def test_day_completeness_sql_is_one_select_per_distinct_day() -> None:
    sql = day_completeness_sql(RAW, [date(2024, 3, 31), date(2024, 3, 30), date(2024, 3, 31)])
    parts = sql.split(" UNION ALL ")
    assert len(parts) == 2
    assert parts[0] == (
        "SELECT DATE '2024-03-30' AS scored_date, active.counter_id AS counter_id, "
        "COALESCE(present.hours, 0) AS hours "
        "FROM (SELECT DISTINCT counter_id FROM `project.raw.hourly_counts` "
        "WHERE counted_at >= TIMESTAMP '2024-03-15T23:00:00+00:00' "
        "AND counted_at < TIMESTAMP '2024-03-29T23:00:00+00:00') AS active "
        "LEFT JOIN (SELECT counter_id, COUNT(DISTINCT counted_at) AS hours FROM `project.raw.hourly_counts` "
        "WHERE counted_at >= TIMESTAMP '2024-03-29T23:00:00+00:00' "
        "AND counted_at < TIMESTAMP '2024-03-30T23:00:00+00:00' GROUP BY counter_id) AS present "
        "ON active.counter_id = present.counter_id"
    )
    assert "DATE '2024-03-31'" in parts[1]
    with pytest.raises(ValueError, match="no day"):
        day_completeness_sql(RAW, [])


@pytest.mark.parametrize("bad", ["raw", "p.d.t`; DROP TABLE x", ""])
def test_table_ids_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        active_counters_sql(bad, date(2024, 3, 31))


# --- the same SQL run on SQLite ------------------------------------------------------------------


def _sqlite(sql: str) -> str:
    return re.sub(r"\b(?:TIMESTAMP|DATE) '([^']*)'", r"'\1'", sql)


@pytest.fixture
def raw() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.execute(
        f"CREATE TABLE `{RAW}` (counter_id TEXT, counter_name TEXT, counted_at TEXT, hourly_count INT)"
    )
    yield connection
    connection.close()


def _insert(
    connection: sqlite3.Connection, counter_id: str, hours: list[datetime], name: str | None = None
) -> None:
    connection.executemany(
        f"INSERT INTO `{RAW}` VALUES (?, ?, ?, ?)",
        [(counter_id, name, hour.isoformat(), 1) for hour in hours],
    )


def test_the_completeness_rule_on_a_clock_change_week(raw: sqlite3.Connection) -> None:
    spring = date(2024, 3, 31)
    days = [spring - timedelta(days=1), spring, spring + timedelta(days=1)]
    # Two counters seen in the fortnight before; a third one only appears on the spring day.
    for counter_id in ("a", "b"):
        _insert(raw, counter_id, [day_start(spring - timedelta(days=10))])
    _insert(raw, "a", [hour for day in days for hour in local_hours(day)])
    _insert(raw, "b", local_hours(days[0]) + local_hours(spring) + local_hours(days[2])[:-1])
    _insert(raw, "new", local_hours(spring)[:5])
    rows = raw.execute(_sqlite(day_completeness_sql(RAW, days))).fetchall()
    found = {(row[0], row[1]): row[2] for row in rows}
    assert found[("2024-03-31", "a")] == 23
    assert found[("2024-04-01", "b")] == 23  # one hour short of 24
    assert ("2024-03-31", "new") not in found  # not active for that day: not forecast for it either
    records = [{"scored_date": row[0], "counter_id": row[1], "hours": row[2]} for row in rows]
    assert complete_days(records) == [date(2024, 3, 30), date(2024, 3, 31)]


def test_a_silent_active_counter_has_zero_hours(raw: sqlite3.Connection) -> None:
    day = date(2024, 6, 1)
    _insert(raw, "a", [day_start(day) - timedelta(days=3), *local_hours(day)])
    _insert(raw, "quiet", [day_start(day) - timedelta(days=2)])
    rows = raw.execute(_sqlite(day_completeness_sql(RAW, [day]))).fetchall()
    assert sorted(rows) == [("2024-06-01", "a", 24), ("2024-06-01", "quiet", 0)]
    assert complete_days([{"scored_date": r[0], "counter_id": r[1], "hours": r[2]} for r in rows]) == []


def test_active_counters_and_cutoff_ignore_the_run_day_and_older_data(raw: sqlite3.Connection) -> None:
    run_day = date(2024, 6, 15)
    start = day_start(run_day)
    _insert(raw, "old", [start - timedelta(days=15)])
    _insert(raw, "b", [start - timedelta(days=14)], name="B")
    _insert(raw, "a", [start - timedelta(hours=5)], name="A")
    _insert(raw, "today", [start, start + timedelta(hours=3)])
    assert raw.execute(_sqlite(active_counters_sql(RAW, run_day))).fetchall() == [("a", "A"), ("b", "B")]
    (last,) = raw.execute(_sqlite(data_cutoff_sql(RAW, run_day))).fetchone()
    assert datetime.fromisoformat(last) == start - timedelta(hours=5)
    assert datetime.fromisoformat(last).tzinfo == UTC
