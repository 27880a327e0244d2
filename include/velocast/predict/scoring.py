"""Scoring past days: the forecasts made for a complete local day against its actuals and the naive forecast.

For each scored day (one of the 7 local days before the run's day whose actuals are complete), and
per champion run that made its forecasts:

* **Forecast of record**: a day is forecast twice (as ``D + 1`` by the run of the day before, as
  ``D`` by its own run); per counter and hour the latest run's forecast counts (``forecasts_of_record``),
  the one that stood when the hour came. A missing run falls back to the earlier forecast.
* **Baseline**: the same counter's count at the same local wall-clock hour 7 days earlier (across
  a clock change that is 167 or 169 UTC hours back; the repeated autumn hour takes its first
  reading, as in ``bench/bench_models.py``).
* **Same rows for both**: a row is scored only when it has an actual *and* a last-week actual; the
  others (a counter new within the week, a gap last week, the spring hour that did not exist a week
  earlier) are left out of both the model's and the baseline's metrics and counted in
  ``n_rows_left_out``, so the two scores always compare like with like.

R², RMSE and MAE come from ``velocast.ml.evaluation.score`` (NaN where undefined, e.g. R² of a
constant day); WAPE is ``Σ|actual − forecast| / Σ|actual|``, NaN when every actual is 0. NaN is
stored as NULL. A day is *complete* (``is_complete_day``) when every counter active for it has all
its local hours in the raw table (``queries.day_completeness_sql``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from velocast.contract import PARIS_TZ
from velocast.ml.evaluation import Metrics, score
from velocast.predict.days import day_range, hours_in_day

SCORED_DAYS: Final = 7
LAST_WEEK: Final = timedelta(days=7)

PREDICTION_COLUMNS: Final = (
    "prediction_date",
    "counter_id",
    "predicted_for",
    "predicted_count",
    "model_type",
    "model_run_id",
    "model_version",
)
ACTUAL_COLUMNS: Final = ("counter_id", "counted_at", "hourly_count")


def scored_days(run_day: date) -> list[date]:
    """The days a run may score: the ``SCORED_DAYS`` local days before its own, oldest first."""
    return [run_day - timedelta(days=offset) for offset in range(SCORED_DAYS, 0, -1)]


# --- completeness ---------------------------------------------------------------------------------


def is_complete_day(day: date, hours_by_counter: Mapping[str, int]) -> bool:
    """True when there are active counters and each has every local hour of ``day`` (23, 24 or 25).

    ``hours_by_counter`` maps each counter active for ``day`` to its distinct hours in the raw
    table that day (0 for a silent one). No active counter: nothing to score, not complete.
    """
    expected = hours_in_day(day)
    return bool(hours_by_counter) and all(hours >= expected for hours in hours_by_counter.values())


def complete_days(rows: Iterable[Mapping[str, Any]]) -> list[date]:
    """The complete days among the rows of ``queries.day_completeness_sql``.

    Rows hold ``scored_date``, ``counter_id`` and ``hours``; a day without rows has no active counter.
    """
    by_day: dict[date, dict[str, int]] = defaultdict(dict)
    for row in rows:
        by_day[_as_date(row["scored_date"])][str(row["counter_id"])] = int(row["hours"])
    return sorted(day for day, hours in by_day.items() if is_complete_day(day, hours))


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


# --- metrics --------------------------------------------------------------------------------------


def wape(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Weighted absolute percentage error ``Σ|y − ŷ| / Σ|y|``.

    NaN when ``Σ|y|`` is 0 (no traffic: no relative error to speak of) or a forecast is not finite.
    """
    true = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if true.size == 0:
        raise ValueError("cannot score an empty set of rows")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} values but y_pred has {pred.size}")
    total = float(np.abs(true).sum())
    if total == 0 or not np.isfinite(pred).all():
        return math.nan
    return float(np.abs(true - pred).sum()) / total


@dataclass(frozen=True)
class DayMetrics:
    """``velocast.ml.evaluation.Metrics`` plus WAPE."""

    metrics: Metrics
    wape: float

    @classmethod
    def of(cls, y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> DayMetrics:
        return cls(metrics=score(y_true, y_pred), wape=wape(y_true, y_pred))

    def columns(self, prefix: str = "") -> dict[str, float | None]:
        values = {
            "r2": self.metrics.r2,
            "rmse": self.metrics.rmse,
            "mae": self.metrics.mae,
            "wape": self.wape,
        }
        return {f"{prefix}{name}": None if math.isnan(value) else value for name, value in values.items()}


@dataclass(frozen=True)
class DayScore:
    """One row of the daily scores table: a scored day and the champion run that forecast it."""

    scored_date: date
    model_type: str
    model_run_id: str
    model_version: str | None
    n_rows: int
    n_rows_left_out: int
    model: DayMetrics
    baseline: DayMetrics

    def row(self, *, airflow_run_id: str, scored_at: datetime) -> dict[str, Any]:
        """The row as the ``prediction_scores`` contract names it (NaN as None)."""
        if scored_at.tzinfo is None:
            raise ValueError("scored_at must be timezone-aware")
        return {
            "scored_date": self.scored_date,
            "model_type": self.model_type,
            "model_run_id": self.model_run_id,
            "model_version": self.model_version,
            "n_rows": self.n_rows,
            "n_rows_left_out": self.n_rows_left_out,
            **self.model.columns(),
            **self.baseline.columns("baseline_"),
            "airflow_run_id": airflow_run_id,
            "scored_at": scored_at,
        }


# --- joining forecasts, actuals and the baseline ----------------------------------------------------


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lack columns {missing}")


def _utc(values: pd.Series) -> pd.Series:
    # One resolution (BigQuery gives µs, Python datetimes ns) so that merges compare like with like.
    return pd.to_datetime(values, utc=True).dt.as_unit("ns")


def _local_wall_clock(values: pd.Series) -> pd.Series:
    local: pd.Series = _utc(values).dt.tz_convert(PARIS_TZ).dt.tz_localize(None)
    return local


def forecasts_of_record(predictions: pd.DataFrame) -> pd.DataFrame:
    """One forecast per (counter, hour): the one of the latest ``prediction_date`` (fresh index)."""
    _require(predictions, ("prediction_date", "counter_id", "predicted_for"), "predictions")
    frame = predictions.assign(predicted_for=_utc(predictions["predicted_for"]))
    latest_first = frame.sort_values("prediction_date", ascending=False, kind="stable")
    return latest_first.drop_duplicates(["counter_id", "predicted_for"], keep="first").reset_index(drop=True)


def _actual_lookup(actuals: pd.DataFrame, what: str) -> pd.DataFrame:
    _require(actuals, ACTUAL_COLUMNS, what)
    frame = pd.DataFrame(
        {
            "counter_id": actuals["counter_id"].astype(str),
            "counted_at": _utc(actuals["counted_at"]),
            "hourly_count": actuals["hourly_count"].astype(np.float64),
        }
    )
    duplicated = frame.duplicated(["counter_id", "counted_at"])
    if duplicated.any():
        raise ValueError(f"{what} hold {int(duplicated.sum())} duplicate (counter_id, counted_at) rows")
    return frame


def scoring_frame(
    forecasts: pd.DataFrame, actuals: pd.DataFrame, last_week_actuals: pd.DataFrame
) -> pd.DataFrame:
    """``forecasts`` with ``actual`` and ``last_week`` (NaN where missing), in the order of ``forecasts``."""
    current = _actual_lookup(actuals, "actuals").rename(
        columns={"counted_at": "predicted_for", "hourly_count": "actual"}
    )
    frame = forecasts.assign(counter_id=forecasts["counter_id"].astype(str)).merge(
        current, on=["counter_id", "predicted_for"], how="left", validate="many_to_one"
    )
    previous = _actual_lookup(last_week_actuals, "last-week actuals").sort_values("counted_at", kind="stable")
    # Same local wall-clock hour a week earlier; the repeated autumn hour keeps its first reading.
    previous = previous.assign(wall_clock=_local_wall_clock(previous["counted_at"])).drop_duplicates(
        ["counter_id", "wall_clock"], keep="first"
    )
    frame["wall_clock"] = _local_wall_clock(frame["predicted_for"]) - LAST_WEEK
    frame = frame.merge(
        previous[["counter_id", "wall_clock", "hourly_count"]].rename(columns={"hourly_count": "last_week"}),
        on=["counter_id", "wall_clock"],
        how="left",
        validate="many_to_one",
    )
    return frame.drop(columns=["wall_clock"])


def _one_value(group: pd.DataFrame, column: str, run_id: str) -> Any:
    values = group[column].drop_duplicates()
    if len(values) != 1:
        raise ValueError(
            f"champion run {run_id} has several {column} values in the forecasts: {list(values)}"
        )
    value = values.iloc[0]
    return None if pd.isna(value) else value


def score_day(
    day: date, predictions: pd.DataFrame, actuals: pd.DataFrame, last_week_actuals: pd.DataFrame
) -> list[DayScore]:
    """The scores of ``day``, one per champion run that made its forecasts of record (by run id).

    ``predictions`` are ``queries.predictions_for_day_sql``'s rows, ``actuals`` and
    ``last_week_actuals`` ``queries.actuals_sql``'s rows for ``day`` and ``day - 7``. A run
    whose every row is left out gets no score (there is nothing to compare).
    """
    _require(predictions, PREDICTION_COLUMNS, "predictions")
    start, end = day_range(day)
    predicted_for = _utc(predictions["predicted_for"])
    of_the_day = predictions[(predicted_for >= start) & (predicted_for < end)]
    frame = scoring_frame(forecasts_of_record(of_the_day), actuals, last_week_actuals)
    scores: list[DayScore] = []
    for run_id, group in frame.groupby("model_run_id", sort=True):
        usable = group[group["actual"].notna() & group["last_week"].notna()]
        if usable.empty:
            continue
        actual = usable["actual"].to_numpy(dtype=np.float64)
        version = _one_value(group, "model_version", str(run_id))
        scores.append(
            DayScore(
                scored_date=day,
                model_type=str(_one_value(group, "model_type", str(run_id))),
                model_run_id=str(run_id),
                model_version=None if version is None else str(version),
                n_rows=len(usable),
                n_rows_left_out=len(group) - len(usable),
                model=DayMetrics.of(actual, usable["predicted_count"].to_numpy(dtype=np.float64)),
                baseline=DayMetrics.of(actual, usable["last_week"].to_numpy(dtype=np.float64)),
            )
        )
    return scores


__all__ = [
    "LAST_WEEK",
    "SCORED_DAYS",
    "DayMetrics",
    "DayScore",
    "complete_days",
    "forecasts_of_record",
    "is_complete_day",
    "score_day",
    "scored_days",
    "scoring_frame",
    "wape",
]
