"""What every forecasting model type shares: the ``VelocastModel`` interface and its plumbing.

A model type (``velocast.ml.models``) brings a hyper-parameter allow-list and two methods working
on a ``FeatureSet``, ``_fit`` and ``_predict``. Everything else is done here, the same way for every
type: the hyper-parameters are validated against the allow-list, ``fit`` and ``predict`` take
*normalized* frames (``velocast.data.normalize``) and build the features of ``velocast.ml.features``
themselves (callers never do), predictions are hourly counts clipped at 0, what the model did not
know (unseen counters, unknown school holidays) is reported, and the model file is written and read.
A fitted model also keeps the counter names it saw (``counter_names``: name → counter ids), so a
client that knows a counter by its name only can be served (``velocast_serving`` resolves them).

Files written by ``save`` are joblib pickles: load only files from the project's own registry.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import joblib
import numpy as np
import pandas as pd
import sklearn
from pydantic import BaseModel, ConfigDict, ValidationError

from velocast.errors import RequestError
from velocast.ml.features import (
    CounterEncoder,
    FeatureArrays,
    FeatureSet,
    build_features,
    calendar_arrays,
    column_features,
    feature_arrays,
)

TARGET: Final = "hourly_count"
FILE_FORMAT: Final = 1
# Below this many rows, one OpenMP thread is faster than several (and far faster when the cores
# are busy: threads waiting for each other at every split cost more than the split).
SINGLE_THREAD_ROWS: Final = 100_000


def counted_mask(frame: pd.DataFrame) -> np.ndarray:
    """Which rows have a counter and a count: the rows models fit on and history is made of."""
    mask: np.ndarray = (frame[TARGET].notna() & frame["counter_id"].notna()).to_numpy()
    return mask


def counted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` that have a counter and a count."""
    rows: pd.DataFrame = frame[counted_mask(frame)]
    return rows


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ModelError(RequestError, ValueError):
    """A request about models that cannot be honoured (the API answers 422)."""


class InvalidHyperparametersError(ModelError):
    """Hyper-parameters outside a model type's allow-list; ``errors`` lists each problem."""

    def __init__(self, model_type: str, errors: list[dict[str, Any]]) -> None:
        self.model_type = model_type
        self.errors = errors
        details = "; ".join(f"{error['name']}: {error['message']}" for error in errors)
        super().__init__(f"invalid hyperparameters for model type {model_type!r}: {details}")


# --------------------------------------------------------------------------------------------
# Hyper-parameters: the base of every type's allow-list
# --------------------------------------------------------------------------------------------


class Hyperparams(BaseModel):
    """A model type's allow-list: its fields are the hyper-parameters, with defaults and bounds."""

    # strict: JSON true is not 1 and "0.1" is not 0.1; forbid: a typo is an error, not a default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """Predicted hourly counts (≥ 0, one per input row) and what the model did not know."""

    values: np.ndarray
    unseen_counters: tuple[str, ...]
    unseen_counter_rows: int
    school_holiday_unknown_rows: int


@dataclass(frozen=True)
class TrainingSummary:
    rows: int
    counters: int
    first_counted_at: pd.Timestamp
    last_counted_at: pd.Timestamp
    school_holiday_unknown_rows: int


class VelocastModel(ABC):
    """A model type: validated hyper-parameters, a counter encoder and a fitted estimator."""

    model_type: ClassVar[str]
    hyperparams_schema: ClassVar[type[Hyperparams]]
    # Counter name → the ids that carried it in the training frame (sorted). The class default
    # None is what files saved before names were kept read as (unpickling skips ``__init__``).
    counter_names: Mapping[str, tuple[str, ...]] | None = None

    def __init__(self, hyperparams: dict[str, Any] | None = None) -> None:
        self._params = self.parse_hyperparams(hyperparams)
        self.encoder: CounterEncoder | None = None
        self.training_summary: TrainingSummary | None = None
        self.counter_names = None

    @classmethod
    def parse_hyperparams(cls, hyperparams: Any) -> Hyperparams:
        """``hyperparams`` checked against the type's allow-list, defaults filled in.

        Raises ``InvalidHyperparametersError``, which lists every problem.
        """
        if hyperparams is None:
            hyperparams = {}
        if not isinstance(hyperparams, dict):
            raise InvalidHyperparametersError(
                cls.model_type,
                [{"name": "(root)", "message": f"expected an object, got {type(hyperparams).__name__}"}],
            )
        schema = cls.hyperparams_schema
        try:
            return schema.model_validate(hyperparams)
        except ValidationError as error:
            allowed = ", ".join(schema.model_fields)
            problems: list[dict[str, Any]] = []
            for item in error.errors(include_url=False):
                name = ".".join(str(part) for part in item["loc"]) or "(root)"
                if item["type"] == "extra_forbidden":
                    message = f"unknown hyperparameter (allowed: {allowed})"
                else:
                    message = f"{item['msg']} (got {item.get('input')!r})"
                problems.append({"name": name, "message": message, "type": item["type"]})
            raise InvalidHyperparametersError(cls.model_type, problems) from None

    @property
    def hyperparams(self) -> dict[str, Any]:
        """Every hyper-parameter, defaults included (what a run should log)."""
        return self._params.model_dump()

    @property
    def is_fitted(self) -> bool:
        return self.encoder is not None

    @property
    @abstractmethod
    def feature_names(self) -> tuple[str, ...]:
        """Names of the estimator's input columns, in order."""

    def fit(self, normalized: pd.DataFrame) -> VelocastModel:
        """Fit on the rows of a normalized frame that have a count (others are ignored)."""
        missing = {"counter_id", "counted_at", TARGET} - set(normalized.columns)
        if missing:
            raise ModelError(f"the training frame lacks the columns {sorted(missing)}")
        train = counted_rows(normalized)
        if train.empty:
            raise ModelError("the training frame has no row with a counter and a count")
        encoder = CounterEncoder.fit(train["counter_id"])
        features = build_features(train, encoder)
        target = train[TARGET].to_numpy(dtype=np.float64)
        self._fit(features, target, train["counted_at"])
        self.encoder = encoder
        self.counter_names = counter_names_of(train)
        self.training_summary = TrainingSummary(
            rows=len(train),
            counters=encoder.n_counters,
            first_counted_at=train["counted_at"].min(),
            last_counted_at=train["counted_at"].max(),
            school_holiday_unknown_rows=features.school_holiday_unknown_rows,
        )
        return self

    def predict(self, normalized: pd.DataFrame) -> np.ndarray:
        """Hourly counts for each row (``counter_id``, ``counted_at``), clipped at 0."""
        return self.predict_with_report(normalized).values

    def predict_with_report(self, normalized: pd.DataFrame) -> Prediction:
        if self.encoder is None:
            raise ModelError(f"the {self.model_type} model is not fitted")
        return self._predicted(feature_arrays(normalized, self.encoder))

    def predict_columns(self, counter_ids: list[Any], utc_ns: np.ndarray) -> Prediction:
        """``predict_with_report`` of rows given as columns: counter ids and UTC epoch nanoseconds.

        What the sidecar's fast lane calls: no frame is built.
        """
        if self.encoder is None:
            raise ModelError(f"the {self.model_type} model is not fitted")
        return self._predicted(column_features(counter_ids, utc_ns, self.encoder))

    def _predicted(self, features: FeatureArrays) -> Prediction:
        if len(features) == 0:
            values = np.zeros(0, dtype=np.float64)
        else:
            values = np.clip(np.asarray(self._predict_arrays(features), dtype=np.float64), 0.0, None)
        return Prediction(
            values=values,
            unseen_counters=features.unseen_counters,
            unseen_counter_rows=features.unseen_counter_rows,
            school_holiday_unknown_rows=features.school_holiday_unknown_rows,
        )

    def predict_reference(self, normalized: pd.DataFrame) -> np.ndarray:
        """``predict`` through the features as a frame and the estimator's own ``predict``.

        The path every fast path is held to (tests, ``bench/bench_serving.py``); slower.
        """
        if self.encoder is None:
            raise ModelError(f"the {self.model_type} model is not fitted")
        features = build_features(normalized, self.encoder)
        if features.frame.empty:
            return np.zeros(0, dtype=np.float64)
        return np.clip(np.asarray(self._predict(features), dtype=np.float64), 0.0, None)

    def prepare(self) -> VelocastModel:
        """Build what predictions need once per process (compiled trees, this year's calendar).

        ``load_model`` calls it, so that a served model's first request does not pay for it.
        """
        calendar_arrays(np.array([time.time_ns()], dtype=np.int64))  # memoises this year's tables
        return self

    def save(self, path: Path) -> Path:
        """Write the fitted model to ``path`` (joblib); ``load_model`` reads it back."""
        if not self.is_fitted:
            raise ModelError(f"the {self.model_type} model is not fitted")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FILE_FORMAT,
            "model_type": self.model_type,
            "hyperparams": self.hyperparams,
            "sklearn_version": sklearn.__version__,
            "model": self,
        }
        joblib.dump(payload, path)
        return path

    @abstractmethod
    def _fit(self, features: FeatureSet, target: np.ndarray, counted_at: pd.Series) -> None: ...

    @abstractmethod
    def _predict(self, features: FeatureSet) -> np.ndarray: ...

    def _predict_arrays(self, features: FeatureArrays) -> np.ndarray:
        """Raw predictions of the feature arrays; a type with a faster path than its frame overrides it."""
        return self._predict(features.feature_set())

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "unfitted"
        return f"<{type(self).__name__} {self.model_type} {state} {self.hyperparams}>"


def counter_names_of(frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Counter name → the sorted ids named so in ``frame`` (empty without a ``counter_name`` column).

    A counter renamed by the City has several names; a name several counters share maps to all of
    them (whoever resolves names decides what an ambiguous one means).
    """
    if "counter_name" not in frame.columns:
        return {}
    pairs = pd.DataFrame(
        {"name": frame["counter_name"].astype("string"), "id": frame["counter_id"].astype("string")}
    )
    pairs = pairs.dropna().drop_duplicates().sort_values(["name", "id"])
    names: dict[str, list[str]] = {}
    for name, counter_id in zip(pairs["name"].tolist(), pairs["id"].tolist(), strict=True):
        names.setdefault(str(name), []).append(str(counter_id))
    return {name: tuple(ids) for name, ids in names.items()}


def load_model(path: Path) -> VelocastModel:
    """Read a file written by ``VelocastModel.save`` (a trusted file: it is a pickle)."""
    payload = joblib.load(Path(path))
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ModelError(f"{path} is not a velocast model file (format {FILE_FORMAT})")
    model = payload.get("model")
    if not isinstance(model, VelocastModel) or not model.is_fitted:
        raise ModelError(f"{path} does not hold a fitted velocast model")
    return model.prepare()


def model_size_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1_048_576


__all__ = [
    "FILE_FORMAT",
    "SINGLE_THREAD_ROWS",
    "TARGET",
    "Hyperparams",
    "InvalidHyperparametersError",
    "ModelError",
    "Prediction",
    "TrainingSummary",
    "VelocastModel",
    "counted_mask",
    "counted_rows",
    "counter_names_of",
    "load_model",
    "model_size_mb",
]
