"""The calendar of Paris as tables: local clock per UTC hour, day features per local day.

Everything here is computed once per year and memoised for the life of the process, so that the
features of a row cost a few array look-ups instead of a time-zone conversion and holiday
look-ups per call (a one-row forecast used to spend ~6 ms there; a year of rows, ~1 s):

* ``local_clock``: UTC epoch nanoseconds → Europe/Paris wall-clock hour and local day. The UTC
  offset of every hour of a UTC year is one table (8,784 entries) built with pandas' time-zone
  rules; Paris has changed its offset only on whole UTC hours since 1945 (DST starts and ends at
  01:00 UTC), so the offset of an hour is the offset of every instant in it.
* ``day_features``: the features of local days (``DAY_FEATURES``), from one table per local year
  built by ``_day_features`` for the whole year. A day's features depend on that day only (its
  neighbours are looked up in the padded holiday list), so the table's rows are the values a
  direct computation would give.

The memo dictionaries are filled at most once per year (a race computes a year twice and keeps
either copy: both are equal), and read without locks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import holidays
import numpy as np
import pandas as pd
from vacances_scolaires_france import SchoolHolidayDates

from velocast.contract import PARIS_TZ

SCHOOL_ZONE: Final = "C"  # Paris
# Days to/from a public holiday are capped: beyond a week they only restate the date.
MAX_HOLIDAY_DISTANCE_DAYS: Final = 7

# Features of the local day, computed once per distinct day.
DAY_FEATURES: Final[tuple[str, ...]] = (
    "weekday",
    "month",
    "day_of_year",
    "is_weekend",
    "is_public_holiday",
    "is_school_holiday",
    "is_bridge_day",
    "is_day_off",
    "days_to_public_holiday",
    "days_from_public_holiday",
)
# Not a feature: whether the school holiday table covers the day (see ``school_calendar``).
SCHOOL_UNKNOWN: Final = "school_unknown"

NS_PER_SECOND: Final = 1_000_000_000
SECONDS_PER_HOUR: Final = 3_600
SECONDS_PER_DAY: Final = 86_400


# --------------------------------------------------------------------------------------------
# Holidays
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchoolCalendar:
    """Zone C school holiday days, and the span of days the package's table knows about."""

    holiday_days: np.ndarray  # datetime64[D], sorted
    known_from: np.datetime64
    known_until: np.datetime64


@lru_cache(maxsize=1)
def school_calendar() -> SchoolCalendar:
    """Read the package's table once (it parses a ~14 k-line CSV)."""
    table = SchoolHolidayDates()
    # ``data`` only holds days when some zone is on holiday: its last day is the end of what is
    # known; after it the table says "no holiday" because the dates were not published yet.
    known = sorted(table.data)
    zone_key = table.zone_key(SCHOOL_ZONE)
    days = [day for day in known if table.data[day][zone_key]]
    return SchoolCalendar(
        holiday_days=np.array(days, dtype="datetime64[D]"),
        known_from=np.datetime64(known[0], "D"),
        known_until=np.datetime64(known[-1], "D"),
    )


def public_holidays(years: Iterable[int]) -> np.ndarray:
    """French (metropolitan) public holidays of these years, sorted, as datetime64[D]."""
    calendar = holidays.country_holidays("FR", years=sorted(set(years)))
    return np.array(sorted(calendar.keys()), dtype="datetime64[D]")


# --------------------------------------------------------------------------------------------
# The local clock
# --------------------------------------------------------------------------------------------

_UTC_OFFSETS: dict[int, np.ndarray] = {}  # UTC year → offset (s) of each of its UTC hours


def _utc_offsets(year: int) -> np.ndarray:
    offsets = _UTC_OFFSETS.get(year)
    if offsets is None:
        start = pd.Timestamp(year=year, month=1, day=1, tz="UTC")
        hours = pd.date_range(start, start + pd.DateOffset(years=1), freq="h", inclusive="left")
        local = hours.tz_convert(PARIS_TZ).tz_localize(None)
        offsets = ((local - hours.tz_localize(None)) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
        _UTC_OFFSETS[year] = offsets
    return offsets


def local_clock(utc_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Europe/Paris wall-clock hour (int8) and local day (int64, days since 1970-01-01).

    ``utc_ns``: int64 nanoseconds since the epoch (UTC), no missing values.
    """
    seconds = np.floor_divide(utc_ns, NS_PER_SECOND)
    utc_hours = np.floor_divide(seconds, SECONDS_PER_HOUR)
    years = utc_hours.astype("datetime64[h]").astype("datetime64[Y]").astype(np.int64) + 1970
    offsets = np.empty(len(seconds), dtype=np.int64)
    first, last = (int(years.min()), int(years.max())) if len(years) else (0, -1)
    for year in range(first, last + 1):
        in_year = years == year if first != last else slice(None)
        table = _utc_offsets(year)
        year_start = np.datetime64(year - 1970, "Y").astype("datetime64[h]").astype(np.int64)
        hour_of_year = utc_hours[in_year] - year_start
        offsets[in_year] = table[hour_of_year]
    local_seconds = seconds + offsets
    hour = (np.floor_divide(local_seconds, SECONDS_PER_HOUR) % 24).astype(np.int8)
    local_day = np.floor_divide(local_seconds, SECONDS_PER_DAY)
    return hour, local_day


# --------------------------------------------------------------------------------------------
# Day features
# --------------------------------------------------------------------------------------------

_DAY_TABLES: dict[int, dict[str, np.ndarray]] = {}  # local year → its days' features
_DTYPES: Final[dict[str, type]] = {"day_of_year": np.int16, SCHOOL_UNKNOWN: np.bool_}  # else int8


def _year_table(year: int) -> dict[str, np.ndarray]:
    table = _DAY_TABLES.get(year)
    if table is None:
        first = np.datetime64(f"{year:04d}-01-01", "D")
        days = np.arange(first, np.datetime64(f"{year + 1:04d}-01-01", "D"))
        table = _day_features(days)
        _DAY_TABLES[year] = table
    return table


def day_features(local_days: np.ndarray) -> dict[str, np.ndarray]:
    """``DAY_FEATURES`` and ``SCHOOL_UNKNOWN`` of each local day (int64 days since the epoch)."""
    dates = local_days.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]")
    day_of_year = (dates - years.astype("datetime64[D]")).astype(np.int64)
    year_numbers = years.astype(np.int64) + 1970
    names = (*DAY_FEATURES, SCHOOL_UNKNOWN)
    if len(local_days) and year_numbers.min() == year_numbers.max():  # the usual case: one year
        table = _year_table(int(year_numbers[0]))
        return {name: table[name][day_of_year] for name in names}
    out: dict[str, np.ndarray] = {
        name: np.empty(len(local_days), dtype=_DTYPES.get(name, np.int8)) for name in names
    }
    for year in np.unique(year_numbers).tolist():
        in_year = year_numbers == year
        table = _year_table(int(year))
        for name in names:
            out[name][in_year] = table[name][day_of_year[in_year]]
    return out


def _day_features(days: np.ndarray) -> dict[str, np.ndarray]:
    """Features of each distinct local day (``days``: sorted datetime64[D])."""
    if days.size == 0:
        empty = np.array([], dtype=np.int8)
        return {name: empty for name in (*DAY_FEATURES, SCHOOL_UNKNOWN)}
    stamps = pd.DatetimeIndex(days)
    weekday = stamps.dayofweek.to_numpy()
    is_weekend = weekday >= 5

    # Neighbouring years too, so that the distance to the nearest holiday crosses New Year.
    years = range(int(stamps.year.min()) - 1, int(stamps.year.max()) + 2)
    holiday_days = public_holidays(years)
    if holiday_days.size == 0:  # no year the ``holidays`` package covers: no holiday to be near
        holiday_days = np.array(["1970-01-01"], dtype="datetime64[D]")
    is_holiday = np.isin(days, holiday_days)
    # Indices of the next/previous holiday; the year padding makes both exist, except where the
    # ``holidays`` package stops (after 2100): there the distance is "more than a week".
    next_index = np.searchsorted(holiday_days, days, side="left")
    prev_index = np.searchsorted(holiday_days, days, side="right") - 1
    far = MAX_HOLIDAY_DISTANCE_DAYS
    last = max(len(holiday_days) - 1, 0)
    days_to = np.where(
        next_index < len(holiday_days),
        (holiday_days[np.minimum(next_index, last)] - days).astype(np.int64),
        far,
    )
    days_from = np.where(
        prev_index >= 0, (days - holiday_days[np.maximum(prev_index, 0)]).astype(np.int64), far
    )

    off = is_weekend | is_holiday
    one_day = np.timedelta64(1, "D")
    off_before = _is_off(days - one_day, holiday_days)
    off_after = _is_off(days + one_day, holiday_days)
    is_bridge = ~off & off_before & off_after

    school = school_calendar()
    school_unknown = (days < school.known_from) | (days > school.known_until)
    is_school = np.isin(days, school.holiday_days) & ~school_unknown

    return {
        "weekday": weekday.astype(np.int8),
        "month": stamps.month.to_numpy().astype(np.int8),
        "day_of_year": stamps.dayofyear.to_numpy().astype(np.int16),
        "is_weekend": is_weekend.astype(np.int8),
        "is_public_holiday": is_holiday.astype(np.int8),
        "is_school_holiday": is_school.astype(np.int8),
        "is_bridge_day": is_bridge.astype(np.int8),
        "is_day_off": off.astype(np.int8),
        "days_to_public_holiday": np.minimum(days_to, MAX_HOLIDAY_DISTANCE_DAYS).astype(np.int8),
        "days_from_public_holiday": np.minimum(days_from, MAX_HOLIDAY_DISTANCE_DAYS).astype(np.int8),
        SCHOOL_UNKNOWN: school_unknown,
    }


def _is_off(days: np.ndarray, holiday_days: np.ndarray) -> np.ndarray:
    weekday = pd.DatetimeIndex(days).dayofweek.to_numpy()
    result: np.ndarray = (weekday >= 5) | np.isin(days, holiday_days)
    return result


def utc_nanoseconds(counted_at: pd.Series) -> np.ndarray:
    """Int64 nanoseconds since the epoch (UTC) of a tz-aware datetime column without nulls."""
    if not isinstance(counted_at.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"counted_at must be a tz-aware datetime column, got {counted_at.dtype}")
    # ``.values`` of tz-aware data is naive UTC, in the column's own unit.
    return np.asarray(counted_at.values).astype("datetime64[ns]").view(np.int64)


def local_days(counted_at: pd.Series) -> np.ndarray:
    """The Europe/Paris local day (int64 days since 1970-01-01) of each tz-aware instant."""
    day: np.ndarray = local_clock(utc_nanoseconds(counted_at))[1].astype(np.int64)
    return day


__all__ = [
    "DAY_FEATURES",
    "MAX_HOLIDAY_DISTANCE_DAYS",
    "SCHOOL_UNKNOWN",
    "SCHOOL_ZONE",
    "SchoolCalendar",
    "day_features",
    "local_clock",
    "local_days",
    "public_holidays",
    "school_calendar",
    "utc_nanoseconds",
]
