"""The BigQuery SQL of DAG 2, built from Python values with ``velocast.data.sql``.

Every range is a local Paris day turned into its UTC bounds here (``days.day_range``), so the SQL
filters the partition column directly (``counted_at`` of the raw table, ``prediction_date`` of the
predictions) and never converts time zones in the warehouse (the local emulator need not know
them). What the rows mean is decided in Python: ``grid`` builds the forecast grid from the first
two queries, ``scoring`` judges completeness and scores from the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from velocast.data.sql import date_literal, table_ref, time_range
from velocast.predict.days import day_range, day_start
from velocast.predict.grid import FORECAST_DAYS, lookback_start

# The raw table's time column (velocast.contract hourly_counts).
COUNTED_AT = "counted_at"


def _lookback_range(run_day: date) -> str:
    return time_range(COUNTED_AT, day_start(lookback_start(run_day)), day_start(run_day))


def active_counters_sql(raw_table_id: str, run_day: date) -> str:
    """Counters seen in the raw table during the 14 days before ``run_day``: ``counter_id``, ``counter_name``.

    ``MAX(counter_name)``: one name per counter, deterministic if the City renamed it meanwhile.
    """
    return (
        f"SELECT counter_id, MAX(counter_name) AS counter_name FROM {table_ref(raw_table_id)} "
        f"WHERE {_lookback_range(run_day)} GROUP BY counter_id ORDER BY counter_id"
    )


def data_cutoff_sql(raw_table_id: str, run_day: date) -> str:
    """The latest ``counted_at`` before ``run_day`` in the same window (``last_counted_at``, NULL if none).

    Bounded by the start of ``run_day``, so a backfill reads the cut-off the daily run would have
    read; ``grid.data_cutoff`` turns it into the end of that hour.
    """
    return (
        f"SELECT MAX({COUNTED_AT}) AS last_counted_at FROM {table_ref(raw_table_id)} "
        f"WHERE {_lookback_range(run_day)}"
    )


def _day_completeness_select(table: str, day: date) -> str:
    active = time_range(COUNTED_AT, day_start(lookback_start(day)), day_start(day))
    present = time_range(COUNTED_AT, *day_range(day))
    return (
        f"SELECT {date_literal(day)} AS scored_date, active.counter_id AS counter_id, "
        "COALESCE(present.hours, 0) AS hours "
        f"FROM (SELECT DISTINCT counter_id FROM {table} WHERE {active}) AS active "
        f"LEFT JOIN (SELECT counter_id, COUNT(DISTINCT {COUNTED_AT}) AS hours FROM {table} "
        f"WHERE {present} GROUP BY counter_id) AS present "
        "ON active.counter_id = present.counter_id"
    )


def day_completeness_sql(raw_table_id: str, days: Sequence[date]) -> str:
    """Per day of ``days`` and per counter active for it: the local hours of that day in the raw table.

    Rows ``scored_date``, ``counter_id``, ``hours`` (0 for an active counter silent that day); a
    counter is active for a day when it was seen during the 14 days before it (the grid's rule, so
    these are the counters the day was forecast for). ``scoring.complete_days`` applies the rule.
    """
    if not days:
        raise ValueError("no day to check")
    table = table_ref(raw_table_id)
    return " UNION ALL ".join(_day_completeness_select(table, day) for day in sorted(set(days)))


def actuals_sql(raw_table_id: str, day: date) -> str:
    """The counts of the local day ``day``: ``counter_id``, ``counted_at``, ``hourly_count``.

    Run it for the scored day and for the day a week earlier (the baseline's source).
    """
    return (
        f"SELECT counter_id, {COUNTED_AT}, hourly_count FROM {table_ref(raw_table_id)} "
        f"WHERE {time_range(COUNTED_AT, *day_range(day))} ORDER BY counter_id, {COUNTED_AT}"
    )


def predictions_for_day_sql(predictions_table_id: str, day: date) -> str:
    """Every forecast made for the local day ``day``, by the runs of ``day - 1`` (its ``D + 1``) and ``day``.

    ``scoring.forecasts_of_record`` keeps one per counter and hour.
    """
    first_run = day - timedelta(days=FORECAST_DAYS - 1)
    return (
        "SELECT prediction_date, counter_id, predicted_for, predicted_count, model_type, model_run_id, "
        f"model_version FROM {table_ref(predictions_table_id)} "
        f"WHERE prediction_date >= {date_literal(first_run)} AND prediction_date <= {date_literal(day)} "
        f"AND {time_range('predicted_for', *day_range(day))} "
        "ORDER BY counter_id, predicted_for, prediction_date"
    )


__all__ = [
    "active_counters_sql",
    "actuals_sql",
    "data_cutoff_sql",
    "day_completeness_sql",
    "predictions_for_day_sql",
]
