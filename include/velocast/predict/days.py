"""Paris local days as UTC instants: where a day starts, and its hours (23 or 25 on clock-change days).

Every stored instant is UTC, while the runs, the forecast days and the scored days are local Paris
days (``velocast.contract.PARIS``). A local day runs from its midnight to the next one; both
midnights exist in Paris (the clocks change at 02:00/03:00), so a day is always a half-open UTC
range, and its hours are that range in steps of one UTC hour: the spring day has 23, the autumn day
25 (the repeated 02:00 local hour is two distinct UTC instants).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from velocast.contract import PARIS

ONE_HOUR: Final = timedelta(hours=1)


def day_start(day: date) -> datetime:
    """Local midnight of ``day`` in Paris, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=PARIS).astimezone(UTC)


def day_range(day: date) -> tuple[datetime, datetime]:
    """The half-open UTC range ``[start, end)`` of the local day ``day``."""
    return day_start(day), day_start(day + timedelta(days=1))


def local_hours(day: date) -> list[datetime]:
    """The starts of every local hour of ``day``, as UTC instants in time order."""
    start, end = day_range(day)
    count = (end - start) // ONE_HOUR
    return [start + index * ONE_HOUR for index in range(count)]


def hours_in_day(day: date) -> int:
    """23, 24 or 25."""
    start, end = day_range(day)
    return (end - start) // ONE_HOUR


def local_day_of(moment: datetime) -> date:
    """The Paris day an aware instant falls in."""
    if moment.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return moment.astimezone(PARIS).date()


__all__ = ["ONE_HOUR", "day_range", "day_start", "hours_in_day", "local_day_of", "local_hours"]
