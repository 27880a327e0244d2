"""Broken counters: runs of counts that are a data problem, not what cyclists did.

A counter whose loop breaks does not stop publishing: it reads 0 hour after hour (or repeats one
value) where hundreds of bikes pass, until the City drops it. Counter ``100056038-101056038``
(Champs-Élysées) read 0 from early November 2023 on, against ~100 bikes an hour before. Taken at
face value, such a run teaches the history features (``velocast.ml.history``) a new normal of
zero, and the forecasts after it follow. ``broken_cells`` finds the runs so that they can be
masked out as missing data and reported:

* ``"zeros"``: at least ``min_zero_hours`` consecutive counts of exactly 0 where the calendar
  model expected at least ``min_expected_total`` bikes in all. The expectation, not the length
  alone, decides: a busy counter's quiet nights and a side street's empty days both read 0 for
  hours where ~0 was expected, and are real;
* ``"stuck"``: at least ``min_stuck_hours`` consecutive counts of the same non-zero value while
  the expectation moved (max − min ≥ ``STUCK_SPREAD_SHARE`` of its mean): real traffic follows the
  daily cycle, a frozen register does not. Where the expectation is itself flat, an unchanging
  count is plausible and is not flagged.

"Consecutive" follows the counter's cells in time order (local day, then local hour) and skips
missing cells: a gap in publication neither ends a run nor lengthens it, since it is no evidence
either way. For the same reason a run's ``hours``, its ``expected_total`` and the ``mask`` cover
its observed cells only. Pure numpy over the whole grid at once (runs are found on the observed
cells of every counter laid end to end, broken at each counter's start).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from velocast.ml.history import HourlyGrid, LocalRows
from velocast.ml.model_base import TARGET, counted_mask

STUCK_SPREAD_SHARE: Final = 0.1
# Days a forecast's broken-run search looks back from its cut-off: the history features read 28.
AS_OF_LOOKBACK_DAYS: Final = 35
# A day that reads under this share of its expected total is a collapsed day.
COLLAPSED_SHARE: Final = 0.3
_EPOCH: Final = dt.date(1970, 1, 1)


def _local_time(day: int, hour: int) -> str:
    return f"{(_EPOCH + dt.timedelta(days=day)).isoformat()} {hour:02d}:00"


@dataclass(frozen=True)
class BrokenRun:
    """One run of implausible counts of one counter (local days since 1970-01-01, local hours)."""

    counter: str
    kind: str  # "zeros" or "stuck"
    first_day: int
    first_hour: int
    last_day: int
    last_hour: int
    hours: int  # observed hours in the run
    expected_total: float  # the calendar expectation summed over the run's observed hours
    value: float = 0.0  # the count read all along (0 for "zeros")

    @property
    def days(self) -> float:
        return self.hours / 24

    def message(self) -> str:
        """One line for an operator: what was read, when, and what the calendar expected instead."""
        if self.kind == "zeros":
            read = "0"
        elif self.kind == "stuck":
            read = f"{self.value:g} without change"
        else:  # collapsed: ``value`` is the mean hourly count read
            read = f"{self.value:.1f} bikes an hour on average"
        first, last = _local_time(self.first_day, self.first_hour), _local_time(self.last_day, self.last_hour)
        span = f"{first} → {last}"
        return (
            f"counter {self.counter} has read {read} for {self.days:.1f} days ({span} local) "
            f"where ~{self.expected_total:,.0f} bikes were expected"
        )


@dataclass(frozen=True)
class BrokenCells:
    """The cells of a grid that belong to broken runs, and the runs themselves (by counter, time)."""

    mask: np.ndarray  # bool, the grid's shape; missing cells inside a run stay False
    runs: tuple[BrokenRun, ...]

    def counters(self) -> tuple[str, ...]:
        return tuple(sorted({run.counter for run in self.runs}))

    def broken_until(self) -> dict[str, int]:
        """Counter → last local day of its latest run: history before it is not a level to follow."""
        until: dict[str, int] = {}
        for run in self.runs:
            until[run.counter] = max(until.get(run.counter, run.last_day), run.last_day)
        return until


def _check(actual: HourlyGrid, expected: HourlyGrid, thresholds: dict[str, float]) -> None:
    shape = actual.values.shape
    if actual.values.ndim != 3 or shape[2] != 24 or shape[0] != len(actual.counters):
        raise ValueError(
            f"the actual grid's values must be [counters={len(actual.counters)}, days, 24], got {shape}"
        )
    if expected.values.shape != shape:
        raise ValueError(f"the expected grid has shape {expected.values.shape}, the actual grid {shape}")
    if expected.first_day != actual.first_day:
        raise ValueError(
            f"the expected grid starts on day {expected.first_day}, the actual grid on {actual.first_day}"
        )
    if expected.counters != actual.counters:
        pairs = zip(actual.counters, expected.counters, strict=False)
        position = next((i for i, (mine, theirs) in enumerate(pairs) if mine != theirs), None)
        if position is None:
            raise ValueError(
                f"the grids have {len(actual.counters)} actual and {len(expected.counters)} expected counters"
            )
        raise ValueError(
            f"the grids' counters differ at position {position}: "
            f"actual {actual.counters[position]!r}, expected {expected.counters[position]!r}"
        )
    for name, threshold in thresholds.items():
        if not threshold >= 0:  # also rejects NaN
            raise ValueError(f"{name} must be ≥ 0, got {threshold}")


def _reduce(ufunc: np.ufunc, values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``ufunc`` over each ``values[start:end + 1]`` (disjoint, increasing runs), in order.

    ``reduceat`` over the interleaved bounds; the results between runs are dropped. An appended
    element keeps ``end + 1`` a valid index for a run that ends the array.
    """
    padded = np.append(values, values[:1])
    bounds = np.column_stack([starts, ends + 1]).reshape(-1)
    result: np.ndarray = ufunc.reduceat(padded, bounds)[::2]
    return result


def broken_cells(
    actual: HourlyGrid,
    expected: HourlyGrid,
    *,
    min_zero_hours: int = 24,
    min_expected_total: float = 100.0,
    min_stuck_hours: int = 12,
    min_collapsed_days: int = 4,
) -> BrokenCells:
    """The broken runs of ``actual`` judged against ``expected`` (the calendar model's expectation of
    every cell: same shape, first day and counters). A NaN expectation counts as unknown: it adds
    nothing to a run's expected total and does not move its spread.

    Besides runs of zeros and stuck values, ``"collapsed"`` runs: at least ``min_collapsed_days``
    consecutive days (with counts) outside those runs that each read under ``COLLAPSED_SHARE`` of
    what was expected (≥ ``min_expected_total`` a day, ≥ 12 hours counted) — a loop that half
    fails counts a few bikes an hour where a hundred pass, as the Champs-Élysées counter did the
    week before it read 0. A holiday or a rainy day reads less, never a tenth for days on end.
    """
    by_value = _value_runs(
        actual,
        expected,
        min_zero_hours=min_zero_hours,
        min_expected_total=min_expected_total,
        min_stuck_hours=min_stuck_hours,
    )
    collapsed = _collapsed_runs(actual, expected, by_value.mask, min_collapsed_days, min_expected_total)
    runs = sorted(
        (*by_value.runs, *collapsed.runs), key=lambda run: (run.counter, run.first_day, run.first_hour)
    )
    return BrokenCells(mask=by_value.mask | collapsed.mask, runs=tuple(runs))


def _collapsed_runs(
    actual: HourlyGrid, expected: HourlyGrid, covered: np.ndarray, min_days: int, min_expected_total: float
) -> BrokenCells:
    free = ~np.isnan(actual.values) & ~covered
    day_total = np.where(free, actual.values, 0.0).sum(axis=2)
    day_expected = np.where(free & ~np.isnan(expected.values), expected.values, 0.0).sum(axis=2)
    free_hours = free.sum(axis=2)
    low = (
        (free_hours >= 12)
        & (day_expected >= min_expected_total)
        & (day_total < COLLAPSED_SHARE * day_expected)
    )
    mask = np.zeros(actual.values.shape, dtype=bool)
    runs: list[BrokenRun] = []
    for counter in np.flatnonzero(low.any(axis=1)).tolist():
        days_with_counts = np.flatnonzero(free_hours[counter] > 0)  # gaps neither end nor extend a run
        flags = np.concatenate([[0], low[counter, days_with_counts].astype(np.int8), [0]])
        edges = np.diff(flags)
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if stop - start < min_days:
                continue
            days = days_with_counts[start:stop]
            mask[counter, days] = free[counter, days]
            hours = int(free_hours[counter, days].sum())
            first_hours, last_hours = (
                np.flatnonzero(free[counter, days[0]]),
                np.flatnonzero(free[counter, days[-1]]),
            )
            runs.append(
                BrokenRun(
                    counter=actual.counters[counter],
                    kind="collapsed",
                    first_day=actual.first_day + int(days[0]),
                    first_hour=int(first_hours[0]),
                    last_day=actual.first_day + int(days[-1]),
                    last_hour=int(last_hours[-1]),
                    hours=hours,
                    expected_total=float(day_expected[counter, days].sum()),
                    value=float(day_total[counter, days].sum()) / hours,
                )
            )
    return BrokenCells(mask=mask, runs=tuple(runs))


def _value_runs(
    actual: HourlyGrid,
    expected: HourlyGrid,
    *,
    min_zero_hours: int,
    min_expected_total: float,
    min_stuck_hours: int,
) -> BrokenCells:
    """Runs of zeros and of one stuck value (see ``broken_cells``)."""
    _check(
        actual,
        expected,
        {
            "min_zero_hours": min_zero_hours,
            "min_expected_total": min_expected_total,
            "min_stuck_hours": min_stuck_hours,
        },
    )
    shape = actual.values.shape
    mask = np.zeros(shape, dtype=bool)
    flat = actual.values.reshape(-1)
    observed = np.flatnonzero(~np.isnan(flat))
    if observed.size == 0:
        return BrokenCells(mask=mask, runs=())
    cells_per_counter = shape[1] * 24
    value = flat[observed]
    expectation = expected.values.reshape(-1)[observed]
    counter = observed // cells_per_counter

    # Runs of one value, on the observed cells laid end to end, broken where the counter changes.
    starts_run = np.ones(value.size, dtype=bool)
    starts_run[1:] = (value[1:] != value[:-1]) | (counter[1:] != counter[:-1])
    starts = np.flatnonzero(starts_run)
    ends = np.append(starts[1:] - 1, value.size - 1)
    length = ends - starts + 1
    zeros = value[starts] == 0
    candidate = np.where(zeros, length >= min_zero_hours, length >= min_stuck_hours)
    starts, ends, length, zeros = starts[candidate], ends[candidate], length[candidate], zeros[candidate]
    if starts.size == 0:
        return BrokenCells(mask=mask, runs=())

    known = ~np.isnan(expectation)
    total = _reduce(np.add, np.where(known, expectation, 0.0), starts, ends)
    n_known = _reduce(np.add, known.astype(np.int64), starts, ends)
    highest = _reduce(np.maximum, np.where(known, expectation, -np.inf), starts, ends)
    lowest = _reduce(np.minimum, np.where(known, expectation, np.inf), starts, ends)
    spread = np.where(n_known > 0, highest - lowest, 0.0)
    mean = total / np.maximum(n_known, 1)
    moving = (spread > 0) & (spread >= STUCK_SPREAD_SHARE * np.abs(mean))
    broken = np.where(zeros, total >= min_expected_total, moving)
    starts, ends, length, zeros, total = (
        starts[broken],
        ends[broken],
        length[broken],
        zeros[broken],
        total[broken],
    )

    # Observed cells covered by a broken run: +1 at each start, −1 after each end, summed.
    cover = np.zeros(value.size + 1, dtype=np.int64)
    cover[starts] += 1  # distinct indices within each array: plain fancy indexing adds once each
    cover[ends + 1] -= 1
    mask.reshape(-1)[observed[np.cumsum(cover[:-1]) > 0]] = True

    first, last = observed[starts] % cells_per_counter, observed[ends] % cells_per_counter
    runs = tuple(
        BrokenRun(
            counter=actual.counters[int(counter[start])],
            kind="zeros" if is_zero else "stuck",
            first_day=actual.first_day + int(first_cell) // 24,
            first_hour=int(first_cell) % 24,
            last_day=actual.first_day + int(last_cell) // 24,
            last_hour=int(last_cell) % 24,
            hours=int(hours),
            expected_total=float(expected_total),
            value=float(value[start]),
        )
        for start, is_zero, first_cell, last_cell, hours, expected_total in zip(
            starts, zeros, first, last, length, total, strict=True
        )
    )
    return BrokenCells(mask=mask, runs=runs)


def weekly_profile(actual: HourlyGrid) -> HourlyGrid:
    """Each counter's mean count per (weekday, local hour), on every cell of the grid.

    The expectation broken runs are judged against where no calendar model is at hand (training
    cleans its rows before fitting one): a loop that reads 0 where it usually counts hundreds is
    broken whatever the season. NaN where the counter never counted at that weekday and hour.
    """
    counters, days, _ = actual.values.shape
    weekday = (actual.first_day + np.arange(days) + 3) % 7  # 1970-01-01 was a Thursday (3)
    observed = ~np.isnan(actual.values)
    counts = np.where(observed, actual.values, 0.0)
    sums = np.zeros((counters, 7, 24))
    seen = np.zeros((counters, 7, 24))
    for day_of_week in range(7):
        on_day = weekday == day_of_week
        sums[:, day_of_week] = counts[:, on_day].sum(axis=1)
        seen[:, day_of_week] = observed[:, on_day].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.where(seen > 0, sums / seen, np.nan)
    return HourlyGrid(counters=actual.counters, first_day=actual.first_day, values=profile[:, weekday])


def without_broken(actual: HourlyGrid, expected: HourlyGrid | None = None) -> tuple[HourlyGrid, BrokenCells]:
    """``actual`` with its broken cells as missing, and the cells found (judged against
    ``expected``, or the counters' own weekly profile)."""
    cells = broken_cells(actual, weekly_profile(actual) if expected is None else expected)
    if not cells.runs:
        return actual, cells
    values = np.where(cells.mask, np.nan, actual.values)
    return HourlyGrid(counters=actual.counters, first_day=actual.first_day, values=values), cells


def broken_rows(normalized: pd.DataFrame) -> tuple[np.ndarray, BrokenCells]:
    """Which rows of a normalized frame fall in broken runs (judged against each counter's weekly
    profile), and the runs. Rows without a count or a counter are never broken."""
    counted = counted_mask(normalized)
    counts = HourlyGrid.of_counted(normalized[counted], TARGET)
    in_runs, cells = broken_located_rows(counts.grid, counts.located)
    broken = np.zeros(len(normalized), dtype=bool)
    broken[np.flatnonzero(counted)] = in_runs
    return broken, cells


def broken_located_rows(grid: HourlyGrid, located: LocalRows) -> tuple[np.ndarray, BrokenCells]:
    """``broken_rows`` of rows already on ``grid`` (the grid of their own counts)."""
    cells = broken_cells(grid, weekly_profile(grid))
    if not cells.runs:
        return np.zeros(len(located.day), dtype=bool), cells
    in_runs: np.ndarray = cells.mask[located.counter, located.day - grid.first_day, located.hour]
    return in_runs, cells


class BrokenAsOf:
    """Broken cells as a forecast with a given cut-off could know them: found on the
    ``lookback_days`` up to the cut-off only, so nothing later leaks in (a run counts from the day
    it is long enough to qualify, not before), against the calendar model's expectation.

    ``window(cut_off)`` gives those days' actual grid with the broken cells missing, the expected
    grid of the same days and the cells found; computed once per cut-off.
    """

    def __init__(
        self, actual: HourlyGrid, expected: HourlyGrid, lookback_days: int = AS_OF_LOOKBACK_DAYS
    ) -> None:
        self.actual, self.expected, self.lookback_days = actual, expected, lookback_days
        self._windows: dict[int, tuple[HourlyGrid, HourlyGrid, BrokenCells]] = {}

    def window(self, cut_off: int) -> tuple[HourlyGrid, HourlyGrid, BrokenCells]:
        if cut_off not in self._windows:
            first = max(cut_off - self.lookback_days + 1, self.actual.first_day)
            last = min(cut_off, self.actual.last_day)
            start, stop = (
                first - self.actual.first_day,
                max(last - self.actual.first_day + 1, first - self.actual.first_day),
            )
            actual = HourlyGrid(self.actual.counters, first, self.actual.values[:, start:stop])
            expected = HourlyGrid(self.expected.counters, first, self.expected.values[:, start:stop])
            cells = broken_cells(actual, expected)
            masked = HourlyGrid(actual.counters, first, np.where(cells.mask, np.nan, actual.values))
            self._windows[cut_off] = (masked, expected, cells)
        return self._windows[cut_off]


__all__ = [
    "AS_OF_LOOKBACK_DAYS",
    "COLLAPSED_SHARE",
    "STUCK_SPREAD_SHARE",
    "BrokenAsOf",
    "BrokenCells",
    "BrokenRun",
    "broken_cells",
    "broken_located_rows",
    "broken_rows",
    "weekly_profile",
    "without_broken",
]
