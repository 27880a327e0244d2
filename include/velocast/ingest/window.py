"""The window of UTC days a run of DAG 1 re-ingests, planned from the run's logical date.

The API publishes with a lag of 1–4 days, so each daily run re-ingests a trailing window: the
``trailing_days`` whole UTC days before the run's day in Paris. ``IngestionWindow`` is a flat frozen
dataclass of dates and datetimes, which Airflow's XCom serialises as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from velocast.contract import PARIS


@dataclass(frozen=True)
class IngestionWindow:
    """UTC days ``[start, end)`` re-ingested by the run of ``logical_date`` (a Paris date)."""

    logical_date: date
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        # One representation whatever built the window (XCom gives back pendulum time zones).
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))

    @property
    def days(self) -> list[date]:
        count = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).date() for i in range(count)]

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()} (run of {self.logical_date.isoformat()})"


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


__all__ = ["IngestionWindow", "plan_window"]
