"""forecast: hgb's history stage on the real slice (no leak past the cut-off, the calendar fallback,
save/load, history off, a window too short, the same features in training and serving)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

import velocast.ml.forecast as forecast_module
import velocast.ml.history_stage as history_stage_module
from tests.unit.ml.real_slice import COUNTERS, TEST_START, UNSEEN
from velocast.ml.calendar import local_clock, utc_nanoseconds
from velocast.ml.forecast import Forecast, fit_history, forecast
from velocast.ml.history import HISTORY_FEATURES, HistoryFeatures, HourlyGrid, history_features
from velocast.ml.history_stage import (
    WARM_UP_DAYS,
    HistoryStage,
    HistoryStageError,
    Outcomes,
    training_last_usable_day,
)
from velocast.ml.model_base import ModelError, load_model
from velocast.ml.models import HistGradientBoostingModel, build_model

HISTORY_ON: dict[str, Any] = {
    "history": True,
    "max_iter": 40,
    "min_samples_leaf": 20,
    "interval_calibration_days": 7,
}
FORECAST_FIELDS = ("values", "lower", "upper", "calendar_values", "history_used")


def local_days(frame: pd.DataFrame) -> np.ndarray:
    return local_clock(utc_nanoseconds(frame["counted_at"]))[1].astype(np.int64)


def day_of(stamp: pd.Timestamp) -> int:
    return int(np.datetime64(stamp.date(), "D").astype(np.int64))


def identical(first: Forecast, second: Forecast, mask: np.ndarray | None = None) -> bool:
    rows = slice(None) if mask is None else mask
    return all(
        np.array_equal(getattr(first, name)[rows], getattr(second, name)[rows], equal_nan=True)
        for name in FORECAST_FIELDS
    )


def scaled(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame`` with the counts of ``mask`` × 10 + 1000."""
    changed = frame.copy()
    changed.loc[mask, "hourly_count"] = changed.loc[mask, "hourly_count"] * 10 + 1000
    return changed


@pytest.fixture(autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """The stage's own ``predict`` in ``forecast`` runs without the model's thread limit: on a busy
    machine, OpenMP threads make each small forecast ~40 times slower (the results are the same)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def model(train: pd.DataFrame) -> HistGradientBoostingModel:
    days = local_days(train)
    # The slice must leave days to fit on after the warm-up (and a calibration slice after them).
    assert days.max() - days.min() + 1 >= WARM_UP_DAYS + 10
    fitted = build_model("hgb", HISTORY_ON).fit(train)
    assert isinstance(fitted, HistGradientBoostingModel)
    assert isinstance(fitted.history_stage, HistoryStage)
    return fitted


@pytest.fixture(scope="module")
def targets(test_frame: pd.DataFrame) -> pd.DataFrame:
    return test_frame[["counter_id", "counted_at"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def cut_off() -> int:
    """A publication lag of 2 days before the test week's first day."""
    return day_of(TEST_START) - 3


# --- leakage ------------------------------------------------------------------------------------


def test_counts_after_the_cut_off_change_nothing(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    base = forecast(model, targets, slice_frame, cut_off)
    assert base.history_used.all()  # every counter has counts up to the cut-off (UNSEEN's too)
    assert np.isfinite(base.lower).all() and np.isfinite(base.upper).all()
    after = local_days(slice_frame) > cut_off
    assert after.any()
    assert identical(base, forecast(model, targets, scaled(slice_frame, after), cut_off))
    assert identical(base, forecast(model, targets, slice_frame[~after], cut_off))
    # The cut-off day itself is read: the forecasts move.
    moved = forecast(model, targets, scaled(slice_frame, local_days(slice_frame) == cut_off), cut_off)
    assert not np.array_equal(moved.values, base.values)
    assert np.array_equal(moved.calendar_values, base.calendar_values)


def test_per_row_cut_offs_read_nothing_after_each_row_s(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame
) -> None:
    day = local_days(targets)
    cut_offs = training_last_usable_day(day, 2, 3)
    base = forecast(model, targets, slice_frame, cut_offs)
    history_day = local_days(slice_frame)
    assert len(np.unique(cut_offs)) >= 3
    for cut in np.unique(cut_offs):
        group = cut_offs == cut
        after = history_day > cut
        assert identical(base, forecast(model, targets, scaled(slice_frame, after), cut_offs), group), cut
        assert identical(base, forecast(model, targets, slice_frame[~after], cut_offs), group), cut
        on_cut = forecast(model, targets, scaled(slice_frame, history_day == cut), cut_offs)
        assert not np.array_equal(on_cut.values[group], base.values[group]), cut


def test_a_row_s_own_day_is_never_read(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame
) -> None:
    day = local_days(targets)
    late = int(day.max()) + 5  # a cut-off after every row: each still stops the day before it
    base = forecast(model, targets, slice_frame, late)
    history_day = local_days(slice_frame)
    for target_day in np.unique(day):
        group = day == target_day
        later = history_day >= target_day
        assert identical(base, forecast(model, targets, scaled(slice_frame, later), late), group)
        assert identical(base, forecast(model, targets, slice_frame[~later], late), group)
    assert identical(base, forecast(model, targets, slice_frame, day - 1))


# --- the calendar fallback ----------------------------------------------------------------------


def test_counters_without_usable_history_fall_back_to_the_calendar(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    known, new = COUNTERS[0], COUNTERS[1]
    unknown = targets[targets["counter_id"] == known].assign(counter_id="999-not-a-counter")
    rows = pd.concat([targets, unknown], ignore_index=True)
    # ``new``: counted only after the cut-off (a counter installed since).
    history = slice_frame[(slice_frame["counter_id"] != new) | (local_days(slice_frame) > cut_off)]
    result = forecast(model, rows, history, cut_off)

    fallback = rows["counter_id"].isin([new, "999-not-a-counter"]).to_numpy()
    assert fallback.sum() == 2 * (targets["counter_id"] == known).sum() > 0
    assert not result.history_used[fallback].any()
    assert result.history_used[~fallback].all()
    assert np.array_equal(result.values[fallback], result.calendar_values[fallback])
    assert not np.array_equal(result.values[~fallback], result.calendar_values[~fallback])
    for bound in (result.lower, result.upper):
        assert np.isfinite(bound).all() and (bound >= 0).all()
    assert (result.lower <= result.upper).all()
    assert result.unseen_counters == tuple(sorted({UNSEEN, "999-not-a-counter"}))
    # The fallback band is the calendar's own, not the stage's.
    stage = model.history_stage
    assert stage is not None
    lower, upper = stage.calendar_band.bounds(result.values[fallback])
    assert np.array_equal(result.lower[fallback], lower) and np.array_equal(result.upper[fallback], upper)


def test_no_history_or_no_cut_off_is_the_calendar_without_a_band(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    for result in (forecast(model, targets, None, cut_off), forecast(model, targets, slice_frame, None)):
        assert not result.history_used.any()
        assert np.isnan(result.lower).all() and np.isnan(result.upper).all()
        assert np.array_equal(result.values, model.predict(targets))


def test_a_row_without_counter_is_refused(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    holed = targets.astype({"counter_id": "string"})
    holed.loc[0, "counter_id"] = pd.NA
    with pytest.raises(ModelError, match="needs a counter_id"):
        forecast(model, holed, slice_frame, cut_off)


def test_an_empty_history_falls_back_to_the_calendar(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    result = forecast(model, targets, slice_frame.iloc[:0], cut_off)
    assert not result.history_used.any()
    assert np.array_equal(result.values, result.calendar_values)


# --- the model: save/load, history off, too short a window --------------------------------------


def test_saved_and_loaded_forecasts_identically(
    model: HistGradientBoostingModel,
    targets: pd.DataFrame,
    slice_frame: pd.DataFrame,
    cut_off: int,
    tmp_path: Path,
) -> None:
    loaded = load_model(model.save(tmp_path / "hgb-history.joblib"))
    assert isinstance(loaded, HistGradientBoostingModel)
    assert isinstance(loaded.history_stage, HistoryStage)
    assert loaded.hyperparams == model.hyperparams and loaded.hyperparams["history"] is True
    per_row = training_last_usable_day(local_days(targets), 2, 2)
    for cut in (cut_off, per_row):
        before, after = (
            forecast(model, targets, slice_frame, cut),
            forecast(loaded, targets, slice_frame, cut),
        )
        assert before.history_used.any()
        assert identical(before, after)


def test_history_off_forecasts_the_calendar_without_a_band(
    train: pd.DataFrame, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    off = build_model("hgb", {"max_iter": 40, "min_samples_leaf": 20}).fit(train)
    assert isinstance(off, HistGradientBoostingModel) and off.history_stage is None
    result = forecast(off, targets, slice_frame, cut_off)
    assert not result.history_used.any()
    assert np.isnan(result.lower).all() and np.isnan(result.upper).all()
    assert np.array_equal(result.values, off.predict(targets))
    assert np.array_equal(result.values, result.calendar_values)


@pytest.mark.parametrize(
    "days",
    [
        1,
        20,
        25,
    ],
)
def test_a_window_too_short_for_the_warm_up_is_refused(train: pd.DataFrame, days: int) -> None:
    day = local_days(train)
    short = train[day < day.min() + days]
    model = build_model("hgb", HISTORY_ON)
    with pytest.raises(HistoryStageError, match=rf"\({days} days\).*{WARM_UP_DAYS} days of warm-up") as info:
        model.fit(short)
    assert isinstance(info.value, ModelError)
    # The same window fits without the stage.
    assert build_model("hgb", {**HISTORY_ON, "history": False}).fit(short).is_fitted


# --- training/serving parity ----------------------------------------------------------------------


def spy(calls: list[tuple[tuple[Any, ...], HistoryFeatures]]) -> Callable[..., HistoryFeatures]:
    def wrapper(*args: Any, **kwargs: Any) -> HistoryFeatures:
        assert not kwargs
        result = history_features(*args)
        calls.append((args, result))
        return result

    return wrapper


def test_training_and_serving_compute_the_same_features(
    model: HistGradientBoostingModel, train: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = model.history_stage
    assert stage is not None
    lag, horizon = stage.lag_days, stage.horizon_days
    trained: list[tuple[tuple[Any, ...], HistoryFeatures]] = []
    served: list[tuple[tuple[Any, ...], HistoryFeatures]] = []
    monkeypatch.setattr(history_stage_module, "history_features", spy(trained))
    monkeypatch.setattr(forecast_module, "history_features", spy(served))

    fit_history(
        model,
        lambda: build_model("hgb", {**model.hyperparams, "history": False}),
        train,
        estimator=HistGradientBoostingRegressor(max_iter=5),
        weights=None,
        lag_days=lag,
        horizon_days=horizon,
        coverage=0.8,
        calibration_days=7,
        recent_days=stage.recent_days,
    )
    cut_offs = training_last_usable_day(local_days(train), lag, horizon)
    forecast(model, train[["counter_id", "counted_at"]], train, cut_offs)
    # Training reads the features twice: through the serving calendar model (what the stage is fitted
    # on), then through one fitted before the calibration slice (what the slice is calibrated on).
    # Serving reads them once: the recent days of these cut-offs are training days, whose errors
    # are the slice's stored scores (no forecast of them is made).
    assert stage.recent_days > 0
    assert len(trained) == 2 and len(served) == 1
    (train_args, train_features), (serve_args, serve_features) = trained[0], served[0]
    out_of_sample_args = trained[1][0]
    assert out_of_sample_args[0] is train_args[0] and out_of_sample_args[2] is train_args[2]
    assert np.array_equal(out_of_sample_args[3], train_args[3])
    assert not np.array_equal(out_of_sample_args[4], train_args[4])  # another calendar model

    # The same grids, rows, cut-offs and calendar expectation go in ...
    for grid_index in (0, 1):
        train_grid, serve_grid = train_args[grid_index], serve_args[grid_index]
        assert train_grid.counters == serve_grid.counters and train_grid.first_day == serve_grid.first_day
        assert np.array_equal(train_grid.values, serve_grid.values, equal_nan=True)
    for name in ("counter", "day", "hour"):
        assert np.array_equal(getattr(train_args[2], name), getattr(serve_args[2], name))
    assert np.array_equal(train_args[3], serve_args[3])
    assert np.array_equal(train_args[4], serve_args[4])
    # ... and the same features come out, equal to a direct computation through the same grids.
    actual = HourlyGrid.of_frame(train)
    located = actual.locate(train["counter_id"].astype(str).tolist(), utc_nanoseconds(train["counted_at"]))
    expected = HourlyGrid.of_rows(actual.counters, located, model.predict(train))
    direct = history_features(actual, expected, located, cut_offs, model.predict(train))
    assert direct.used.mean() > 0.5
    for name in HISTORY_FEATURES:
        assert np.array_equal(train_features.columns[name], serve_features.columns[name], equal_nan=True)
        assert np.array_equal(train_features.columns[name], direct.columns[name], equal_nan=True)


# --- bands that follow the recent errors ---------------------------------------------------------


def test_too_few_recent_errors_leave_the_calibrated_band(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    stage = model.history_stage
    assert stage is not None and stage.recent_days == 28
    assert cut_off <= stage.last_training_day  # every recent day is a training day
    pooled = [
        outcomes for day, outcomes in stage.calibration_outcomes.items() if cut_off - 28 < day <= cut_off
    ]
    assert 0 < sum(len(outcomes) for outcomes in pooled) < 500  # 5 counters, a short slice
    result = forecast(model, targets, slice_frame, cut_off)
    blended = stage.weight * result.history_values + (1 - stage.weight) * result.calendar_values
    assert np.array_equal(result.values, blended)
    lower, upper = stage.band.bounds(result.values)
    assert np.array_equal(result.lower, lower) and np.array_equal(result.upper, upper)


def test_after_the_training_window_blend_and_band_follow_the_recent_outcomes(
    model: HistGradientBoostingModel, targets: pd.DataFrame, slice_frame: pd.DataFrame
) -> None:
    stage = model.history_stage
    assert stage is not None
    day = local_days(targets)
    last_day = int(day.max())
    on_last_day = targets[day == last_day].reset_index(drop=True)
    cut = last_day - 1
    result = forecast(model, on_last_day, slice_frame, cut)
    # The days after training, forecast as the stage forecasts any day (each from its own cut-off)…
    history_day = local_days(slice_frame)
    live = slice_frame[(history_day > stage.last_training_day) & (history_day <= cut)].reset_index(drop=True)
    assert len(live) > 0
    past = forecast(
        model,
        live,
        slice_frame,
        training_last_usable_day(local_days(live), stage.lag_days, stage.horizon_days),
    )
    used = past.history_used
    live_outcomes = Outcomes(
        live["hourly_count"].to_numpy(dtype=np.float64)[used],
        past.history_values[used],
        past.calendar_values[used],
    )
    # … pooled with the slice's outcomes of the recent training days.
    stored = [
        outcomes
        for d, outcomes in stage.calibration_outcomes.items()
        if cut - 28 < d <= stage.last_training_day
    ]
    weight, band = Outcomes.pooled([live_outcomes, *stored]).blend(0.8)
    expected = weight * result.history_values + (1.0 - weight) * result.calendar_values
    assert np.array_equal(result.values, expected)
    lower, upper = band.bounds(result.values)
    assert np.array_equal(result.lower, lower) and np.array_equal(result.upper, upper)
    # Not what training chose (the whole slice is in this window): the checks above can fail.
    assert weight != stage.weight and band != stage.band


def test_without_recent_days_the_calibrated_band_is_used(
    train: pd.DataFrame, targets: pd.DataFrame, slice_frame: pd.DataFrame, cut_off: int
) -> None:
    fixed = build_model("hgb", {**HISTORY_ON, "interval_recent_days": 0}).fit(train)
    assert isinstance(fixed, HistGradientBoostingModel) and fixed.history_stage is not None
    result = forecast(fixed, targets, slice_frame, cut_off)
    stage = fixed.history_stage
    assert np.array_equal(
        result.values, stage.weight * result.history_values + (1 - stage.weight) * result.calendar_values
    )
    lower, upper = stage.band.bounds(result.values)
    assert np.array_equal(result.lower, lower) and np.array_equal(result.upper, upper)


def test_the_stage_summary_scores_the_slice_out_of_sample(model: HistGradientBoostingModel) -> None:
    stage = model.history_stage
    assert stage is not None
    summary = stage.summary()
    pooled = Outcomes.pooled(list(stage.calibration_outcomes.values()))
    actual = pooled.actual.astype(np.float64)
    blended = stage.weight * pooled.staged + (1 - stage.weight) * pooled.calendar
    r2 = 1 - np.sum((actual - blended) ** 2) / np.sum((actual - actual.mean()) ** 2)
    assert summary["slice_r2"] == pytest.approx(r2)
    assert summary["weight"] == stage.weight and summary["calibration_rows"] == len(pooled)
    assert summary["band_low"] == stage.band.low and summary["band_high"] == stage.band.high
    # The slice's band covers the slice's blend as calibrated.
    lower, upper = stage.band.bounds(np.asarray(blended, dtype=np.float64))
    assert np.mean((lower <= actual) & (actual <= upper)) == pytest.approx(0.8, abs=0.02)
