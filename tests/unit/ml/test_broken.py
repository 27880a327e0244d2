"""broken: runs of zeros and of stuck counts found against the calendar expectation, on synthetic
grids (thresholds, gaps, day boundaries, quiet nights, low-traffic and flat counters, counters kept
apart, the mask, validation) and on the real counter that broke in November 2023."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velocast.data.normalize import normalize
from velocast.ml.broken import BrokenCells, BrokenRun, broken_cells
from velocast.ml.history import HourlyGrid

PARQUET = Path("regine_nj_projetvelo") / "dataset_projet_velo.parquet"
BROKEN_COUNTER = "100056038-101056038"


def day_of(date: str) -> int:
    """A local date as the grid's day number (days since 1970-01-01)."""
    return int(np.datetime64(date, "D").astype(np.int64))


FIRST = day_of("2024-03-04")
# A weekday profile of a busy counter: ~2 bikes an hour at night, peaks of 150 at 8:00 and 18:00.
PROFILE = np.array(
    [4, 2, 2, 1, 1, 3, 15, 60, 150, 110, 60, 50, 60, 60, 55, 60, 80, 120, 150, 90, 50, 30, 15, 8],
    dtype=np.float64,
)


def grid(values: np.ndarray, counters: tuple[str, ...] = ("a",), first_day: int = FIRST) -> HourlyGrid:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:  # one counter's [days, 24]
        values = values[None]
    return HourlyGrid(counters=counters, first_day=first_day, values=values)


def flat(days: int, value: float, counters: int = 1) -> np.ndarray:
    return np.full((counters, days, 24), value, dtype=np.float64)


def set_hours(values: np.ndarray, start: int, hours: int, value: float, counter: int = 0) -> None:
    """Set ``hours`` consecutive cells of ``counter`` from cell ``start`` (day × 24 + hour)."""
    values[counter].reshape(-1)[start : start + hours] = value


def cells_of_runs(result: BrokenCells, actual: HourlyGrid) -> np.ndarray:
    """The mask rebuilt from the runs: every observed cell between each run's first and last cell."""
    mask = np.zeros(actual.values.shape, dtype=bool)
    for run in result.runs:
        c = actual.counters.index(run.counter)
        start = (run.first_day - actual.first_day) * 24 + run.first_hour
        end = (run.last_day - actual.first_day) * 24 + run.last_hour
        mask[c].reshape(-1)[start : end + 1] = True
    observed: np.ndarray = mask & ~np.isnan(actual.values)
    return observed


@pytest.mark.parametrize(("hours", "flagged"), [(24, True), (23, False)])
def test_zero_run_at_the_length_threshold_and_one_hour_short(hours: int, flagged: bool) -> None:
    actual = flat(4, 10.0)
    set_hours(actual, 24 + 5, hours, 0.0)
    result = broken_cells(grid(actual), grid(flat(4, 10.0)))
    if flagged:
        end = 24 + 5 + hours - 1
        assert result.runs == (
            BrokenRun("a", "zeros", FIRST + 1, 5, FIRST + end // 24, end % 24, 24, 240.0, 0.0),
        )
        assert result.runs[0].days == 1.0
    else:
        assert result.runs == ()
        assert not result.mask.any()


@pytest.mark.parametrize(("total", "flagged"), [(100.0, True), (99.5, False)])
def test_zero_run_at_the_expected_total_threshold(total: float, flagged: bool) -> None:
    actual = flat(3, 5.0)
    set_hours(actual, 24, 24, 0.0)
    expected = flat(3, 5.0)
    expected[0, 1] = 0.0
    expected[0, 1, 12] = total  # the whole expected total of the 24 zeros in one cell: an exact sum
    result = broken_cells(grid(actual), grid(expected))
    assert [run.expected_total for run in result.runs] == ([total] if flagged else [])


def test_a_gap_inside_a_run_neither_breaks_nor_extends_it() -> None:
    actual = flat(3, 10.0)
    set_hours(actual, 10, 12, 0.0)  # day 0 10:00 … 21:00
    set_hours(actual, 22, 6, np.nan)  # day 0 22:00 … day 1 03:00: not published
    set_hours(actual, 28, 12, 0.0)  # day 1 04:00 … 15:00
    result = broken_cells(grid(actual), grid(flat(3, 10.0)))
    assert result.runs == (BrokenRun("a", "zeros", FIRST, 10, FIRST + 1, 15, 24, 240.0),)
    assert result.mask.sum() == 24
    assert not result.mask[0].reshape(-1)[22:28].any()  # the gap stays unmasked: it is missing data
    assert result.mask[0].reshape(-1)[[10, 21, 28, 39]].all()
    assert not result.mask[0].reshape(-1)[[9, 40]].any()

    # A count between the halves, instead of the gap, leaves two runs of 12: nothing to flag.
    set_hours(actual, 22, 6, 10.0)
    assert broken_cells(grid(actual), grid(flat(3, 10.0))).runs == ()


def test_runs_spanning_days_report_their_first_and_last_local_day_and_hour() -> None:
    actual = flat(6, 10.0)
    set_hours(actual, 20, 4 + 48 + 4, 0.0)  # day 0 20:00 … day 3 03:00
    set_hours(actual, 5 * 24 + 10, 14, 0.0)  # day 5 10:00 … 23:00: the grid's very last cell
    set_hours(actual, 4 * 24 + 20, 4, 0.0)  # day 4 20:00 … 23:00: counted, with gaps after
    set_hours(actual, 5 * 24, 10, np.nan)  # day 5 00:00 … 09:00 missing: 4 + 14 = 18 zeros
    assert broken_cells(grid(actual), grid(flat(6, 10.0))).runs == (
        BrokenRun("a", "zeros", FIRST, 20, FIRST + 3, 3, 56, 560.0),
    )
    set_hours(actual, 5 * 24 + 4, 6, 0.0)  # day 5 04:00 … 09:00 counted too: now 24 zeros
    runs = broken_cells(grid(actual), grid(flat(6, 10.0))).runs
    assert [(r.first_day, r.first_hour, r.last_day, r.last_hour, r.hours) for r in runs] == [
        (FIRST, 20, FIRST + 3, 3, 56),
        (FIRST + 4, 20, FIRST + 5, 23, 24),
    ]


@pytest.mark.parametrize("min_zero_hours", [24, 1])
def test_a_busy_counters_nightly_zeros_are_never_flagged(min_zero_hours: int) -> None:
    days = 28
    expected = np.tile(PROFILE, (1, days, 1))
    actual = expected.copy()
    actual[0, :, 1:6] = 0.0  # 0 from 01:00 to 05:00 every night
    actual[0, ::7, 0] = 0.0  # and from midnight once a week
    result = broken_cells(grid(actual), grid(expected), min_zero_hours=min_zero_hours)
    assert result.runs == ()
    assert not result.mask.any()
    # The same counter dark from 20:00 to 10:00 a day and a half later is flagged (1,687 bikes expected).
    set_hours(actual, 10 * 24 + 20, 38, 0.0)
    runs = broken_cells(grid(actual), grid(expected)).runs
    assert [(run.hours, run.expected_total) for run in runs] == [(38, 1687.0)]


def test_a_low_traffic_counter_reading_zero_for_two_days_is_not_flagged() -> None:
    actual = flat(10, 1.0)
    set_hours(actual, 3 * 24, 48, 0.0)
    assert broken_cells(grid(actual), grid(flat(10, 0.5))).runs == ()  # 24 bikes expected in all
    # The same zeros where 5 bikes an hour were expected (and were read) are a broken counter.
    busy = flat(10, 5.0)
    set_hours(busy, 3 * 24, 48, 0.0)
    assert [run.expected_total for run in broken_cells(grid(busy), grid(flat(10, 5.0))).runs] == [240.0]


@pytest.mark.parametrize(("hours", "flagged"), [(12, True), (11, False)])
def test_a_stuck_value_is_flagged_where_the_expectation_moves(hours: int, flagged: bool) -> None:
    expected = np.tile(PROFILE, (1, 3, 1))
    actual = expected.copy()
    set_hours(actual, 24 + 6, hours, 17.0)  # day 1 from 06:00, across the morning peak
    result = broken_cells(grid(actual), grid(expected))
    total = float(PROFILE[6 : 6 + hours].sum())
    assert result.runs == (
        (BrokenRun("a", "stuck", FIRST + 1, 6, FIRST + 1, 5 + hours, hours, total, 17.0),) if flagged else ()
    )


@pytest.mark.parametrize("spread", [0.0, 0.09])
def test_a_stuck_value_under_a_flat_expectation_is_not_flagged(spread: float) -> None:
    expected = flat(4, 20.0)
    expected[0, :, ::2] += 20.0 * spread  # alternates: max − min is `spread` of the level, < 10 % of its mean
    actual = flat(4, 20.0)
    result = broken_cells(grid(actual), grid(expected))
    assert result.runs == ()
    # The same 96 hours of 20 where the expectation alternates by 20 % are stuck.
    expected[0, :, ::2] = 24.0
    assert [(run.kind, run.hours, run.value) for run in broken_cells(grid(actual), grid(expected)).runs] == [
        ("stuck", 96, 20.0)
    ]


def test_adjacent_stuck_runs_are_two_runs_with_their_own_totals() -> None:
    expected = np.tile(PROFILE, (1, 2, 1))
    actual = expected.copy()
    set_hours(actual, 0, 12, 17.0)
    set_hours(actual, 12, 12, 18.0)
    runs = broken_cells(grid(actual), grid(expected)).runs
    assert [(r.first_hour, r.last_hour, r.value, r.expected_total) for r in runs] == [
        (0, 11, 17.0, float(PROFILE[:12].sum())),
        (12, 23, 18.0, float(PROFILE[12:].sum())),
    ]


def test_counters_are_independent() -> None:
    actual = flat(4, 10.0, counters=3)
    set_hours(actual, 4 * 24 - 12, 12, 0.0, counter=0)  # a ends with 12 zeros …
    set_hours(actual, 0, 12, 0.0, counter=1)  # … b starts with 12: not one run of 24
    set_hours(actual, 24, 30, 0.0, counter=2)  # c is broken
    result = broken_cells(grid(actual, ("a", "b", "c")), grid(flat(4, 10.0, counters=3), ("a", "b", "c")))
    assert result.runs == (BrokenRun("c", "zeros", FIRST + 1, 0, FIRST + 2, 5, 30, 300.0),)
    assert result.counters() == ("c",)
    assert not result.mask[:2].any()
    assert result.mask[2].sum() == 30


def test_messages() -> None:
    first = day_of("2023-11-02")
    actual = flat(5, 30.0)
    set_hours(actual, 8, 84, 0.0)  # 2023-11-02 08:00 … 2023-11-05 19:00
    result = broken_cells(grid(actual, first_day=first), grid(flat(5, 2340 / 84), first_day=first))
    assert [run.message() for run in result.runs] == [
        "counter a has read 0 for 3.5 days (2023-11-02 08:00 → 2023-11-05 19:00 local) "
        "where ~2,340 bikes were expected"
    ]
    expected = np.tile(PROFILE, (1, 2, 1))
    actual = expected.copy()
    set_hours(actual, 24 + 6, 12, 17.0)
    [run] = broken_cells(grid(actual, first_day=first), grid(expected, first_day=first)).runs
    assert run.message() == (
        "counter a has read 17 without change for 0.5 days (2023-11-03 06:00 → 2023-11-03 17:00 local) "
        "where ~880 bikes were expected"
    )


def test_broken_until_is_the_last_day_of_each_counters_latest_run() -> None:
    counters = ("a", "b", "c")
    actual = flat(12, 10.0, counters=3)
    set_hours(actual, 1 * 24, 24, 0.0, counter=0)
    set_hours(actual, 5 * 24 + 12, 30, 0.0, counter=0)  # a's latest run ends on day 6
    set_hours(actual, 8 * 24 + 3, 14, 42.0, counter=1)  # b stuck on day 8, under a flat expectation …
    expected = flat(12, 10.0, counters=3)
    expected[1, 8, 4:17:2] = 30.0  # … that moves under the stuck hours only
    result = broken_cells(grid(actual, counters), grid(expected, counters))
    assert result.broken_until() == {"a": FIRST + 6, "b": FIRST + 8}
    assert result.counters() == ("a", "b")
    assert [(run.counter, run.kind) for run in result.runs] == [
        ("a", "zeros"),
        ("a", "zeros"),
        ("b", "stuck"),
    ]


def test_the_mask_is_the_union_of_the_runs_observed_cells() -> None:
    rng = np.random.default_rng(7)
    counters = tuple(f"c{i}" for i in range(6))
    expected = np.tile(PROFILE, (6, 40, 1))
    actual = rng.poisson(expected).astype(np.float64)
    set_hours(actual, 100, 200, 0.0, counter=1)
    set_hours(actual, 500, 30, 0.0, counter=1)
    set_hours(actual, 300, 20, 33.0, counter=3)
    set_hours(actual, 900, 60, 0.0, counter=5)
    actual[rng.random(actual.shape) < 0.1] = np.nan
    result = broken_cells(grid(actual, counters), grid(expected, counters))
    assert result.counters() == ("c1", "c3", "c5")
    assert result.mask.shape == actual.shape
    assert np.array_equal(result.mask, cells_of_runs(result, grid(actual, counters)))
    assert result.mask.sum() == sum(run.hours for run in result.runs)
    assert not (result.mask & np.isnan(actual)).any()


@pytest.mark.parametrize("shape", [(0, 5, 24), (2, 0, 24)])
def test_an_empty_grid_has_no_runs(shape: tuple[int, int, int]) -> None:
    counters = tuple("ab"[: shape[0]])
    empty = grid(np.zeros(shape), counters)
    result = broken_cells(empty, grid(np.zeros(shape), counters))
    assert result.runs == ()
    assert result.mask.shape == shape
    assert result.counters() == ()
    assert result.broken_until() == {}


def test_a_grid_without_any_count_has_no_runs() -> None:
    result = broken_cells(grid(flat(3, np.nan)), grid(flat(3, 10.0)))
    assert result.runs == ()
    assert result.mask.shape == (1, 3, 24)
    assert not result.mask.any()


def test_mismatched_grids_and_negative_thresholds_are_rejected() -> None:
    actual = grid(flat(3, 1.0, counters=2), ("a", "b"))
    with pytest.raises(
        ValueError, match=r"expected grid has shape \(2, 4, 24\), the actual grid \(2, 3, 24\)"
    ):
        broken_cells(actual, grid(flat(4, 1.0, counters=2), ("a", "b")))
    with pytest.raises(
        ValueError, match=f"expected grid starts on day {FIRST + 1}, the actual grid on {FIRST}"
    ):
        broken_cells(actual, grid(flat(3, 1.0, counters=2), ("a", "b"), first_day=FIRST + 1))
    with pytest.raises(ValueError, match="counters differ at position 1: actual 'b', expected 'c'"):
        broken_cells(actual, grid(flat(3, 1.0, counters=2), ("a", "c")))
    with pytest.raises(ValueError, match=r"must be \[counters=1, days, 24\], got \(2, 3, 24\)"):
        broken_cells(grid(flat(3, 1.0, counters=2), ("a",)), actual)
    for name in ("min_zero_hours", "min_expected_total", "min_stuck_hours"):
        with pytest.raises(ValueError, match=f"{name} must be ≥ 0, got -1"):
            broken_cells(actual, actual, **{name: -1})


def test_the_champs_elysees_counter_broke_in_november_2023(shared_data: Path) -> None:
    raw = pd.read_parquet(
        shared_data / PARQUET,
        filters=[("id_compteur", "=", BROKEN_COUNTER), ("annee_comptage", "=", 2023)],
    )
    actual = HourlyGrid.of_frame(normalize(raw).frame)
    assert actual.counters == (BROKEN_COUNTER,)
    # A stand-in calendar expectation: the counter's own mean per (weekday, local hour), Jan–Sep 2023.
    days = np.arange(actual.first_day, actual.last_day + 1)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday: Monday is 0
    fit = days < day_of("2023-10-01")
    means = np.stack([np.nanmean(actual.values[0][fit & (weekday == w)], axis=0) for w in range(7)])
    expected = HourlyGrid(actual.counters, actual.first_day, means[weekday][None])

    result = broken_cells(actual, expected)

    # The dying week (2023-11-02 → 11-07: a few bikes an hour, under 30 % of the usual on each day,
    # zero runs of at most 18 hours) is a collapsed run; then zeros from 2023-11-08 03:00 to the
    # data's last count, 2023-11-27 23:00 (13:00–21:00 that day unpublished, hence 468 hours, not
    # 477). The 12-hour road closure of 2023-07-23 (the Tour de France finale, real zeros) and the
    # holiday of 2023-11-01 (867 bikes, 42 % of the usual) are not flagged.
    assert [(r.kind, r.first_day, r.first_hour, r.last_day, r.last_hour, r.hours) for r in result.runs] == [
        ("collapsed", day_of("2023-11-02"), 0, day_of("2023-11-07"), 23, 144),
        ("zeros", day_of("2023-11-08"), 3, day_of("2023-11-27"), 23, 468),
    ]
    collapsed, zeros = result.runs
    assert 30_000 < zeros.expected_total < 45_000  # ~80 bikes an hour were expected
    assert collapsed.value == pytest.approx(859 / 144)  # 37 + 520 + 14 + 228 + 40 + 20 bikes
    assert result.broken_until() == {BROKEN_COUNTER: day_of("2023-11-27")}
    assert not result.mask[0, : day_of("2023-09-01") - actual.first_day].any()
    assert result.mask.sum() == 144 + 468
    assert np.all(actual.values[result.mask][-468:] == 0)  # the cells in time order: zeros last


def test_days_reading_a_fraction_of_the_usual_for_four_days_are_a_collapsed_run() -> None:
    expected = flat(12, 50.0)  # 1,200 bikes a day expected
    actual = flat(12, 50.0)
    set_hours(actual, 2 * 24, 4 * 24, 10.0)  # days 2-5 at 20 %
    [run] = broken_cells(grid(actual), grid(expected)).runs
    assert (run.kind, run.first_day - FIRST, run.first_hour, run.last_day - FIRST, run.last_hour) == (
        "collapsed",
        2,
        0,
        5,
        23,
    )
    assert run.hours == 96 and run.value == 10.0 and run.expected_total == 4 * 1200.0
    assert "has read 10.0 bikes an hour on average for 4.0 days" in run.message()
    # Three such days (a long holiday weekend), or four at 40 %, are traffic.
    three = flat(12, 50.0)
    set_hours(three, 2 * 24, 3 * 24, 10.0)
    assert broken_cells(grid(three), grid(expected)).runs == ()
    quiet = flat(12, 50.0)
    set_hours(quiet, 2 * 24, 4 * 24, 20.0)
    assert broken_cells(grid(quiet), grid(expected)).runs == ()
