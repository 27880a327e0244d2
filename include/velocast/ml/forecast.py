"""Forecasts with recent history: fitting ``hgb``'s history stage, and forecasting through it.

``fit_history(model, train)`` is what ``HistGradientBoostingModel.fit`` runs after the calendar
model when its ``history`` hyper-parameter is on; ``forecast(model, targets, history, last_usable_day)``
forecasts rows from the actuals of ``history`` up to each row's last usable local day, with an
interval and a flag saying whether history was used; each cut-off's blend of history and calendar
and its band come from the outcomes of the days just before it (``_recent_blends``). A model
without a history stage (``rf``, ``hgb`` with ``history`` off) forecasts from the calendar, every
row flagged so, without a band.

Training and serving build the history features through the same function
(``velocast.ml.history.history_features``), from the same grids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from velocast.ml.broken import BrokenAsOf, BrokenCells
from velocast.ml.calendar import local_days, utc_nanoseconds
from velocast.ml.features import calendar_arrays
from velocast.ml.history import (
    HISTORY_FEATURES,
    NO_COUNTER,
    WINDOW_DAYS,
    HistoryFeatures,
    HourlyGrid,
    LocalRows,
    history_features,
    local_rows,
)
from velocast.ml.history_stage import (
    WARM_UP_DAYS,
    CalendarView,
    HistoryStage,
    HistoryStageError,
    IntervalBand,
    Outcomes,
    StageForecast,
    calibration_start_day,
    fit_history_stage,
    training_last_usable_day,
)
from velocast.ml.model_base import TARGET, ModelError, VelocastModel, counted_rows

# Fewer recent errors than this (a handful of counters, a gap): the calibrated band stays.
MIN_RECENT_OUTCOMES: Final = 500

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor


@dataclass(frozen=True)
class Forecast:
    """Forecasts of rows: the value, its interval, the calendar model's own value, and provenance."""

    values: np.ndarray
    lower: np.ndarray  # NaN where the model has no calibrated band
    upper: np.ndarray
    calendar_values: np.ndarray
    # The history stage's own forecast (``values`` blends it with the calendar's); the calendar's
    # where history was not used.
    history_values: np.ndarray
    history_used: np.ndarray  # bool
    # bool: the counter's loop read as broken in the week up to the cut-off (``drop_broken_runs``
    # models): its broken counts were skipped and its forecast keeps its level from before.
    recent_broken: np.ndarray
    unseen_counters: tuple[str, ...]
    unseen_counter_rows: int


@dataclass(frozen=True)
class PreparedHistory:
    """History rows on the grid, with the calendar model's expectation of every cell: built once
    (``prepare_history``), read by every forecast from it (each horizon of a backtest, say)."""

    rows: pd.DataFrame  # the counted rows, in order
    utc_ns: np.ndarray  # their instants
    located: LocalRows  # their cells on ``actual``
    actual: HourlyGrid
    expected: HourlyGrid
    # Broken runs as known by each cut-off, for models that leave them out (``drop_broken_runs``).
    broken: BrokenAsOf | None


def prepare_history(
    model: VelocastModel, history: pd.DataFrame, expectation: np.ndarray | None = None
) -> PreparedHistory:
    """``history``'s counted rows on a grid, and ``model``'s expectation of the same cells.

    ``expectation``: the model's predictions of those rows, if already made.
    """
    rows = counted_rows(history)
    counts = HourlyGrid.of_counted(rows, TARGET)
    if expectation is None:
        expectation = model.predict(rows) if len(rows) else np.zeros(0)
    actual = counts.grid
    expected = HourlyGrid.of_rows(actual.counters, counts.located, expectation)
    # Models that leave broken runs out of their fit skip them in the history too.
    broken = BrokenAsOf(actual, expected) if model.hyperparams.get("drop_broken_runs") else None
    return PreparedHistory(rows, counts.utc_ns, counts.located, actual, expected, broken)


def fit_history(
    model: VelocastModel,
    calendar_model: Callable[[], VelocastModel],
    train: pd.DataFrame,
    *,
    estimator: HistGradientBoostingRegressor,
    weights: np.ndarray | None,
    lag_days: int,
    horizon_days: int,
    coverage: float,
    calibration_days: int,
    recent_days: int,
) -> HistoryStage:
    """Fit the history stage of a fitted calendar ``model`` on its training rows (``train``).

    ``calendar_model()`` is an unfitted twin of ``model``. It is fitted on the rows before the
    calibration slice and forecasts the slice's calendar expectations, so that the slice is out of
    sample for both stages, as the days forecast in production are (``model`` itself saw the slice:
    its errors there, and so the intervals, would be too small).
    """
    rows = counted_rows(train).reset_index(drop=True)
    day = local_days(rows["counted_at"])
    before_slice = rows[day < calibration_start_day(day, calibration_days)]
    if before_slice.empty:
        raise HistoryStageError(
            f"the training window ({len(np.unique(day))} days) is too short for the history stage: it "
            f"needs {WARM_UP_DAYS} days of warm-up, rows to fit and a calibration slice"
        )
    early = calendar_model().fit(before_slice)
    expectation, early_expectation = model.predict(rows), early.predict(rows)
    prepared = prepare_history(model, rows, expectation)
    early_expected = HourlyGrid.of_rows(prepared.actual.counters, prepared.located, early_expectation)
    return fit_history_stage(
        actual=prepared.actual,
        rows=prepared.located,
        target=rows[TARGET].to_numpy(dtype=np.float64),
        fitted=CalendarView(expected=prepared.expected, expectation=expectation),
        out_of_sample=CalendarView(expected=early_expected, expectation=early_expectation),
        calendar_columns=calendar_arrays(prepared.utc_ns).calendar_columns(),
        weights=weights,
        estimator=estimator,
        lag_days=lag_days,
        horizon_days=horizon_days,
        coverage=coverage,
        calibration_days=calibration_days,
        recent_days=recent_days,
    )


def history_stage_of(model: VelocastModel) -> HistoryStage | None:
    stage = getattr(model, "history_stage", None)
    return stage if isinstance(stage, HistoryStage) else None


def forecast(
    model: VelocastModel,
    targets: pd.DataFrame,
    history: pd.DataFrame | PreparedHistory | None,
    last_usable_day: np.ndarray | int | None,
) -> Forecast:
    """Forecast ``targets`` (``counter_id``, ``counted_at``) from the counts in ``history`` (a
    frame, or ``prepare_history``'s of it for ``model`` when several forecasts read the same).

    Each row reads only the days of ``history`` up to its ``last_usable_day`` (local days since
    1970-01-01, one for all rows or one per row; ``velocast.ml.history.last_complete_day`` turns a
    data cut-off instant into one) and never its own day or later.
    """
    calendar = model.predict_with_report(targets)
    n = len(targets)
    stage = history_stage_of(model)
    if stage is None or history is None or last_usable_day is None or n == 0:
        return Forecast(
            values=calendar.values,
            lower=np.full(n, np.nan),
            upper=np.full(n, np.nan),
            calendar_values=calendar.values,
            history_values=calendar.values,
            history_used=np.zeros(n, dtype=bool),
            recent_broken=np.zeros(n, dtype=bool),
            unseen_counters=calendar.unseen_counters,
            unseen_counter_rows=calendar.unseen_counter_rows,
        )
    if targets["counter_id"].isna().any() or targets["counted_at"].isna().any():
        raise ModelError("every row to forecast needs a counter_id and a counted_at")
    prepared = history if isinstance(history, PreparedHistory) else prepare_history(model, history)
    utc_ns = utc_nanoseconds(targets["counted_at"])
    located = local_rows(targets["counter_id"].astype(str).tolist(), utc_ns, prepared.actual.counters)
    # A row never reads its own day or later, whatever the cut-off says (its band included).
    cut_off = np.minimum(np.asarray(last_usable_day, dtype=np.int64), located.day - 1)
    result, recent_broken = _stage_forecast(stage, located, utc_ns, calendar.values, prepared, cut_off)
    values, lower, upper = result.values.copy(), result.lower.copy(), result.upper.copy()
    if stage.recent_days > 0 and result.history_used.any():
        for last, (weight, band) in _recent_blends(
            model, stage, prepared, cut_off[result.history_used]
        ).items():
            rows = result.history_used & (cut_off == last)
            values[rows] = weight * result.staged[rows] + (1.0 - weight) * result.calendar[rows]
            lower[rows], upper[rows] = band.bounds(values[rows])
    return Forecast(
        values=values,
        lower=lower,
        upper=upper,
        calendar_values=calendar.values,
        history_values=result.staged,
        history_used=result.history_used,
        recent_broken=recent_broken,
        unseen_counters=calendar.unseen_counters,
        unseen_counter_rows=calendar.unseen_counter_rows,
    )


def _stage_forecast(
    stage: HistoryStage,
    rows: LocalRows,
    utc_ns: np.ndarray,
    calendar_values: np.ndarray,
    history: PreparedHistory,
    cut_off: np.ndarray,
) -> tuple[StageForecast, np.ndarray]:
    """The stage's forecast of rows (located on ``history``'s grid, at ``utc_ns``), and whether each
    row's counter read as broken in the week up to its cut-off (always False without
    ``history.broken``)."""
    recent_broken = np.zeros(len(rows.day), dtype=bool)
    if history.broken is None:
        features = history_features(history.actual, history.expected, rows, cut_off, calendar_values)
    else:  # one window per cut-off: the broken cells known by then are missing data
        columns = {name: np.full(len(rows.day), np.nan) for name in HISTORY_FEATURES}
        for last in np.unique(cut_off).tolist():
            group = np.flatnonzero(cut_off == last)
            masked, window_expected, cells = history.broken.window(last)
            located = rows.subset(group)
            part = history_features(masked, window_expected, located, cut_off[group], calendar_values[group])
            for name, values in part.columns.items():
                columns[name][group] = values
            recent_broken[group] = _broke_in_last_week(cells, located.counter, masked.first_day, last)
        features = HistoryFeatures(columns=columns)
    forecast = stage.forecast(calendar_arrays(utc_ns).calendar_columns(), features, calendar_values)
    return forecast, recent_broken


def _broke_in_last_week(cells: BrokenCells, counter: np.ndarray, first_day: int, last: int) -> np.ndarray:
    if not cells.runs:
        return np.zeros(len(counter), dtype=bool)
    start = max(last - WINDOW_DAYS + 1 - first_day, 0)
    broken_counters: np.ndarray = np.asarray(cells.mask[:, start:].any(axis=(1, 2)))
    result: np.ndarray = (counter != NO_COUNTER) & broken_counters[np.maximum(counter, 0)]
    return result


def _recent_blends(
    model: VelocastModel, stage: HistoryStage, history: PreparedHistory, cut_off: np.ndarray
) -> dict[int, tuple[float, IntervalBand]]:
    """Each cut-off's blend weight and band, from the outcomes of the ``recent_days`` up to it.

    Those days are forecast as the stage forecasts any day (each from its own earlier cut-off) and
    their counts are known by the cut-off. The weight of history against the calendar is the one
    that forecast them best, and the band is drawn from the errors of that blend: when the recent
    past misleads (a holiday month the history stage reads as a new normal), the calendar takes
    over; when the calendar is lost (a summer it has never seen), history does; the band widens
    when traffic turns unusual and narrows back when it settles. The days of the training window
    are the exception: the stage was fitted on them, so its errors there are too small; their
    outcomes are the calibration slice's, out of sample, kept by day in the stage. Too few recent
    outcomes: the weight and band chosen at training stay.
    """
    day = history.located.day
    cut_offs = np.unique(cut_off)
    live = Outcomes(np.zeros(0), np.zeros(0), np.zeros(0))
    live_cells = history.located.subset(np.zeros(0, dtype=np.intp))
    # Live outcomes after the training window; within it, the slice's.
    near = (day > max(cut_offs.min() - stage.recent_days, stage.last_training_day)) & (day <= cut_offs.max())
    if near.any():
        past, past_cells = history.rows[near], history.located.subset(near)
        past_forecast, _ = _stage_forecast(
            stage,
            past_cells,
            history.utc_ns[near],
            model.predict(past),
            history,
            training_last_usable_day(past_cells.day, stage.lag_days, stage.horizon_days),
        )
        used = past_forecast.history_used
        live = Outcomes(
            actual=past[TARGET].to_numpy(dtype=np.float64)[used],
            staged=past_forecast.staged[used],
            calendar=past_forecast.calendar[used],
        )
        live_cells = past_cells.subset(used)
    live_day = live_cells.day
    blends: dict[int, tuple[float, IntervalBand]] = {}
    for last in cut_offs.tolist():
        first = last - stage.recent_days + 1
        in_window = (live_day >= first) & (live_day <= last)
        if history.broken is not None and in_window.any():  # a broken loop's counts say nothing
            masked, _, _ = history.broken.window(last)
            index = np.flatnonzero(in_window & (live_day >= masked.first_day))
            cells = masked.values[
                live_cells.counter[index], live_day[index] - masked.first_day, live_cells.hour[index]
            ]
            in_window[index[np.isnan(cells)]] = False
        parts = [live.subset(in_window)]
        parts += [
            stage.calibration_outcomes[stored_day]
            for stored_day in range(first, min(last, stage.last_training_day) + 1)
            if stored_day in stage.calibration_outcomes
        ]
        recent = Outcomes.pooled(parts)
        if len(recent) >= MIN_RECENT_OUTCOMES:
            blends[last] = recent.blend(stage.band.coverage)
    return blends


__all__ = ["Forecast", "PreparedHistory", "fit_history", "forecast", "history_stage_of", "prepare_history"]
