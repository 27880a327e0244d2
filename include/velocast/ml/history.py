"""Recent-history features: what a counter just did, relative to what the calendar expected.

A forecast for local day D is made from a warehouse that holds counts up to a few days earlier
(the City publishes with a lag of 1–4 days). Every feature here is computed for a row
(counter, local day D, local hour h) from the counts of days ≤ its *last usable day* only — the
cut-off is an argument, so nothing newer can leak in, in training as in serving:

* ``lag7``, ``lag14``, ``lag21``: the count at the same local hour 7, 14 and 21 days earlier
  (NaN when that day is after the cut-off or has no count);
* ``day7``: the counter's mean daily total over the last 7 usable days, ``h7``: its mean at this
  hour over the same days (raw levels);
* ``cal_r7``, ``cal_r14``, ``cal_rweek``, ``cal_rweekh``, ``cal_rday``: the calendar model's
  expectation for the row times how far the counter was from *its* expectation recently (the
  same hour 7 / 14 days earlier, the last week, the last week at this hour, the last day). A ratio
  to the calendar expectation carries a level change (a works site, a broken loop, a holiday month
  the calendar model has never seen) without mistaking next week's holiday for a new normal.

The counts sit on a (counter, local day, local hour) grid (``HourlyGrid``): the local clock makes
"the same hour a week earlier" the same wall-clock hour across clock changes; the local hour that
happens twice in October holds the mean of its two counts, the one that never happens in March
stays NaN. Gaps are NaN and are skipped by the means; a row with no usable history at all gets NaN
everywhere, which the model reads as "calendar only" (``HistoryFeatures.used`` says which rows).

Shared by training and serving (one function for both: training/serving skew is a defect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.ml.calendar import local_clock, utc_nanoseconds

LAGS_DAYS: Final[tuple[int, ...]] = (7, 14, 21)
WINDOW_DAYS: Final = 7
# Pseudo-count added to both sides of a ratio: a counter that reads 0 where ~0 was expected stays
# at a neutral ratio, and a single odd hour cannot swing a ratio far.
RATIO_PSEUDO_COUNT: Final = 5.0
HISTORY_FEATURES: Final[tuple[str, ...]] = (
    *(f"lag{lag}" for lag in LAGS_DAYS),
    "day7",
    "h7",
    "cal_r7",
    "cal_r14",
    "cal_rweek",
    "cal_rweekh",
    "cal_rday",
)
NO_COUNTER: Final = -1


@dataclass(frozen=True)
class LocalRows:
    """Rows located on the grid's axes: counter position (``NO_COUNTER`` if unknown), local day and hour."""

    counter: np.ndarray  # intp
    day: np.ndarray  # int64, local days since 1970-01-01
    hour: np.ndarray  # intp, 0..23

    def subset(self, rows: np.ndarray) -> LocalRows:
        """The rows selected by a boolean mask or an index array."""
        return LocalRows(counter=self.counter[rows], day=self.day[rows], hour=self.hour[rows])


def local_rows(
    counter_ids: Sequence[Any] | np.ndarray, utc_ns: np.ndarray, counters: Sequence[str]
) -> LocalRows:
    """Locate rows (counter ids and UTC epoch nanoseconds) on a grid of these sorted counters."""
    hour, day = local_clock(np.asarray(utc_ns, dtype=np.int64))
    positions = {counter: index for index, counter in enumerate(counters)}
    counter = np.fromiter(
        (positions.get(value, NO_COUNTER) if isinstance(value, str) else NO_COUNTER for value in counter_ids),
        np.intp,
        len(utc_ns),
    )
    return LocalRows(counter=counter, day=day.astype(np.int64), hour=hour.astype(np.intp))


@dataclass(frozen=True)
class HourlyGrid:
    """Hourly values per (counter, local day, local hour); NaN where there is none."""

    counters: tuple[str, ...]  # sorted: the first axis
    first_day: int  # local day (days since 1970-01-01) of the second axis's index 0
    values: np.ndarray  # float64 [counters, days, 24]

    @property
    def last_day(self) -> int:
        return self.first_day + int(self.values.shape[1]) - 1

    @classmethod
    def of_rows(cls, counters: tuple[str, ...], rows: LocalRows, values: np.ndarray) -> HourlyGrid:
        """The mean of ``values`` per cell (rows of unknown counters are left out)."""
        known = rows.counter != NO_COUNTER
        if not known.any():
            return cls(counters=counters, first_day=0, values=np.full((len(counters), 0, 24), np.nan))
        days = rows.day[known]
        first_day = int(days.min())
        shape = (len(counters), int(days.max()) - first_day + 1, 24)
        cell = np.ravel_multi_index((rows.counter[known], days - first_day, rows.hour[known]), shape)
        size = int(np.prod(shape))
        sums = np.bincount(cell, weights=np.asarray(values, dtype=np.float64)[known], minlength=size)
        counts = np.bincount(cell, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            grid = np.where(counts > 0, sums / counts, np.nan).reshape(shape)
        return cls(counters=counters, first_day=first_day, values=grid)

    @classmethod
    def of_frame(cls, normalized: pd.DataFrame, column: str = "hourly_count") -> HourlyGrid:
        """The grid of a normalized frame's counts (rows without a count or a counter are left out)."""
        rows = normalized[normalized[column].notna() & normalized["counter_id"].notna()]
        return cls.of_counted(rows, column).grid

    @classmethod
    def of_counted(cls, rows: pd.DataFrame, column: str = "hourly_count") -> LocatedCounts:
        """The grid of rows that all have a counter and a value, with the rows' cells on it."""
        utc_ns = utc_nanoseconds(rows["counted_at"])
        counters = tuple(sorted({str(value) for value in rows["counter_id"].unique()}))
        located = local_rows(rows["counter_id"].astype(str).tolist(), utc_ns, counters)
        grid = cls.of_rows(counters, located, rows[column].to_numpy(dtype=np.float64))
        return LocatedCounts(grid=grid, located=located, utc_ns=utc_ns)

    def locate(self, counter_ids: Sequence[Any] | np.ndarray, utc_ns: np.ndarray) -> LocalRows:
        return local_rows(counter_ids, utc_ns, self.counters)


@dataclass(frozen=True)
class LocatedCounts:
    """Counted rows on their grid: the grid, each row's cell on it and each row's instant."""

    grid: HourlyGrid
    located: LocalRows
    utc_ns: np.ndarray


@dataclass(frozen=True)
class HistoryFeatures:
    """``HISTORY_FEATURES`` of rows, one float64 array each (NaN: not known by the cut-off)."""

    columns: dict[str, np.ndarray]

    @property
    def used(self) -> np.ndarray:
        """Whether a row had any usable history (False: the forecast is the calendar's only)."""
        known = np.zeros(len(next(iter(self.columns.values()))), dtype=bool)
        for values in self.columns.values():
            known |= ~np.isnan(values)
        return known


def _cumulative(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along the day axis, with a leading zero day (window sums by difference)."""
    pad = np.zeros((values.shape[0], 1, *values.shape[2:]))
    return np.concatenate([pad, np.cumsum(values, axis=1)], axis=1)


def history_features(
    actual: HourlyGrid,
    expected: HourlyGrid,
    rows: LocalRows,
    last_usable_day: np.ndarray,
    calendar_expectation: np.ndarray,
) -> HistoryFeatures:
    """History features of ``rows`` (located on ``actual``'s counters) from days ≤ ``last_usable_day``.

    ``expected`` holds the calendar model's prediction for every cell of ``actual`` (same shape and
    counters); ``calendar_expectation`` is its prediction for each row itself.
    """
    if actual.values.shape != expected.values.shape or actual.first_day != expected.first_day:
        raise ValueError("the actual and expected grids must have the same shape and first day")
    n = len(rows.day)
    n_days = actual.values.shape[1]
    if n_days == 0 or len(actual.counters) == 0:  # no counted row at all: nothing is known
        return HistoryFeatures(columns={name: np.full(n, np.nan) for name in HISTORY_FEATURES})
    counter = rows.counter
    known = counter != NO_COUNTER
    safe_counter = np.where(known, counter, 0)
    usable = np.minimum(np.asarray(last_usable_day, dtype=np.int64), rows.day - 1) - actual.first_day
    observed = ~np.isnan(actual.values)
    counts = np.where(observed, actual.values, 0.0)
    expected_where_counted = np.where(observed, expected.values, 0.0)
    k = RATIO_PSEUDO_COUNT

    def cell(grid: np.ndarray, day: np.ndarray) -> np.ndarray:
        inside = known & (day >= 0) & (day < n_days)
        out = np.full(n, np.nan)
        out[inside] = grid[counter[inside], day[inside], rows.hour[inside]]
        return out

    columns: dict[str, np.ndarray] = {}
    day_index = rows.day - actual.first_day
    for lag in LAGS_DAYS:
        lagged_day = day_index - lag
        lagged_day = np.where(lagged_day <= usable, lagged_day, -1)  # after the cut-off: unknown
        columns[f"lag{lag}"] = cell(actual.values, lagged_day)
        if lag in (7, 14):
            expected_then = cell(expected.values, lagged_day)
            columns[f"cal_r{lag}"] = calendar_expectation * (columns[f"lag{lag}"] + k) / (expected_then + k)

    # Window sums over days [end - width, end): cumulative sums differenced, clipped to the grid.
    end = np.clip(usable + 1, 0, n_days)
    by_day_counts = _cumulative(counts.sum(axis=2))
    by_day_expected = _cumulative(expected_where_counted.sum(axis=2))
    by_day_observed = _cumulative(observed.sum(axis=2).astype(np.float64))
    by_hour_counts = _cumulative(counts)
    by_hour_expected = _cumulative(expected_where_counted)
    by_hour_observed = _cumulative(observed.astype(np.float64))

    def window(cumulative: np.ndarray, width: int, hourly: bool) -> np.ndarray:
        # From the cut-off, not from the clipped end: a cut-off after the grid's last day must not
        # slide the window back onto days that are not the last ``width`` before it.
        start = np.clip(usable + 1 - width, 0, n_days)
        if hourly:
            total = cumulative[safe_counter, end, rows.hour] - cumulative[safe_counter, start, rows.hour]
        else:
            total = cumulative[safe_counter, end] - cumulative[safe_counter, start]
        return np.where(known, total, 0.0)

    with np.errstate(invalid="ignore", divide="ignore"):
        week_hours = window(by_day_observed, WINDOW_DAYS, hourly=False)
        week_counts = window(by_day_counts, WINDOW_DAYS, hourly=False)
        columns["day7"] = np.where(week_hours > 0, 24.0 * week_counts / week_hours, np.nan)
        hour_days = window(by_hour_observed, WINDOW_DAYS, hourly=True)
        hour_counts = window(by_hour_counts, WINDOW_DAYS, hourly=True)
        columns["h7"] = np.where(hour_days > 0, hour_counts / hour_days, np.nan)

        def ratio(
            cumulative_counts: np.ndarray,
            cumulative_expected: np.ndarray,
            seen: np.ndarray,
            width: int,
            hourly: bool,
        ) -> np.ndarray:
            total = window(cumulative_counts, width, hourly)
            expected_total = window(cumulative_expected, width, hourly)
            pseudo = k if hourly else 24.0 * k
            return np.where(
                seen > 0, calendar_expectation * (total + pseudo) / (expected_total + pseudo), np.nan
            )

        columns["cal_rweek"] = ratio(by_day_counts, by_day_expected, week_hours, WINDOW_DAYS, hourly=False)
        columns["cal_rweekh"] = ratio(by_hour_counts, by_hour_expected, hour_days, WINDOW_DAYS, hourly=True)
        columns["cal_rday"] = ratio(
            by_day_counts, by_day_expected, window(by_day_observed, 1, hourly=False), 1, hourly=False
        )
    return HistoryFeatures(columns={name: columns[name] for name in HISTORY_FEATURES})


def last_complete_day(data_until: pd.Timestamp) -> int:
    """The last local day wholly before ``data_until`` (an exclusive, tz-aware instant).

    The local day ``data_until`` falls in is partial unless it starts exactly then; either way the
    day before it is the last complete one.
    """
    _, day = local_clock(np.array([pd.Timestamp(data_until).value], dtype=np.int64))
    return int(day[0]) - 1


__all__ = [
    "HISTORY_FEATURES",
    "LAGS_DAYS",
    "NO_COUNTER",
    "RATIO_PSEUDO_COUNT",
    "WINDOW_DAYS",
    "HistoryFeatures",
    "HourlyGrid",
    "LocalRows",
    "LocatedCounts",
    "history_features",
    "last_complete_day",
    "local_rows",
]
