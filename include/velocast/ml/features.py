"""Calendar features of a normalized frame, and the counter as a categorical code.

The model forecasts the next 24 hours from the calendar only: no weather and no lag of the target,
so that a prediction needs nothing but the counter and the hour. Everything is derived from the
local Europe/Paris time, because that is the clock people commute by (``counted_at`` is UTC and
the offset changes twice a year).

* Time parts: hour, weekday (0 = Monday), month, day of year, weekend.
* French public holidays (``holidays``, country FR) for the years of the data: computed, so any
  year works, 2031 included.
* Paris school holidays (zone C) from ``vacances-scolaires-france``, which ships a table of known
  dates (offline). A day beyond that table is *unknown*: it is marked "not a school holiday" and
  counted in ``FeatureSet.school_holiday_unknown_rows``, never an error.
* Derived day types: days off (weekend or public holiday), bridge days (a working day between two
  days off: the Monday before a Tuesday holiday, the Friday after a Thursday one), days to/from the
  nearest public holiday and the hour of a day off vs a working day (the daily profile of a
  Sunday or a holiday has no commuting peaks).

``CounterEncoder`` maps the training counters to stable codes (their sorted order) and every
other counter to ``UNKNOWN_COUNTER_CODE``: an unseen counter is never mistaken for another one,
and the unseen ids are reported.

Holidays are looked up once per distinct local day (a few hundred) and broadcast to the rows:
~1 M rows take about a second, most of it converting the timestamps to local time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import holidays
import numpy as np
import pandas as pd
from vacances_scolaires_france import SchoolHolidayDates

from velocast.contract import PARIS_TZ

SCHOOL_ZONE: Final = "C"  # Paris
# Days to/from a public holiday are capped: beyond a week they only restate the date.
MAX_HOLIDAY_DISTANCE_DAYS: Final = 7
UNKNOWN_COUNTER_CODE: Final = -1

COUNTER_FEATURE: Final = "counter_code"
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
CALENDAR_FEATURES: Final[tuple[str, ...]] = ("hour", *DAY_FEATURES, "hour_day_off")
FEATURE_NAMES: Final[tuple[str, ...]] = (COUNTER_FEATURE, *CALENDAR_FEATURES)


# --------------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterCodes:
    """Codes of a column of counter ids, and which ids the encoder had never seen."""

    codes: np.ndarray  # int32, UNKNOWN_COUNTER_CODE for unseen (or null) ids
    unseen_ids: tuple[str, ...]
    unseen_rows: int


@dataclass(frozen=True)
class CounterEncoder:
    """Training counter ids → codes 0..n-1 in sorted id order; anything else → unknown."""

    counters: tuple[str, ...]

    def __post_init__(self) -> None:
        if list(self.counters) != sorted(set(self.counters)):
            raise ValueError("CounterEncoder.counters must be sorted and distinct")

    @classmethod
    def fit(cls, counter_ids: Iterable[Any]) -> CounterEncoder:
        ids = (
            counter_ids if isinstance(counter_ids, pd.Series) else pd.Series(list(counter_ids), dtype=object)
        )
        return cls(tuple(sorted({str(value) for value in ids.dropna().unique()})))

    @property
    def n_counters(self) -> int:
        return len(self.counters)

    def encode(self, counter_ids: pd.Series) -> CounterCodes:
        ids = counter_ids.astype("string")
        categorical = pd.Categorical(ids, categories=list(self.counters))
        codes = np.asarray(categorical.codes, dtype=np.int32)  # -1 where unseen or null
        unseen = codes == UNKNOWN_COUNTER_CODE
        unseen_ids = tuple(sorted(str(value) for value in ids[unseen].dropna().unique()))
        return CounterCodes(codes=codes, unseen_ids=unseen_ids, unseen_rows=int(unseen.sum()))


# --------------------------------------------------------------------------------------------
# Calendar
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


@dataclass(frozen=True)
class CalendarFeatures:
    frame: pd.DataFrame  # CALENDAR_FEATURES, same index as the timestamps
    school_holiday_unknown_rows: int


def calendar_features(counted_at: pd.Series) -> CalendarFeatures:
    """Calendar features of tz-aware timestamps, from their Europe/Paris wall-clock time."""
    if not isinstance(counted_at.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"counted_at must be a tz-aware datetime column, got {counted_at.dtype}")
    local = counted_at.dt.tz_convert(PARIS_TZ)
    local_days = local.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    days, inverse = np.unique(local_days, return_inverse=True)
    day_table = _day_features(days)

    out = pd.DataFrame(index=counted_at.index)
    out["hour"] = local.dt.hour.to_numpy(dtype=np.int8)
    for name in DAY_FEATURES:
        out[name] = day_table[name][inverse]
    # One code per (hour, day off?): lets a tree split the two daily profiles in one go.
    out["hour_day_off"] = (out["hour"].to_numpy(np.int16) + 24 * out["is_day_off"].to_numpy(np.int16)).astype(
        np.int8
    )
    unknown = int(day_table["school_unknown"][inverse].sum())
    return CalendarFeatures(frame=out[list(CALENDAR_FEATURES)], school_holiday_unknown_rows=unknown)


def _day_features(days: np.ndarray) -> dict[str, np.ndarray]:
    """Features of each distinct local day (``days``: sorted datetime64[D])."""
    if days.size == 0:
        empty = np.array([], dtype=np.int8)
        return {name: empty for name in (*DAY_FEATURES, "school_unknown")}
    stamps = pd.DatetimeIndex(days)
    weekday = stamps.dayofweek.to_numpy()
    is_weekend = weekday >= 5

    # Neighbouring years too, so that the distance to the nearest holiday crosses New Year.
    years = range(int(stamps.year.min()) - 1, int(stamps.year.max()) + 2)
    holiday_days = public_holidays(years)
    is_holiday = np.isin(days, holiday_days)
    # Indices of the next/previous holiday; the year padding guarantees both exist.
    next_index = np.searchsorted(holiday_days, days, side="left")
    prev_index = np.searchsorted(holiday_days, days, side="right") - 1
    days_to = (holiday_days[next_index] - days).astype(np.int64)
    days_from = (days - holiday_days[prev_index]).astype(np.int64)

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
        "school_unknown": school_unknown,
    }


def _is_off(days: np.ndarray, holiday_days: np.ndarray) -> np.ndarray:
    weekday = pd.DatetimeIndex(days).dayofweek.to_numpy()
    result: np.ndarray = (weekday >= 5) | np.isin(days, holiday_days)
    return result


# --------------------------------------------------------------------------------------------
# The feature frame
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSet:
    """The model's inputs for a normalized frame, and what could not be known about it.

    ``frame`` has the columns ``FEATURE_NAMES`` and the normalized frame's index.
    """

    frame: pd.DataFrame
    unseen_counters: tuple[str, ...]
    unseen_counter_rows: int
    school_holiday_unknown_rows: int


def build_features(normalized: pd.DataFrame, encoder: CounterEncoder) -> FeatureSet:
    """Features of a normalized frame (needs ``counter_id`` and ``counted_at``)."""
    missing = {"counter_id", "counted_at"} - set(normalized.columns)
    if missing:
        raise ValueError(f"the normalized frame lacks the columns {sorted(missing)}")
    counters = encoder.encode(normalized["counter_id"])
    calendar = calendar_features(normalized["counted_at"])
    codes = pd.DataFrame({COUNTER_FEATURE: counters.codes}, index=calendar.frame.index)
    frame = pd.concat([codes, calendar.frame], axis=1)
    return FeatureSet(
        frame=frame,
        unseen_counters=counters.unseen_ids,
        unseen_counter_rows=counters.unseen_rows,
        school_holiday_unknown_rows=calendar.school_holiday_unknown_rows,
    )


__all__ = [
    "CALENDAR_FEATURES",
    "COUNTER_FEATURE",
    "DAY_FEATURES",
    "FEATURE_NAMES",
    "UNKNOWN_COUNTER_CODE",
    "CalendarFeatures",
    "CounterCodes",
    "CounterEncoder",
    "FeatureSet",
    "build_features",
    "calendar_features",
    "public_holidays",
    "school_calendar",
]
