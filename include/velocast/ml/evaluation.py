"""Scoring models on temporal hold-outs, and the double evaluation of champion vs challenger.

The weekly retraining compares two models on the *same* two frames:

* ``test_baseline``: the fixed hold-out of the original training data (is the challenger still
  good on the data the platform was validated on?);
* ``test_current``: the last 20 % (by time) of the recent window (is it better on what traffic
  looks like now?).

Splits are by time, never shuffled: hourly counts are strongly autocorrelated, so a random split
leaks the neighbouring hours of every test row into training and flatters every model.

Shared by the DAGs and the serving sidecar, so this module depends on pandas, numpy and
scikit-learn only (never Airflow). Everything returned is JSON-serialisable through ``to_dict()``
(NaN becomes ``null``: strict JSON has no NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

TARGET_COLUMN: Final = "hourly_count"
TIME_COLUMN: Final = "counted_at"
DEFAULT_TEST_FRACTION: Final = 0.2


class Predictor(Protocol):
    """What evaluation needs from a model (``velocast.ml.models`` implements it)."""

    @property
    def model_type(self) -> str: ...

    # Positional-only so that implementations may name the parameter as they like.
    def predict(self, frame: pd.DataFrame, /) -> npt.NDArray[Any]: ...


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _from_json_float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Metrics:
    """Regression metrics of one model on one frame; NaN where undefined."""

    r2: float
    rmse: float
    mae: float
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "r2": _json_float(self.r2),
            "rmse": _json_float(self.rmse),
            "mae": _json_float(self.mae),
            "n_rows": self.n_rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        return cls(
            r2=_from_json_float(data.get("r2")),
            rmse=_from_json_float(data.get("rmse")),
            mae=_from_json_float(data.get("mae")),
            n_rows=int(data["n_rows"]),
        )


def score(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> Metrics:
    """R², RMSE and MAE of ``y_pred`` against ``y_true``.

    A missing actual is a data error (``ValueError``). A non-finite prediction is a broken model:
    its metrics are NaN, which the decision turns into a REJECT with a reason, rather than an
    exception that would stop the weekly run before anything is audited.
    """
    true = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if true.size == 0:
        raise ValueError("cannot score an empty set of rows")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} values but y_pred has {pred.size}")
    if not np.isfinite(true).all():
        raise ValueError(f"y_true holds {int((~np.isfinite(true)).sum())} missing or non-finite values")
    n_rows = int(true.size)
    if not np.isfinite(pred).all():
        return Metrics(r2=math.nan, rmse=math.nan, mae=math.nan, n_rows=n_rows)
    rmse = math.sqrt(float(mean_squared_error(true, pred)))
    mae = float(mean_absolute_error(true, pred))
    # R² is undefined without variance in the target (one row, or a constant count): NaN, not
    # sklearn's substitute (0.0 / 1.0 by default, ±inf with force_finite=False).
    r2 = math.nan if n_rows < 2 or np.ptp(true) == 0 else float(r2_score(true, pred))
    return Metrics(r2=r2, rmse=rmse, mae=mae, n_rows=n_rows)


def evaluate(model: Predictor, frame: pd.DataFrame, target_column: str = TARGET_COLUMN) -> Metrics:
    """Score ``model`` on ``frame`` (normalized rows holding the actuals in ``target_column``)."""
    if frame.empty:
        raise ValueError(f"cannot evaluate model {model.model_type!r} on an empty frame")
    if target_column not in frame.columns:
        raise ValueError(f"frame has no target column {target_column!r}")
    # The model sees the frame without its actuals, as in production (the forecast grid has none):
    # a model that read the target would otherwise score perfectly and be deployed.
    predictions = np.asarray(model.predict(frame.drop(columns=[target_column])))
    if predictions.size != len(frame):
        raise ValueError(
            f"model {model.model_type!r} returned {predictions.size} predictions for {len(frame)} rows"
        )
    return score(frame[target_column].to_numpy(dtype=np.float64, na_value=np.nan), predictions)


@dataclass(frozen=True)
class FrameInfo:
    """Size and time span of an evaluation frame, for the audit trail."""

    n_rows: int
    start: str | None
    end: str | None

    @classmethod
    def of(cls, frame: pd.DataFrame, time_column: str = TIME_COLUMN) -> FrameInfo:
        if time_column not in frame.columns or frame.empty:
            return cls(n_rows=len(frame), start=None, end=None)
        # Audit information only: unparsable or missing times must not fail the evaluation.
        times = pd.to_datetime(frame[time_column], utc=True, errors="coerce").dropna()
        if times.empty:
            return cls(n_rows=len(frame), start=None, end=None)
        return cls(n_rows=len(frame), start=times.min().isoformat(), end=times.max().isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameInfo:
        return cls(n_rows=int(data["n_rows"]), start=data.get("start"), end=data.get("end"))


@dataclass(frozen=True)
class ModelScores:
    """One model's metrics on both evaluation frames."""

    model_type: str
    test_baseline: Metrics
    test_current: Metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "test_baseline": self.test_baseline.to_dict(),
            "test_current": self.test_current.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelScores:
        return cls(
            model_type=str(data["model_type"]),
            test_baseline=Metrics.from_dict(data["test_baseline"]),
            test_current=Metrics.from_dict(data["test_current"]),
        )


@dataclass(frozen=True)
class DoubleEvaluation:
    """Challenger and (when there is one) champion, scored on the same two frames."""

    challenger: ModelScores
    champion: ModelScores | None
    test_baseline: FrameInfo
    test_current: FrameInfo

    def to_dict(self) -> dict[str, Any]:
        return {
            "challenger": self.challenger.to_dict(),
            "champion": None if self.champion is None else self.champion.to_dict(),
            "frames": {
                "test_baseline": self.test_baseline.to_dict(),
                "test_current": self.test_current.to_dict(),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DoubleEvaluation:
        """Rebuild from ``to_dict()`` output (e.g. after an XCom or HTTP round trip)."""
        champion = data.get("champion")
        return cls(
            challenger=ModelScores.from_dict(data["challenger"]),
            champion=None if champion is None else ModelScores.from_dict(champion),
            test_baseline=FrameInfo.from_dict(data["frames"]["test_baseline"]),
            test_current=FrameInfo.from_dict(data["frames"]["test_current"]),
        )


def _scores(model: Predictor, test_baseline: pd.DataFrame, test_current: pd.DataFrame) -> ModelScores:
    return ModelScores(
        model_type=model.model_type,
        test_baseline=evaluate(model, test_baseline),
        test_current=evaluate(model, test_current),
    )


def double_evaluate(
    challenger: Predictor,
    champion: Predictor | None,
    test_baseline: pd.DataFrame,
    test_current: pd.DataFrame,
) -> DoubleEvaluation:
    """Score challenger and champion on the very same ``test_baseline`` and ``test_current``."""
    for name, frame in (("test_baseline", test_baseline), ("test_current", test_current)):
        if frame.empty:
            raise ValueError(f"{name} is empty: the double evaluation needs rows in both frames")
    return DoubleEvaluation(
        challenger=_scores(challenger, test_baseline, test_current),
        champion=None if champion is None else _scores(champion, test_baseline, test_current),
        test_baseline=FrameInfo.of(test_baseline),
        test_current=FrameInfo.of(test_current),
    )


# --- temporal splits ---------------------------------------------------------------------------


def _as_utc(values: pd.Series, time_column: str) -> pd.Series:
    """Times as naive UTC ``datetime64`` (fast to sort and compare; naive input is taken as UTC)."""
    times = pd.to_datetime(values, utc=True)
    if times.isna().any():
        raise ValueError(f"{int(times.isna().sum())} rows have no {time_column!r}")
    return times.dt.tz_localize(None)


def temporal_split(
    frame: pd.DataFrame,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    time_column: str = TIME_COLUMN,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` by time: the last ``test_fraction`` of the rows (by time) is the test set.

    The cut falls on an hour boundary, so that all rows of a given hour (every counter) are on the
    same side, and every train row is strictly earlier than every test row. With many rows per
    hour the test share is ``test_fraction`` up to one hour's rows. Both parts are returned in
    time order (stable: ties keep their input order), with their original index.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if frame.empty:
        raise ValueError("cannot split an empty frame")
    if time_column not in frame.columns:
        raise ValueError(f"frame has no time column {time_column!r}")
    hours = _as_utc(frame[time_column], time_column).dt.floor("h")
    order = np.argsort(hours.to_numpy(), kind="stable")
    ordered_hours = hours.to_numpy()[order]
    distinct = np.unique(ordered_hours)
    if distinct.size < 2:
        raise ValueError(f"a temporal split needs at least two distinct hours in {time_column!r}")
    # The hour of the first test row in a row-count split; if that hour is the very first one
    # (it holds most rows), the next hour starts the test set so that train is never empty.
    first_test_row = min(round(len(frame) * (1 - test_fraction)), len(frame) - 1)
    cutoff = ordered_hours[first_test_row]
    if cutoff == distinct[0]:
        cutoff = distinct[1]
    ordered = frame.iloc[order]
    is_test = ordered_hours >= cutoff
    return ordered[~is_test], ordered[is_test]


def sliding_window_training_set(
    baseline_train: pd.DataFrame,
    recent: pd.DataFrame,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    time_column: str = TIME_COLUMN,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The challenger's training set and ``test_current``.

    ``train`` = ``baseline_train`` + the first 80 % (by time) of ``recent``; ``test_current`` =
    the last 20 % of ``recent``; both in time order with fresh indexes. Raises if
    ``baseline_train`` reaches into ``test_current``: the challenger would then be scored on
    rows it was trained on.
    """
    if baseline_train.empty:
        raise ValueError("baseline_train is empty")
    if recent.empty:
        raise ValueError("the recent window is empty")
    if set(baseline_train.columns) != set(recent.columns):
        differing = sorted(set(baseline_train.columns) ^ set(recent.columns))
        raise ValueError(f"baseline_train and recent have different columns: {differing}")
    recent_train, test_current = temporal_split(recent, test_fraction, time_column)
    if time_column not in baseline_train.columns:
        raise ValueError(f"baseline_train has no time column {time_column!r}")
    baseline_end = _as_utc(baseline_train[time_column], time_column).max()
    test_start = _as_utc(test_current[time_column], time_column).min()
    if baseline_end >= test_start:
        raise ValueError(
            f"baseline_train ends at {baseline_end.isoformat()}Z, not before test_current starts "
            f"at {test_start.isoformat()}Z: the evaluation would leak training rows"
        )
    # Fresh indexes: the two sources' labels overlap.
    train = pd.concat([baseline_train, recent_train[baseline_train.columns]], ignore_index=True)
    order = np.argsort(_as_utc(train[time_column], time_column).to_numpy(), kind="stable")
    return train.iloc[order].reset_index(drop=True), test_current.reset_index(drop=True)
