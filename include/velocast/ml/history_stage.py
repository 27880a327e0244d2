"""The history stage of ``hgb``: calendar + recent history → the count, with a calibrated interval.

The calendar model (stage 1) forecasts from the counter and the hour alone. This second stage
reads its expectation *and* what the counter did recently (``velocast.ml.history``) and forecasts
the count again. It is fitted on the training window itself, each row with the cut-off a forecast
would have had: a publication lag of ``lag_days`` and a horizon of 1 … ``horizon_days`` days, so a
row of day D sees the days up to D − lag − horizon only (the same function serves both paths).

Its features leave out the counter's identity on purpose: the history says what level the counter
is at, and a forecast that keys on the counter re-learns last year's level.

Intervals are split-conformal: the stage is fitted on the window minus its last
``calibration_days`` (a temporal calibration slice, never seen by the fit, and forecast with a
calendar model fitted without it too: the caller's job, see ``velocast.ml.forecast``), and the quantiles of
the residuals there, scaled by ``sqrt(prediction + 1)`` (counts are roughly Poisson: their spread
grows with their level), give each prediction its band. Rows without usable history fall back to
the calendar forecast, with a band calibrated the same way on the calendar model's residuals on
the slice (of its twin fitted before the slice); the response flags those rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from velocast.ml.evaluation import score
from velocast.ml.history import HISTORY_FEATURES, HistoryFeatures, HourlyGrid, LocalRows, history_features
from velocast.ml.model_base import SINGLE_THREAD_ROWS, ModelError

# A row is fitted on when it can have history: three weeks after the first day of the window.
WARM_UP_DAYS: Final = 21
# The calibration slice is at most this share of the days the stage can be fitted on.
MAX_CALIBRATION_SHARE: Final = 0.25
MIN_FIT_ROWS: Final = 1_000


class HistoryStageError(ModelError):
    """The training window is too short for a history stage."""


def conformity_scores(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``(actual - predicted) / sqrt(predicted + 1)``: errors on the scale of a count's spread."""
    scores: np.ndarray = (actual - predicted) / np.sqrt(np.clip(predicted, 0.0, None) + 1.0)
    return scores


@dataclass(frozen=True)
class IntervalBand:
    """Quantiles of ``(actual - predicted) / sqrt(predicted + 1)`` on the calibration slice."""

    low: float
    high: float
    coverage: float
    calibration_rows: int

    def bounds(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = np.sqrt(np.clip(predicted, 0.0, None) + 1.0)
        return np.clip(predicted + self.low * scale, 0.0, None), np.clip(
            predicted + self.high * scale, 0.0, None
        )

    @classmethod
    def calibrate(cls, actual: np.ndarray, predicted: np.ndarray, coverage: float) -> IntervalBand:
        return cls.of_scores(conformity_scores(actual, predicted), coverage)

    @classmethod
    def of_scores(cls, scores: np.ndarray, coverage: float) -> IntervalBand:
        tail = (1.0 - coverage) / 2.0
        low, high = np.quantile(scores, [tail, 1.0 - tail])
        return cls(low=float(low), high=float(high), coverage=coverage, calibration_rows=len(scores))


@dataclass(frozen=True)
class StageForecast:
    values: np.ndarray  # weight × staged + (1 − weight) × calendar where history was used
    lower: np.ndarray
    upper: np.ndarray
    history_used: np.ndarray  # bool: False where the calendar forecast stands alone
    staged: np.ndarray  # the stage's own forecast (the calendar's where history was not used)
    calendar: np.ndarray


@dataclass(frozen=True)
class Outcomes:
    """Actual counts beside the stage's and the calendar's forecasts of them (float32, one row each)."""

    actual: np.ndarray
    staged: np.ndarray
    calendar: np.ndarray

    def __len__(self) -> int:
        return len(self.actual)

    @classmethod
    def pooled(cls, parts: list[Outcomes]) -> Outcomes:
        return cls(
            *(
                np.concatenate([getattr(part, name) for part in parts])
                for name in ("actual", "staged", "calendar")
            )
        )

    def subset(self, rows: np.ndarray) -> Outcomes:
        return Outcomes(self.actual[rows], self.staged[rows], self.calendar[rows])

    def blend(self, coverage: float) -> tuple[float, IntervalBand]:
        """The blend weight with the least squared error on these rows, and the band of that blend."""
        actual, staged, calendar = (
            np.asarray(v, dtype=np.float64) for v in (self.actual, self.staged, self.calendar)
        )
        weight = blend_weight(actual, staged, calendar)
        return weight, IntervalBand.calibrate(actual, weight * staged + (1.0 - weight) * calendar, coverage)


@dataclass
class HistoryStage:
    estimator: HistGradientBoostingRegressor
    feature_names: tuple[str, ...]
    band: IntervalBand
    calendar_band: IntervalBand
    lag_days: int
    horizon_days: int
    # > 0: each forecast's band comes from the stage's errors on the last days before its cut-off
    # (``velocast.ml.forecast``); 0: ``band`` for every forecast.
    recent_days: int = 0
    # The forecast is weight × the stage's + (1 − weight) × the calendar's (chosen on the slice).
    weight: float = 1.0
    # The slice's out-of-sample outcomes by local day: the recent errors of the days the stage was
    # refitted on, where its own errors would be in-sample (too small).
    calibration_outcomes: Mapping[int, Outcomes] = field(default_factory=dict)
    last_training_day: int = 0

    def summary(self) -> dict[str, float]:
        """What a run should log: the blend, the band and the slice's scores (out of sample)."""
        slice_outcomes = Outcomes.pooled(list(self.calibration_outcomes.values()))
        actual = np.asarray(slice_outcomes.actual, dtype=np.float64)
        blended = self.weight * slice_outcomes.staged + (1.0 - self.weight) * slice_outcomes.calendar
        return {
            "weight": self.weight,
            "band_low": self.band.low,
            "band_high": self.band.high,
            "band_coverage": self.band.coverage,
            "calibration_rows": float(self.band.calibration_rows),
            "slice_r2": score(actual, blended).r2,
            "slice_calendar_r2": score(actual, slice_outcomes.calendar).r2,
            "recent_days": float(self.recent_days),
        }

    def forecast(
        self,
        calendar_columns: Mapping[str, np.ndarray],
        history: HistoryFeatures,
        calendar_expectation: np.ndarray,
    ) -> StageForecast:
        used = history.used
        calendar = np.asarray(calendar_expectation, dtype=np.float64)
        staged = calendar.copy()
        if used.any():
            matrix = _matrix(calendar_columns, history, self.feature_names)[used]
            with threadpool_limits(limits=1 if len(matrix) < SINGLE_THREAD_ROWS else None, user_api="openmp"):
                staged[used] = np.clip(self.estimator.predict(matrix), 0.0, None)
        values = np.where(used, self.weight * staged + (1.0 - self.weight) * calendar, calendar)
        lower, upper = self.band.bounds(values)
        calendar_lower, calendar_upper = self.calendar_band.bounds(values)
        return StageForecast(
            values=values,
            lower=np.where(used, lower, calendar_lower),
            upper=np.where(used, upper, calendar_upper),
            history_used=used,
            staged=staged,
            calendar=calendar,
        )


def _matrix(
    calendar_columns: Mapping[str, np.ndarray], history: HistoryFeatures, names: tuple[str, ...]
) -> pd.DataFrame:
    columns = {**calendar_columns, **history.columns}
    return pd.DataFrame({name: np.asarray(columns[name], dtype=np.float64) for name in names})


def training_last_usable_day(day: np.ndarray, lag_days: int, horizon_days: int) -> np.ndarray:
    """The cut-off of each training row: lag + a horizon of 1 … ``horizon_days`` days, by day."""
    horizon = 1 + np.mod(day, horizon_days)
    result: np.ndarray = day - lag_days - horizon
    return result


def blend_weight(actual: np.ndarray, staged: np.ndarray, calendar: np.ndarray) -> float:
    """The weight w in [0, 1] of w × staged + (1 − w) × calendar with the least squared error."""
    difference = staged - calendar
    denominator = float(np.dot(difference, difference))
    if denominator == 0.0:
        return 1.0
    return float(np.clip(np.dot(difference, actual - calendar) / denominator, 0.0, 1.0))


def calibration_start_day(day: np.ndarray, calibration_days: int) -> int:
    """First local day of the calibration slice: the window's last days, at most a quarter of it."""
    first_day, last_day = int(day.min()), int(day.max())
    eligible_days = last_day - (first_day + WARM_UP_DAYS) + 1
    slice_days = int(min(calibration_days, max(1, eligible_days * MAX_CALIBRATION_SHARE)))
    return last_day - slice_days + 1


@dataclass(frozen=True)
class CalendarView:
    """A calendar model's expectation of every cell of the actuals grid, and of each training row."""

    expected: HourlyGrid
    expectation: np.ndarray


def fit_history_stage(
    *,
    actual: HourlyGrid,
    rows: LocalRows,
    target: np.ndarray,
    fitted: CalendarView,
    out_of_sample: CalendarView,
    calendar_columns: Mapping[str, np.ndarray],
    weights: np.ndarray | None,
    estimator: HistGradientBoostingRegressor,
    lag_days: int,
    horizon_days: int,
    coverage: float,
    calibration_days: int,
    recent_days: int = 0,
    refit: bool = True,
) -> HistoryStage:
    """Fit the stage on the training rows (located on ``actual``) before the slice, calibrate on it.

    ``fitted`` is the calendar model that will serve (fitted on every row); ``out_of_sample`` one
    fitted before the calibration slice. The stage learns from the first, as it will be used; the
    slice is forecast through the second, so that its errors are those of days no stage has seen.
    """
    last_usable = training_last_usable_day(rows.day, lag_days, horizon_days)
    history = history_features(actual, fitted.expected, rows, last_usable, fitted.expectation)
    first_day, last_day = int(rows.day.min()), int(rows.day.max())
    eligible = (rows.day >= first_day + WARM_UP_DAYS) & history.used
    in_slice = rows.day >= calibration_start_day(rows.day, calibration_days)
    fit_rows = eligible & ~in_slice
    calibration_rows = eligible & in_slice
    if fit_rows.sum() < MIN_FIT_ROWS or calibration_rows.sum() == 0:
        raise HistoryStageError(
            f"the training window ({last_day - first_day + 1} days) is too short for the history stage: it "
            f"needs {WARM_UP_DAYS} days of warm-up, {MIN_FIT_ROWS} rows to fit and a calibration slice"
        )
    feature_names = (*calendar_columns, *HISTORY_FEATURES)
    matrix = _matrix(calendar_columns, history, feature_names)
    estimator.fit(
        matrix[fit_rows], target[fit_rows], sample_weight=None if weights is None else weights[fit_rows]
    )
    calibration_history = history_features(
        actual, out_of_sample.expected, rows, last_usable, out_of_sample.expectation
    )
    calibration_matrix = _matrix(calendar_columns, calibration_history, feature_names)[calibration_rows]
    outcomes = Outcomes(
        actual=target[calibration_rows].astype(np.float32),
        staged=np.clip(estimator.predict(calibration_matrix), 0.0, None).astype(np.float32),
        calendar=out_of_sample.expectation[calibration_rows].astype(np.float32),
    )
    weight, band = outcomes.blend(coverage)
    outcome_day = rows.day[calibration_rows]
    by_day = {int(day): outcomes.subset(outcome_day == day) for day in np.unique(outcome_day)}
    if refit:  # the slice's days are the most recent: fit on them too, now that they have served
        estimator = clone(estimator)
        every_row = fit_rows | calibration_rows
        estimator.fit(
            matrix[every_row],
            target[every_row],
            sample_weight=None if weights is None else weights[every_row],
        )
    return HistoryStage(
        estimator=estimator,
        feature_names=feature_names,
        weight=weight,
        calibration_outcomes=by_day,
        last_training_day=last_day,
        band=band,
        calendar_band=IntervalBand.calibrate(
            target[calibration_rows], out_of_sample.expectation[calibration_rows], coverage
        ),
        lag_days=lag_days,
        horizon_days=horizon_days,
        recent_days=recent_days,
    )


__all__ = [
    "CalendarView",
    "HistoryStage",
    "HistoryStageError",
    "IntervalBand",
    "Outcomes",
    "StageForecast",
    "blend_weight",
    "calibration_start_day",
    "conformity_scores",
    "fit_history_stage",
    "training_last_usable_day",
]
