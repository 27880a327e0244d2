"""history / history_stage: the recent-history features on synthetic counts (no leak past the
cut-off, lags by the local wall clock across clock changes, gaps, zero runs), the cut-offs of
training rows and of a data instant, and the split-conformal interval band."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from velocast.ml.calendar import local_clock, utc_nanoseconds
from velocast.ml.history import (
    HISTORY_FEATURES,
    NO_COUNTER,
    RATIO_PSEUDO_COUNT,
    HistoryFeatures,
    HourlyGrid,
    history_features,
    last_complete_day,
    local_rows,
)
from velocast.ml.history_stage import IntervalBand, training_last_usable_day

PARIS = "Europe/Paris"
K = RATIO_PSEUDO_COUNT


def day_of(date: str) -> int:
    """A local date as the grid's day number (days since 1970-01-01)."""
    return int(np.datetime64(date, "D").astype(np.int64))


def local(stamp: str) -> pd.Timestamp:
    return pd.Timestamp(stamp, tz=PARIS)


def hourly(
    counter: str, start: str, end: str, value: Callable[[pd.DatetimeIndex], np.ndarray] | float
) -> pd.DataFrame:
    """A normalized frame: every UTC hour from local ``start`` (inclusive) to local ``end`` (exclusive)."""
    utc = pd.date_range(
        local(start).tz_convert("UTC"), local(end).tz_convert("UTC"), freq="h", inclusive="left"
    )
    counts = value(utc) if callable(value) else np.full(len(utc), float(value))
    return pd.DataFrame(
        {"counter_id": counter, "counted_at": utc, "hourly_count": np.asarray(counts, dtype=np.float64)}
    )


def local_days(frame: pd.DataFrame) -> np.ndarray:
    return local_clock(utc_nanoseconds(frame["counted_at"]))[1].astype(np.int64)


def expected_grid(actual: HourlyGrid, history: pd.DataFrame) -> HourlyGrid:
    """A stand-in for the calendar model: a value per cell that depends on the local hour and weekday."""
    counted = history[history["hourly_count"].notna()]
    rows = actual.locate(counted["counter_id"].tolist(), utc_nanoseconds(counted["counted_at"]))
    return HourlyGrid.of_rows(actual.counters, rows, 3.0 + rows.hour + (rows.day % 7))


def constant_expected(actual: HourlyGrid, value: float) -> HourlyGrid:
    return HourlyGrid(actual.counters, actual.first_day, np.full_like(actual.values, value))


def features_of(
    history: pd.DataFrame,
    counter_ids: list[str],
    utc_ns: np.ndarray,
    last_usable_day: np.ndarray | int,
    *,
    expected: float | None = None,
    calendar: np.ndarray | float | None = None,
) -> HistoryFeatures:
    actual = HourlyGrid.of_frame(history)
    grid = expected_grid(actual, history) if expected is None else constant_expected(actual, expected)
    rows = actual.locate(counter_ids, utc_ns)
    n = len(counter_ids)
    expectation = 20.0 + rows.hour if calendar is None else np.broadcast_to(calendar, (n,)).astype(float)
    cut_off = np.broadcast_to(np.asarray(last_usable_day, dtype=np.int64), (n,))
    return history_features(actual, grid, rows, cut_off, expectation)


def at(stamps: list[str]) -> np.ndarray:
    return np.array([local(stamp).value for stamp in stamps], dtype=np.int64)


def count_at(frame: pd.DataFrame, stamp: pd.Timestamp) -> float:
    match = frame.loc[frame["counted_at"] == stamp, "hourly_count"]
    assert len(match) == 1, stamp
    return float(match.iloc[0])


def same(first: HistoryFeatures, second: HistoryFeatures, mask: np.ndarray) -> bool:
    return all(
        np.array_equal(first.columns[name][mask], second.columns[name][mask], equal_nan=True)
        for name in HISTORY_FEATURES
    )


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    result: np.ndarray = ~((before == after) | (np.isnan(before) & np.isnan(after)))
    return result


# --- leakage: nothing after a row's cut-off (nor its own day) is read --------------------------


@pytest.fixture(scope="module")
def noisy_history() -> pd.DataFrame:
    """4 counters × 7 weeks of random counts across the March clock change, with holes."""
    rng = np.random.default_rng(7)
    frames = [
        hourly(f"c{index}", "2023-02-20", "2023-04-10", lambda utc: rng.poisson(40.0, len(utc)).astype(float))
        for index in range(4)
    ]
    history = pd.concat(frames, ignore_index=True)
    history = history[rng.random(len(history)) > 0.05]  # scattered missing hours
    gap = (history["counter_id"] == "c3") & (local_days(history) >= day_of("2023-03-29"))
    gap &= local_days(history) <= day_of("2023-03-31")
    return history[~gap].reset_index(drop=True)


@pytest.fixture(scope="module")
def noisy_targets() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every hour of 2 weeks for the 4 counters and an unknown one: ids, UTC ns, local days."""
    frames = [hourly(f"c{index}", "2023-03-27", "2023-04-10", 0.0) for index in range(4)]
    frames.append(hourly("unknown", "2023-03-27", "2023-03-29", 0.0))
    targets = pd.concat(frames, ignore_index=True)
    return targets["counter_id"].tolist(), utc_nanoseconds(targets["counted_at"]), local_days(targets)


def test_rows_after_each_cut_off_are_never_read(
    noisy_history: pd.DataFrame, noisy_targets: tuple[list[str], np.ndarray, np.ndarray]
) -> None:
    ids, utc_ns, day = noisy_targets
    # Per row: lag 0 … 3 by counter, horizon 1 … 3 by day: 1 to 6 days before it.
    lag = np.array([int(counter[1]) if counter != "unknown" else 0 for counter in ids])
    cut_off = training_last_usable_day(day, 0, 3) - lag
    base = features_of(noisy_history, ids, utc_ns, cut_off)
    history_day = local_days(noisy_history)
    known = np.array([counter != "unknown" for counter in ids])
    assert base.used[known].all() and not base.used[~known].any()
    assert len(np.unique(cut_off)) >= 10 and len(np.unique(cut_off[day == day[0]])) >= 3
    for cut in np.unique(cut_off):
        group = cut_off == cut
        after = history_day > cut
        assert after.any()
        perturbed = noisy_history.copy()
        perturbed.loc[after, "hourly_count"] = perturbed.loc[after, "hourly_count"] * 10 + 1000
        assert same(base, features_of(perturbed, ids, utc_ns, cut_off), group), cut
        assert same(base, features_of(noisy_history[~after], ids, utc_ns, cut_off), group), cut

        # The cut-off day itself is read: perturbing it moves every window of every known counter.
        on_cut = noisy_history.copy()
        on_cut.loc[history_day == cut, "hourly_count"] = on_cut.loc[history_day == cut, "hourly_count"] + 1000
        moved = features_of(on_cut, ids, utc_ns, cut_off)
        with_day = (
            group
            & known
            & ~((np.array(ids) == "c3") & (cut >= day_of("2023-03-29")) & (cut <= day_of("2023-03-31")))
        )
        assert (moved.columns["day7"][with_day] > base.columns["day7"][with_day]).all(), cut
        assert (moved.columns["cal_rday"][with_day] > base.columns["cal_rday"][with_day]).all(), cut


def test_a_single_row_on_the_cut_off_day_is_read(
    noisy_history: pd.DataFrame, noisy_targets: tuple[list[str], np.ndarray, np.ndarray]
) -> None:
    ids, utc_ns, day = noisy_targets
    cut = day_of("2023-04-01")
    base = features_of(noisy_history, ids, utc_ns, cut)
    stamp = local("2023-04-01 08:00").tz_convert("UTC")
    row = (noisy_history["counter_id"] == "c0") & (noisy_history["counted_at"] == stamp)
    assert row.sum() == 1
    perturbed = noisy_history.copy()
    perturbed.loc[row, "hourly_count"] = perturbed.loc[row, "hourly_count"] * 10 + 1000
    moved = features_of(perturbed, ids, utc_ns, cut)
    c0 = np.array(ids) == "c0"
    assert not same(base, moved, c0)
    assert same(base, moved, ~c0)  # other counters do not read c0's counts
    # h7 moves at 08:00 only, day7 at every hour of the rows after the cut-off.
    hour = local_clock(utc_ns)[0]
    h7_moved = changed(base.columns["h7"], moved.columns["h7"])
    assert (h7_moved == (c0 & (hour == 8) & (day > cut))).all()
    assert (changed(base.columns["day7"], moved.columns["day7"]) == (c0 & (day > cut))).all()


def test_a_row_never_reads_its_own_day_or_later(
    noisy_history: pd.DataFrame, noisy_targets: tuple[list[str], np.ndarray, np.ndarray]
) -> None:
    ids, utc_ns, day = noisy_targets
    cut_off = day + 10  # a cut-off after the row's day: its own day is still not read
    base = features_of(noisy_history, ids, utc_ns, cut_off)
    history_day = local_days(noisy_history)
    for target_day in np.unique(day):
        group = day == target_day
        later = history_day >= target_day
        perturbed = noisy_history.copy()
        perturbed.loc[later, "hourly_count"] = perturbed.loc[later, "hourly_count"] * 10 + 1000
        assert same(base, features_of(perturbed, ids, utc_ns, cut_off), group), target_day
        assert same(base, features_of(noisy_history[~later], ids, utc_ns, cut_off), group), target_day
    # ... and is the day before it when the cut-off allows: same as a cut-off of the day before.
    assert same(base, features_of(noisy_history, ids, utc_ns, day - 1), np.ones(len(day), dtype=bool))


# --- lags by the local wall clock across the clock changes --------------------------------------


@pytest.fixture(scope="module")
def spring() -> pd.DataFrame:
    """Distinct counts (the UTC hour's index) around 2023-03-26, when 02:00 local never happens."""
    return hourly("a", "2023-03-11", "2023-04-10", lambda utc: np.arange(len(utc), dtype=float))


@pytest.fixture(scope="module")
def autumn() -> pd.DataFrame:
    """Distinct counts around 2023-10-29, when 02:00 local happens twice."""
    return hourly("a", "2023-10-14", "2023-11-13", lambda utc: np.arange(len(utc), dtype=float) * 3.0)


def test_lags_are_the_same_local_hour_across_the_spring_change(spring: pd.DataFrame) -> None:
    stamps = ["2023-04-01 08:00", "2023-04-08 08:00"]
    features = features_of(spring, ["a", "a"], at(stamps), day_of("2023-03-31"))
    lag7 = count_at(spring, local("2023-03-25 08:00"))
    assert features.columns["lag7"][0] == lag7
    # 7 × 24 hours earlier is 07:00 local on 2023-03-25: a UTC lag would read another count.
    assert lag7 != count_at(spring, local("2023-04-01 08:00") - pd.Timedelta(hours=7 * 24))
    # Cut-off 2023-03-31: lag7 of 04-08 (04-01) is not known yet, lag14 and lag21 are.
    assert np.isnan(features.columns["lag7"][1])
    assert features.columns["lag14"][1] == count_at(spring, local("2023-03-25 08:00"))
    assert features.columns["lag21"][1] == count_at(spring, local("2023-03-18 08:00"))
    assert features.columns["lag14"][0] == count_at(spring, local("2023-03-18 08:00"))
    assert features.columns["lag21"][0] == count_at(spring, local("2023-03-11 08:00"))


def test_the_missing_spring_hour_is_nan_and_skipped(spring: pd.DataFrame) -> None:
    grid = HourlyGrid.of_frame(spring)
    change = grid.values[0, day_of("2023-03-26") - grid.first_day]
    assert np.isnan(change[2])
    assert (~np.isnan(change)).sum() == 23
    assert change[3] == count_at(spring, local("2023-03-26 03:00"))

    stamps = ["2023-04-02 02:00", "2023-04-02 03:00"]
    features = features_of(spring, ["a", "a"], at(stamps), day_of("2023-04-01"))
    assert np.isnan(features.columns["lag7"][0])
    assert np.isnan(features.columns["cal_r7"][0])
    assert features.columns["lag7"][1] == count_at(spring, local("2023-03-26 03:00"))
    # h7 at 02:00 is the mean of the 6 days of the window that have a 02:00 (not 7).
    two_am = [
        count_at(spring, local(f"2023-{date} 02:00"))
        for date in ("03-27", "03-28", "03-29", "03-30", "03-31", "04-01")
    ]
    assert features.columns["h7"][0] == pytest.approx(np.mean(two_am), rel=1e-12)


def test_the_doubled_autumn_hour_holds_the_mean_of_its_two_counts(autumn: pd.DataFrame) -> None:
    first, second = pd.Timestamp("2023-10-29 00:00", tz="UTC"), pd.Timestamp("2023-10-29 01:00", tz="UTC")
    assert first.tz_convert(PARIS).hour == second.tz_convert(PARIS).hour == 2
    doubled = (count_at(autumn, first) + count_at(autumn, second)) / 2
    assert count_at(autumn, first) != count_at(autumn, second)

    grid = HourlyGrid.of_frame(autumn)
    change = grid.values[0, day_of("2023-10-29") - grid.first_day]
    assert (local_days(autumn) == day_of("2023-10-29")).sum() == 25
    assert (~np.isnan(change)).sum() == 24
    assert change[2] == doubled

    stamps = ["2023-11-05 02:00", "2023-11-05 03:00", "2023-11-12 02:00"]
    features = features_of(autumn, ["a"] * 3, at(stamps), day_of("2023-11-04"))
    assert features.columns["lag7"][0] == doubled
    assert features.columns["lag7"][1] == count_at(autumn, local("2023-10-29 03:00"))
    assert features.columns["lag14"][2] == doubled


def test_local_rows_locate_by_local_day_and_hour() -> None:
    utc_ns = np.array(
        [
            pd.Timestamp(stamp, tz="UTC").value
            for stamp in ("2023-10-29 00:00", "2023-10-29 01:00", "2023-03-25 23:30")
        ]
    )
    rows = local_rows(["b", "a", 7], utc_ns, ("a", "b"))
    assert rows.counter.tolist() == [1, 0, NO_COUNTER]  # a non-string id is no counter
    assert rows.hour.tolist() == [2, 2, 0]
    assert rows.day.tolist() == [day_of("2023-10-29"), day_of("2023-10-29"), day_of("2023-03-26")]


# --- gaps, unknown counters, zero runs ----------------------------------------------------------


def gapped_counter() -> pd.DataFrame:
    """Counter g: 30 an hour, but 10 on 05-15/16, none on 05-17, 20 on 05-18…21 (05-21: 00:00–11:00 only)."""

    def level(utc: pd.DatetimeIndex) -> np.ndarray:
        date = np.asarray(utc.tz_convert(PARIS).strftime("%m-%d"))
        return np.select([np.isin(date, ["05-15", "05-16"]), date >= "05-18"], [10.0, 20.0], 30.0)

    frame = hourly("g", "2023-05-01", "2023-05-22", level)
    clock = frame["counted_at"].dt.tz_convert(PARIS)
    missing = (clock.dt.strftime("%m-%d") == "05-17") | (
        (clock.dt.strftime("%m-%d") == "05-21") & (clock.dt.hour >= 12)
    )
    kept: pd.DataFrame = frame[~missing].reset_index(drop=True)
    return kept


def test_means_skip_gaps_and_lags_into_a_gap_are_nan() -> None:
    history = pd.concat([gapped_counter(), hourly("n", "2023-05-22", "2023-05-26", 50.0)], ignore_index=True)
    expected, calendar = 40.0, 25.0
    features = features_of(
        history,
        ["g", "n", "x"],
        at(["2023-05-24 08:00"] * 3),
        day_of("2023-05-21"),
        expected=expected,
        calendar=calendar,
    )
    g = {name: values[0] for name, values in features.columns.items()}
    # Window 05-15 … 05-21: 2 days of 10 (48 h), 05-17 missing, 3 days of 20 (72 h), 12 h of 20.
    counted, hours = 48 * 10 + 84 * 20, 48 + 84
    assert g["day7"] == pytest.approx(24 * counted / hours, rel=1e-12)  # 392.7…: not / 7 days
    assert g["h7"] == pytest.approx((2 * 10 + 4 * 20) / 6, rel=1e-12)  # 6 observed 08:00s
    assert np.isnan(g["lag7"]) and np.isnan(g["cal_r7"])  # 05-17: missing
    assert g["lag14"] == 30.0 and g["lag21"] == 30.0
    assert g["cal_r14"] == pytest.approx(calendar * (30 + K) / (expected + K), rel=1e-12)
    assert g["cal_rweek"] == pytest.approx(
        calendar * (counted + 24 * K) / (expected * hours + 24 * K), rel=1e-12
    )
    assert g["cal_rweekh"] == pytest.approx(calendar * (100 + K) / (expected * 6 + K), rel=1e-12)
    # The last day, partial: 12 counted hours of 20.
    assert g["cal_rday"] == pytest.approx(calendar * (12 * 20 + 24 * K) / (expected * 12 + 24 * K), rel=1e-12)
    # n: counted only after the cut-off; x: never counted. Neither has any feature.
    for index in (1, 2):
        assert all(np.isnan(values[index]) for values in features.columns.values())
    assert features.used.tolist() == [True, False, False]
    assert tuple(features.columns) == HISTORY_FEATURES


def test_a_cut_off_before_any_count_gives_no_features() -> None:
    features = features_of(gapped_counter(), ["g"], at(["2023-05-03 08:00"]), day_of("2023-04-30"))
    assert not features.used.any()
    assert all(np.isnan(values).all() for values in features.columns.values())


@pytest.mark.parametrize("expected", [50.0, 0.0])
def test_a_zero_run_keeps_ratios_finite(expected: float) -> None:
    """A broken counter reads 0 for the whole last week."""
    history = hourly(
        "z",
        "2023-05-01",
        "2023-05-22",
        lambda utc: np.where(utc.tz_convert(PARIS).strftime("%m-%d") >= "05-15", 0.0, 30.0),
    )
    calendar = 40.0
    features = features_of(
        history, ["z"], at(["2023-05-22 08:00"]), day_of("2023-05-21"), expected=expected, calendar=calendar
    )
    z = {name: values[0] for name, values in features.columns.items()}
    assert z["day7"] == 0.0 and z["h7"] == 0.0 and z["lag7"] == 0.0 and z["lag14"] == 30.0
    for name in ("cal_r7", "cal_r14", "cal_rweek", "cal_rweekh", "cal_rday"):
        assert np.isfinite(z[name]) and z[name] >= 0.0, name
    assert z["cal_r7"] == pytest.approx(calendar * K / (expected + K), rel=1e-12)
    assert z["cal_rweek"] == pytest.approx(calendar * 24 * K / (expected * 168 + 24 * K), rel=1e-12)
    assert z["cal_rweekh"] == pytest.approx(calendar * K / (expected * 7 + K), rel=1e-12)
    assert z["cal_rday"] == pytest.approx(calendar * 24 * K / (expected * 24 + 24 * K), rel=1e-12)
    if expected == 0.0:  # 0 counted where 0 was expected: a neutral ratio, the calendar stands
        assert z["cal_r7"] == z["cal_rweek"] == z["cal_rday"] == calendar


def test_grids_of_different_shapes_are_refused() -> None:
    actual = HourlyGrid.of_frame(gapped_counter())
    shorter = HourlyGrid(actual.counters, actual.first_day, actual.values[:, 1:])
    rows = actual.locate(["g"], at(["2023-05-24 08:00"]))
    with pytest.raises(ValueError, match="same shape"):
        history_features(actual, shorter, rows, np.array([day_of("2023-05-21")]), np.array([1.0]))


def test_windows_end_at_the_cut_off_even_after_the_grid() -> None:
    early = hourly("b", "2023-05-01", "2023-05-15", 10.0)  # b stops counting on 05-14
    late = hourly("a", "2023-05-01", "2023-05-31", 20.0)  # a counts until 05-30
    stamp, cut = at(["2023-06-10 08:00"]), day_of("2023-06-09")
    alone = features_of(early, ["b"], stamp, cut, expected=10.0)
    with_a = features_of(pd.concat([early, late], ignore_index=True), ["b"], stamp, cut, expected=10.0)
    # 06-03 … 06-09 hold no count of b: nothing is known (b is NaN when a's later counts widen the grid).
    assert same(alone, with_a, np.ones(1, dtype=bool))
    assert not alone.used.any()


def test_an_empty_history_gives_no_features() -> None:
    empty = hourly("a", "2023-05-01", "2023-05-02", 1.0).iloc[:0]
    features = features_of(empty, ["a"], at(["2023-05-24 08:00"]), day_of("2023-05-21"), expected=1.0)
    assert not features.used.any()


# --- cut-offs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_until", "last_day"),
    [
        (local("2023-03-26 00:00"), "2023-03-25"),  # local midnight: the day before is complete
        (local("2023-03-26 12:00"), "2023-03-25"),  # mid-day: the day is partial
        (pd.Timestamp("2023-03-25 23:30", tz="UTC"), "2023-03-25"),  # 00:30 local on 03-26
        (pd.Timestamp("2023-03-25 22:59", tz="UTC"), "2023-03-24"),  # 23:59 local on 03-25
        (pd.Timestamp("2023-03-26 01:00", tz="UTC"), "2023-03-25"),  # 03:00 CEST, just after the change
        (pd.Timestamp("2023-10-29 00:00:01", tz="UTC"), "2023-10-28"),  # 02:00:01 CEST on 10-29
        (pd.Timestamp("2023-10-29 01:30", tz="UTC"), "2023-10-28"),  # 02:30 CET, the second 02:00
        (pd.Timestamp("2023-10-29 22:59", tz="UTC"), "2023-10-28"),  # 23:59 CET on 10-29
        (pd.Timestamp("2023-10-29 23:00", tz="UTC"), "2023-10-29"),  # midnight after a 25-hour day
        (pd.Timestamp("2023-10-30 00:00", tz="UTC"), "2023-10-29"),  # UTC midnight is 01:00 local
    ],
)
def test_last_complete_day(data_until: pd.Timestamp, last_day: str) -> None:
    assert last_complete_day(data_until) == day_of(last_day)


@pytest.mark.parametrize("lag", [0, 2, 5])
@pytest.mark.parametrize("horizon", [1, 2, 3, 7])
def test_training_cut_offs_cycle_through_the_horizons(lag: int, horizon: int) -> None:
    day = np.arange(day_of("2023-01-01"), day_of("2023-04-01"), dtype=np.int64)
    before = day - training_last_usable_day(day, lag, horizon)
    assert before.min() == lag + 1 and before.max() == lag + horizon
    # Every run of `horizon` consecutive days has each of lag+1 … lag+horizon exactly once.
    for start in range(len(day) - horizon + 1):
        assert sorted(before[start : start + horizon].tolist()) == list(range(lag + 1, lag + horizon + 1))
    # Per row, not per frame: the same day gets the same cut-off wherever it sits.
    assert training_last_usable_day(day[::-1], lag, horizon).tolist() == (day - before)[::-1].tolist()


# --- the interval band ----------------------------------------------------------------------------


def poisson_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    predicted = rng.uniform(0.0, 400.0, n)
    return rng.poisson(predicted).astype(np.float64), predicted


def skewed_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A right-skewed residual whose spread grows with the level (gamma noise, mean 0)."""
    predicted = rng.uniform(0.0, 400.0, n)
    noise = (rng.gamma(2.0, 1.5, n) - 3.0) * np.sqrt(predicted + 1.0)
    return np.clip(predicted + noise, 0.0, None), predicted


@pytest.mark.parametrize("sample", [poisson_sample, skewed_sample])
@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.95])
def test_interval_band_covers_the_nominal_share_of_fresh_samples(
    sample: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]], coverage: float
) -> None:
    rng = np.random.default_rng(11)
    band = IntervalBand.calibrate(*sample(rng, 100_000), coverage)
    assert band.coverage == coverage and band.calibration_rows == 100_000
    assert band.low < 0.0 < band.high
    actual, predicted = sample(rng, 100_000)  # fresh
    lower, upper = band.bounds(predicted)
    inside = (actual >= lower) & (actual <= upper)
    assert abs(inside.mean() - coverage) < 0.02
    # Equal tails: about as many rows above the band as below it.
    tail = (1.0 - coverage) / 2.0
    assert abs((actual < lower).mean() - tail) < 0.015
    assert abs((actual > upper).mean() - tail) < 0.015


def test_interval_bounds_are_ordered_and_never_negative() -> None:
    rng = np.random.default_rng(3)
    band = IntervalBand.calibrate(*poisson_sample(rng, 10_000), 0.9)
    predicted = np.concatenate([[-5.0, 0.0, 0.5, 1e-9], rng.uniform(0.0, 2_000.0, 1_000)])
    lower, upper = band.bounds(predicted)
    assert (lower >= 0.0).all() and (upper >= 0.0).all()
    assert (lower <= upper).all()
    assert lower[1] == 0.0 and upper[1] == pytest.approx(band.high)  # scale 1 at 0
    assert (upper[4:] > predicted[4:]).all()
