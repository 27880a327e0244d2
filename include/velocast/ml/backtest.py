"""Rolling-origin backtest: forecast every day of a window as DAG 2 would have, and score it.

``run_backtest`` fits the model once on the rows before ``train_until`` (the same ``fit`` as
``velocast train``), then forecasts every local day D of [``start``, ``end``) at each horizon
h = 1 … ``horizon_days``: the forecast made h − 1 days before D, from a warehouse holding the
counts older than that day minus ``lag_days`` — so day D at horizon h reads the days up to
D − lag − h only (``velocast.ml.forecast.forecast`` enforces it row by row).

Every forecast is scored against the actual count, beside two peers on the very same rows: the
model's calendar-only twin (its first stage: what the model says without history) and the
same-hour-last-week baseline (the count at the same local hour 7 days earlier). Rows without a
last-week count are left out of every score, so the three are always compared on equal rows.
Metrics: R², RMSE, MAE, WAPE (Σ|error| / Σ actual), and the interval's coverage and mean width;
overall, per horizon and per ISO week, and overall without the counts of broken loops
(``velocast.ml.broken``, found on the whole data: scoring is no forecast).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.errors import RequestError
from velocast.ml.broken import broken_located_rows
from velocast.ml.calendar import local_days
from velocast.ml.evaluation import score
from velocast.ml.forecast import forecast, history_stage_of, prepare_history
from velocast.ml.history import HourlyGrid, LocalRows
from velocast.ml.model_base import TARGET, VelocastModel, counted_rows
from velocast.ml.model_types import DEFAULT_MODEL_TYPE
from velocast.ml.models import build_model

PARIS: Final = "Europe/Paris"
DEFAULT_LAG_DAYS: Final = 2
DEFAULT_HORIZON_DAYS: Final = 2
Progress = Callable[[str, float], None]


class BacktestError(RequestError, ValueError):
    """A backtest that cannot be run as asked (bad window, no rows to train on or to score)."""


@dataclass(frozen=True)
class BacktestWindow:
    train_until: pd.Timestamp  # local midnight: training rows are strictly before it
    start: pd.Timestamp  # first local day forecast
    end: pd.Timestamp  # first local day not forecast
    lag_days: int = DEFAULT_LAG_DAYS
    horizon_days: int = DEFAULT_HORIZON_DAYS

    @classmethod
    def of(
        cls,
        train_until: str,
        start: str,
        end: str,
        *,
        lag_days: int = DEFAULT_LAG_DAYS,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
    ) -> BacktestWindow:
        def local_midnight(text: str, name: str) -> pd.Timestamp:
            try:
                day = pd.Timestamp(text)
            except ValueError as error:
                raise BacktestError(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from error
            if day.tzinfo is not None or day != day.normalize():
                raise BacktestError(
                    f"{name}: {text!r} must be a local date (YYYY-MM-DD), without time or zone"
                )
            return day.tz_localize(PARIS)

        window = cls(
            train_until=local_midnight(train_until, "train_until"),
            start=local_midnight(start, "from"),
            end=local_midnight(end, "to"),
            lag_days=lag_days,
            horizon_days=horizon_days,
        )
        if not window.train_until <= window.start < window.end:
            raise BacktestError(
                f"the window must satisfy train_until ≤ from < to, got {train_until} / {start} / {end}"
            )
        if lag_days < 0 or not 1 <= horizon_days <= 7:
            raise BacktestError(
                f"lag_days must be ≥ 0 and horizon_days 1…7, got {lag_days} and {horizon_days}"
            )
        return window

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_until": self.train_until.date().isoformat(),
            "from": self.start.date().isoformat(),
            "to": self.end.date().isoformat(),
            "lag_days": self.lag_days,
            "horizon_days": self.horizon_days,
        }


@dataclass(frozen=True)
class BacktestResult:
    predictions: pd.DataFrame
    metrics: dict[str, Any]
    model: VelocastModel


def backtest_hyperparams(
    model_type: str, hyperparams: dict[str, Any] | None, window: BacktestWindow
) -> dict[str, Any]:
    """The model's hyper-parameters; ``hgb`` gets its history stage fitted for this lag and horizon."""
    merged = dict(hyperparams or {})
    if model_type == "hgb":
        merged.setdefault("history", True)
        merged.setdefault("history_lag_days", window.lag_days)
        merged.setdefault("history_horizon_days", window.horizon_days)
    return merged


def _day_number(day: pd.Timestamp) -> int:
    return int(np.datetime64(day.date(), "D").astype(np.int64))


def run_backtest(
    normalized: pd.DataFrame,
    window: BacktestWindow,
    *,
    model_type: str = DEFAULT_MODEL_TYPE,
    hyperparams: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """Fit on the rows before ``window.train_until``, forecast and score every day of the window."""
    report = progress or (lambda step, fraction: None)
    timings: dict[str, float] = {}
    rows = counted_rows(normalized).reset_index(drop=True)
    train = rows[rows["counted_at"] < window.train_until]
    if train.empty:
        raise BacktestError(f"no counted row before {window.train_until.date()} to train on")
    day = local_days(rows["counted_at"])
    in_window = (day >= _day_number(window.start)) & (day < _day_number(window.end))
    targets = rows[in_window].reset_index(drop=True)
    if targets.empty:
        raise BacktestError(f"no counted row from {window.start.date()} to {window.end.date()} to score")

    report(f"fitting {model_type} on {len(train):,} rows before {window.train_until.date()}", 0.0)
    started = time.perf_counter()
    model = build_model(model_type, backtest_hyperparams(model_type, hyperparams, window)).fit(train)
    timings["fit_s"] = time.perf_counter() - started

    target_day = day[in_window]
    # The history on the grid once, for every horizon, the baseline and the broken-run search.
    history = prepare_history(model, rows)
    last_week = _last_week(history.actual, history.located.subset(in_window))
    # Scoring may look at the whole data (it is not a forecast): counts read by a broken loop are
    # scored apart, since they measure the loop, not the traffic.
    broken_actual = broken_located_rows(history.actual, history.located)[0][in_window]
    frames = []
    for horizon in range(1, window.horizon_days + 1):
        report(f"forecasting {len(targets):,} rows at horizon {horizon}", horizon / (window.horizon_days + 1))
        started = time.perf_counter()
        result = forecast(model, targets, history, target_day - window.lag_days - horizon)
        timings[f"forecast_h{horizon}_s"] = time.perf_counter() - started
        frames.append(
            pd.DataFrame(
                {
                    "counter_id": targets["counter_id"].astype(str),
                    "counted_at": targets["counted_at"],
                    "local_date": pd.to_datetime(target_day, unit="D").date,
                    "horizon_days": horizon,
                    "prediction": result.values,
                    "lower": result.lower,
                    "upper": result.upper,
                    "calendar_prediction": result.calendar_values,
                    "last_week": last_week,
                    "actual": targets[TARGET].to_numpy(dtype=np.float64),
                    "actual_broken": broken_actual,
                    "history_used": result.history_used,
                    "recent_broken": result.recent_broken,
                }
            )
        )
    predictions = pd.concat(frames, ignore_index=True)
    report("scoring", 1.0)
    metrics = {
        "window": window.to_dict(),
        "model_type": model_type,
        "hyperparams": model.hyperparams,
        "training_rows": len(train),
        "history_stage": _stage_summary(model),
        "broken_runs_left_out_of_training": [run.message() for run in getattr(model, "broken_runs", ())],
        "forecast_rows": len(predictions),
        "timings": timings,
        **score_backtest(predictions),
    }
    return BacktestResult(predictions=predictions, metrics=metrics, model=model)


def _stage_summary(model: VelocastModel) -> dict[str, float | None] | None:
    stage = history_stage_of(model)
    if stage is None:
        return None
    return {key: None if np.isnan(value) else value for key, value in stage.summary().items()}


def _last_week(grid: HourlyGrid, targets: LocalRows) -> np.ndarray:
    """The count of each target's counter at the same local hour 7 days earlier (NaN if none)."""
    day = targets.day - 7 - grid.first_day
    inside = (targets.counter >= 0) & (day >= 0) & (day < grid.values.shape[1])
    out = np.full(len(targets.day), np.nan)
    out[inside] = grid.values[targets.counter[inside], day[inside], targets.hour[inside]]
    return out


# --- scores ------------------------------------------------------------------------------------


def _scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """R², RMSE and MAE as the evaluation of models computes them, and WAPE."""
    if len(actual) == 0:
        return {"r2": None, "rmse": None, "mae": None, "wape": None}
    metrics = score(actual, predicted).to_dict()
    absolute = float(np.sum(np.abs(actual)))
    wape = None if absolute == 0 else float(np.sum(np.abs(predicted - actual))) / absolute
    return {"r2": metrics["r2"], "rmse": metrics["rmse"], "mae": metrics["mae"], "wape": wape}


def _block(frame: pd.DataFrame) -> dict[str, Any]:
    actual = frame["actual"].to_numpy()
    lower, upper = frame["lower"].to_numpy(), frame["upper"].to_numpy()
    banded = ~np.isnan(lower)
    inside = (lower[banded] <= actual[banded]) & (actual[banded] <= upper[banded])
    return {
        "rows": len(frame),
        "history_used_share": float(frame["history_used"].mean()) if len(frame) else None,
        "model": {
            **_scores(actual, frame["prediction"].to_numpy()),
            "interval_coverage": float(inside.mean()) if banded.any() else None,
            "interval_mean_width": float(np.mean(upper[banded] - lower[banded])) if banded.any() else None,
        },
        "calendar_only": _scores(actual, frame["calendar_prediction"].to_numpy()),
        "last_week": _scores(actual, frame["last_week"].to_numpy()),
    }


def score_backtest(predictions: pd.DataFrame) -> dict[str, Any]:
    """Overall, per-horizon and per-ISO-week scores of the model and its two peers on equal rows."""
    scored = predictions[predictions["last_week"].notna()]
    iso = pd.to_datetime(scored["local_date"]).dt.isocalendar()
    week = iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)
    healthy = scored[~scored["actual_broken"]] if "actual_broken" in scored else scored
    return {
        "rows_without_last_week": int(len(predictions) - len(scored)),
        "overall": _block(scored),
        # The same, without the counts of broken runs (``velocast.ml.broken``): what a forecast of
        # the traffic is judged on where loops failed during the window.
        "overall_without_broken_actuals": _block(healthy),
        "by_horizon": {str(h): _block(group) for h, group in scored.groupby("horizon_days")},
        "by_week": {str(w): _block(group) for w, group in scored.groupby(week.to_numpy())},
    }


__all__ = [
    "BacktestError",
    "BacktestResult",
    "BacktestWindow",
    "backtest_hyperparams",
    "run_backtest",
    "score_backtest",
]
