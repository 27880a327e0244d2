"""The forecast grid of a DAG 2 run: every active counter × every local hour of the run's day and the next.

For the run's Paris day ``D``, the grid holds one row per active counter (seen in the raw table
during the 14 days before ``D``, ``queries.active_counters_sql``) and per local hour of ``D`` and
``D + 1``, as UTC instants: 23 or 25 hours on clock-change days, the repeated autumn hour twice.
Each row carries its horizon: whole hours from the data cut-off (the end of the last complete UTC
hour in the raw table before ``D``, ``data_cutoff``) to the start of the predicted hour, so ``0`` is
the hour right after the cut-off. The records are the sidecar's normalized shape (``counter_id``,
``counted_at`` as ISO 8601 with its offset, ``counter_name`` when known); the sidecar package itself
is not imported (the DAG side talks to it over HTTP).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from velocast.errors import NotFoundError
from velocast.predict.days import ONE_HOUR, day_start, local_hours

# D and D + 1.
FORECAST_DAYS: Final = 2
# "Active" counters and the data cut-off are read from the raw table over the days before D.
ACTIVE_LOOKBACK_DAYS: Final = 14


class NoRecentCountsError(NotFoundError):
    """The raw table holds no count in the days before the run's day: nothing to forecast from."""


@dataclass(frozen=True)
class ActiveCounter:
    counter_id: str
    counter_name: str | None = None


@dataclass(frozen=True)
class GridRow:
    """One forecast to ask for: a counter and a UTC hour of the run's day or the next."""

    counter_id: str
    counter_name: str | None
    predicted_for: datetime
    forecast_day: date
    horizon_hours: int

    def record(self) -> dict[str, str]:
        """The sidecar's normalized record (``NormalizedRecord``) for this row."""
        record = {"counter_id": self.counter_id, "counted_at": self.predicted_for.isoformat()}
        if self.counter_name is not None:
            record["counter_name"] = self.counter_name
        return record


@dataclass(frozen=True)
class ForecastGrid:
    run_day: date
    data_cutoff: datetime
    rows: tuple[GridRow, ...]

    def records(self) -> list[dict[str, str]]:
        """The ``POST /predict`` records, in the order of ``rows``."""
        return [row.record() for row in self.rows]

    @property
    def counter_ids(self) -> list[str]:
        return list(dict.fromkeys(row.counter_id for row in self.rows))


def lookback_start(run_day: date) -> date:
    """The first day of the window that defines the active counters and the data cut-off."""
    return run_day - timedelta(days=ACTIVE_LOOKBACK_DAYS)


def data_cutoff(last_counted_at: datetime | None, run_day: date) -> datetime:
    """The end of the last complete UTC hour in the raw table: its latest ``counted_at`` + 1 hour.

    ``last_counted_at`` is what ``queries.data_cutoff_sql`` returns for ``run_day`` (None when the
    raw table has no row in the lookback window, an error: nothing to forecast from).
    """
    if last_counted_at is None:
        raise NoRecentCountsError(
            f"the raw table has no count from {lookback_start(run_day).isoformat()} to "
            f"{run_day.isoformat()} (Europe/Paris): run ingest_bike_counts for those days first"
        )
    if last_counted_at.tzinfo is None:
        raise ValueError("last_counted_at must be timezone-aware")
    cutoff = last_counted_at.astimezone(UTC) + ONE_HOUR
    _check_whole_hour(cutoff)
    return cutoff


def _check_whole_hour(moment: datetime) -> None:
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise ValueError(f"the data cut-off must fall on a whole UTC hour: {moment.isoformat()}")


def forecast_days(run_day: date) -> list[date]:
    return [run_day + timedelta(days=offset) for offset in range(FORECAST_DAYS)]


def forecast_hours(run_day: date) -> list[tuple[date, datetime]]:
    """Every local hour of ``D`` and ``D + 1`` as (local day, UTC start), in time order."""
    return [(day, hour) for day in forecast_days(run_day) for hour in local_hours(day)]


def build_grid(run_day: date, counters: Sequence[ActiveCounter], cutoff: datetime) -> ForecastGrid:
    """The grid of ``run_day``: ``counters`` × ``forecast_hours(run_day)``, counter by counter.

    ``cutoff`` (``data_cutoff``) must be aware, on a whole hour and no later than the start of
    ``run_day``: a run forecasts from the days before its own, so every horizon is ``>= 0`` and a
    backfill computes the same grid as the daily run did.
    """
    if not counters:
        raise NoRecentCountsError(
            f"no active counter for {run_day.isoformat()}: none was seen in the raw table during the "
            f"{ACTIVE_LOOKBACK_DAYS} days before it"
        )
    listed = Counter(counter.counter_id for counter in counters)
    duplicates = sorted(counter_id for counter_id, times in listed.items() if times > 1)
    if duplicates:
        raise ValueError(f"counters listed more than once: {duplicates}")
    if cutoff.tzinfo is None:
        raise ValueError("the data cut-off must be timezone-aware")
    cutoff = cutoff.astimezone(UTC)
    _check_whole_hour(cutoff)
    if cutoff > day_start(run_day):
        raise ValueError(
            f"the data cut-off {cutoff.isoformat()} is after the start of {run_day.isoformat()} "
            f"({day_start(run_day).isoformat()}): a run forecasts from the days before its own"
        )
    hours = forecast_hours(run_day)
    rows = tuple(
        GridRow(
            counter_id=counter.counter_id,
            counter_name=counter.counter_name,
            predicted_for=hour,
            forecast_day=day,
            horizon_hours=(hour - cutoff) // ONE_HOUR,
        )
        for counter in counters
        for day, hour in hours
    )
    return ForecastGrid(run_day=run_day, data_cutoff=cutoff, rows=rows)


__all__ = [
    "ACTIVE_LOOKBACK_DAYS",
    "FORECAST_DAYS",
    "ActiveCounter",
    "ForecastGrid",
    "GridRow",
    "NoRecentCountsError",
    "build_grid",
    "data_cutoff",
    "forecast_days",
    "forecast_hours",
    "lookback_start",
]
