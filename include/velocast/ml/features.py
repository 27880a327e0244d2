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

The calendar itself is tables memoised per year (``velocast.ml.calendar``): a row's features are
array look-ups (a one-row forecast spends microseconds here). ``feature_arrays`` is what the
prediction path uses (the day features kept once per distinct day, which the compiled boosting of
``velocast.ml.tree_kernel`` exploits); ``build_features`` is the same arrays as a frame, for fitting.
Training and serving build their features through the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.ml.calendar import (
    DAY_FEATURES,
    SCHOOL_UNKNOWN,
    day_features,
    local_clock,
    public_holidays,
    school_calendar,
    utc_nanoseconds,
)

UNKNOWN_COUNTER_CODE: Final = -1
# Below this many rows, a dictionary encodes counter ids faster than a pandas Categorical.
DICT_ENCODE_ROWS: Final = 2_000

COUNTER_FEATURE: Final = "counter_code"
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
        if len(counter_ids) <= DICT_ENCODE_ROWS:
            return self._encode_few(counter_ids)
        ids = counter_ids.astype("string")
        categorical = pd.Categorical(ids, categories=list(self.counters))
        codes = np.asarray(categorical.codes, dtype=np.int32)  # -1 where unseen or null
        unseen = codes == UNKNOWN_COUNTER_CODE
        unseen_ids = tuple(sorted(str(value) for value in ids[unseen].dropna().unique()))
        return CounterCodes(codes=codes, unseen_ids=unseen_ids, unseen_rows=int(unseen.sum()))

    def _encode_few(self, counter_ids: pd.Series) -> CounterCodes:
        ids = counter_ids if isinstance(counter_ids.dtype, pd.StringDtype) else counter_ids.astype("string")
        return self.encode_values(ids.tolist())

    def encode_values(self, values: list[Any]) -> CounterCodes:
        """Codes of a list of ids (strings; anything else is a null id): the dictionary path."""
        # The same codes as the Categorical path, without its fixed cost (~100 µs a call).
        table = _code_table(self.counters)
        codes = np.fromiter(
            (
                table.get(value, UNKNOWN_COUNTER_CODE) if isinstance(value, str) else UNKNOWN_COUNTER_CODE
                for value in values
            ),
            np.int32,
            len(values),
        )
        unseen = codes == UNKNOWN_COUNTER_CODE
        unseen_ids = {values[i] for i in np.flatnonzero(unseen).tolist() if isinstance(values[i], str)}
        return CounterCodes(codes=codes, unseen_ids=tuple(sorted(unseen_ids)), unseen_rows=int(unseen.sum()))


@lru_cache(maxsize=16)
def _code_table(counters: tuple[str, ...]) -> dict[str, int]:
    return {counter: code for code, counter in enumerate(counters)}


# --------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarArrays:
    """Calendar features of rows, with the day features kept once per distinct local day."""

    hour: np.ndarray  # int8, Europe/Paris wall-clock hour of each row
    day_index: np.ndarray  # intp: each row's index into the distinct days
    day_table: Mapping[str, np.ndarray]  # DAY_FEATURES (and SCHOOL_UNKNOWN) of each distinct day

    @property
    def school_holiday_unknown_rows(self) -> int:
        return int(self.day_table[SCHOOL_UNKNOWN][self.day_index].sum())

    def is_day_off(self) -> np.ndarray:
        day_off: np.ndarray = self.day_table["is_day_off"][self.day_index]
        return day_off

    def calendar_columns(self) -> dict[str, np.ndarray]:
        """``CALENDAR_FEATURES`` → one value per row, in that order."""
        columns: dict[str, np.ndarray] = {"hour": self.hour}
        for name in DAY_FEATURES:
            columns[name] = self.day_table[name][self.day_index]
        # One code per (hour, day off?): lets a tree split the two daily profiles in one go.
        columns["hour_day_off"] = (
            self.hour.astype(np.int16) + 24 * columns["is_day_off"].astype(np.int16)
        ).astype(np.int8)
        return columns


def calendar_arrays(utc_ns: np.ndarray) -> CalendarArrays:
    """Calendar features of UTC instants (int64 ns since the epoch), from their Paris wall-clock time."""
    hour, local_day = local_clock(utc_ns)
    local_days, day_index = np.unique(local_day, return_inverse=True)
    return CalendarArrays(
        hour=hour,
        day_index=day_index.reshape(-1),
        day_table=day_features(local_days),
    )


@dataclass(frozen=True)
class CalendarFeatures:
    frame: pd.DataFrame  # CALENDAR_FEATURES, same index as the timestamps
    school_holiday_unknown_rows: int


def calendar_features(counted_at: pd.Series) -> CalendarFeatures:
    """Calendar features of tz-aware timestamps, from their Europe/Paris wall-clock time."""
    arrays = calendar_arrays(utc_nanoseconds(counted_at))
    frame = pd.DataFrame(arrays.calendar_columns(), index=counted_at.index)
    return CalendarFeatures(frame=frame, school_holiday_unknown_rows=arrays.school_holiday_unknown_rows)


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


@dataclass(frozen=True)
class FeatureArrays:
    """The model's inputs as arrays (what the prediction path uses; ``FeatureSet`` is their frame)."""

    codes: np.ndarray  # int32 counter codes, UNKNOWN_COUNTER_CODE for unseen or null ids
    calendar: CalendarArrays
    unseen_counters: tuple[str, ...]
    unseen_counter_rows: int

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def school_holiday_unknown_rows(self) -> int:
        return self.calendar.school_holiday_unknown_rows

    def columns(self) -> dict[str, np.ndarray]:
        """``FEATURE_NAMES`` → one value per row, in that order."""
        return {COUNTER_FEATURE: self.codes, **self.calendar.calendar_columns()}

    def feature_set(self, index: pd.Index | None = None) -> FeatureSet:
        return FeatureSet(
            frame=pd.DataFrame(self.columns(), index=index),
            unseen_counters=self.unseen_counters,
            unseen_counter_rows=self.unseen_counter_rows,
            school_holiday_unknown_rows=self.school_holiday_unknown_rows,
        )


def feature_arrays(normalized: pd.DataFrame, encoder: CounterEncoder) -> FeatureArrays:
    """Features of a normalized frame (needs ``counter_id`` and ``counted_at``), as arrays."""
    missing = {"counter_id", "counted_at"} - set(normalized.columns)
    if missing:
        raise ValueError(f"the normalized frame lacks the columns {sorted(missing)}")
    return _feature_arrays(
        encoder.encode(normalized["counter_id"]), utc_nanoseconds(normalized["counted_at"])
    )


def column_features(counter_ids: list[Any], utc_ns: np.ndarray, encoder: CounterEncoder) -> FeatureArrays:
    """Features of rows given as columns: counter ids (None: unknown) and UTC epoch nanoseconds."""
    if len(counter_ids) != len(utc_ns):
        raise ValueError(f"{len(counter_ids)} counter ids for {len(utc_ns)} timestamps")
    return _feature_arrays(encoder.encode_values(counter_ids), utc_ns)


def _feature_arrays(counters: CounterCodes, utc_ns: np.ndarray) -> FeatureArrays:
    return FeatureArrays(
        codes=counters.codes,
        calendar=calendar_arrays(utc_ns),
        unseen_counters=counters.unseen_ids,
        unseen_counter_rows=counters.unseen_rows,
    )


def build_features(normalized: pd.DataFrame, encoder: CounterEncoder) -> FeatureSet:
    """Features of a normalized frame (needs ``counter_id`` and ``counted_at``), as a frame."""
    return feature_arrays(normalized, encoder).feature_set(normalized.index)


__all__ = [
    "CALENDAR_FEATURES",
    "COUNTER_FEATURE",
    "DAY_FEATURES",
    "FEATURE_NAMES",
    "UNKNOWN_COUNTER_CODE",
    "CalendarArrays",
    "CalendarFeatures",
    "CounterCodes",
    "CounterEncoder",
    "FeatureArrays",
    "FeatureSet",
    "build_features",
    "calendar_arrays",
    "calendar_features",
    "column_features",
    "feature_arrays",
    "public_holidays",
    "school_calendar",
]
