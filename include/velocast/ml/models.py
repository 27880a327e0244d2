"""The forecasting model types, behind one interface.

``build_model(model_type, hyperparams)`` validates the hyper-parameters against the type's
allow-list and returns an unfitted ``VelocastModel``; ``fit`` and ``predict`` take *normalised*
frames (``velocast.data.normalize``), so callers never build features themselves. Predictions are
hourly counts, clipped at 0.

Types:

* ``hgb`` (default): ``HistGradientBoostingRegressor`` with the counter as a native categorical
  and the calendar features of ``velocast.ml.features``. Two choices made on the temporal hold-out
  (train 2023, test 2024-01-01 → 02-25, ``bench/bench_models.py``), squared-error loss included
  (R² is a squared-error score; Poisson and log1p targets scored lower):

  - recent rows weigh more (``recency_half_life_days``): cycling grows and counters change from
    year to year, and the next day looks more like last month than like last spring;
  - a per-counter level factor (``level_window_days``): the ratio of the counts to the model's
    own predictions over the last days of the training data. A counter that broke down (reads 0)
    or was moved keeps its recent level instead of last year's. It is a parameter of the fitted
    model, so predictions still need nothing but the counter and the hour.

* ``rf``: the original system's model, kept for comparison: ``RandomForestRegressor`` (50 trees,
  depth 20) on the one-hot counter and the same calendar features, raw target.

Unseen counters get ``velocast.ml.features.UNKNOWN_COUNTER_CODE`` (all-zero one-hot for ``rf``, the
"missing" branch for ``hgb``) and are reported by ``predict_with_report``.

Files written by ``save`` are joblib pickles: load only files from the project's own registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import joblib
import numpy as np
import pandas as pd
import sklearn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from threadpoolctl import threadpool_limits

from velocast.errors import RequestError
from velocast.ml.features import (
    CALENDAR_FEATURES,
    COUNTER_FEATURE,
    FEATURE_NAMES,
    UNKNOWN_COUNTER_CODE,
    CounterEncoder,
    FeatureSet,
    build_features,
)

TARGET: Final = "hourly_count"
DEFAULT_MODEL_TYPE: Final = "hgb"
FILE_FORMAT: Final = 1
# HistGradientBoosting takes at most max_bins (255) categories per categorical feature.
MAX_HGB_COUNTERS: Final = 255
# A level factor outside this range says more about a glitch than about the counter.
LEVEL_FACTOR_RANGE: Final = (0.0, 3.0)
# Below this many rows, one OpenMP thread is faster than several (and far faster when the cores
# are busy: threads waiting for each other at every split cost more than the split).
SINGLE_THREAD_ROWS: Final = 100_000


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ModelError(RequestError, ValueError):
    """A request about models that cannot be honoured (the API answers 422)."""


class UnknownModelTypeError(ModelError):
    def __init__(self, model_type: object) -> None:
        self.model_type = model_type
        super().__init__(f"unknown model type {model_type!r}; known types: {', '.join(MODEL_TYPES)}")


class InvalidHyperparametersError(ModelError):
    """Hyper-parameters outside a model type's allow-list; ``errors`` lists each problem."""

    def __init__(self, model_type: str, errors: list[dict[str, Any]]) -> None:
        self.model_type = model_type
        self.errors = errors
        details = "; ".join(f"{error['name']}: {error['message']}" for error in errors)
        super().__init__(f"invalid hyperparameters for model type {model_type!r}: {details}")


# --------------------------------------------------------------------------------------------
# Hyper-parameters: one allow-list per model type
# --------------------------------------------------------------------------------------------


class _Hyperparams(BaseModel):
    # strict: JSON true is not 1 and "0.1" is not 0.1; forbid: a typo is an error, not a default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class RandomForestHyperparams(_Hyperparams):
    n_estimators: int = Field(50, ge=1, le=1000)
    max_depth: int | None = Field(20, ge=1, le=200)
    min_samples_leaf: int = Field(1, ge=1, le=100_000)
    max_features: float = Field(1.0, gt=0, le=1)
    n_jobs: int = Field(-1, ge=-1, le=256)
    random_state: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("n_jobs")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("n_jobs is -1 (every core) or a number of workers ≥ 1, not 0")
        return value


class HistGradientBoostingHyperparams(_Hyperparams):
    loss: Literal["squared_error", "poisson"] = "squared_error"
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_iter: int = Field(150, ge=1, le=5000)
    max_leaf_nodes: int = Field(31, ge=2, le=4096)
    max_depth: int | None = Field(None, ge=1, le=200)
    min_samples_leaf: int = Field(200, ge=1, le=1_000_000)
    l2_regularization: float = Field(0.0, ge=0, le=1e6)
    # None: every training row weighs the same.
    recency_half_life_days: float | None = Field(180.0, gt=0, le=36_500)
    # 0: no per-counter level factor.
    level_window_days: int = Field(28, ge=0, le=3650)
    # OpenMP threads; None: one for small frames, every core otherwise.
    n_threads: int | None = Field(None, ge=1, le=256)
    random_state: int = Field(0, ge=0, le=2**32 - 1)


def _validate(model_type: str, schema: type[_Hyperparams], hyperparams: Any) -> _Hyperparams:
    if hyperparams is None:
        hyperparams = {}
    if not isinstance(hyperparams, dict):
        raise InvalidHyperparametersError(
            model_type,
            [{"name": "(root)", "message": f"expected an object, got {type(hyperparams).__name__}"}],
        )
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
        raise InvalidHyperparametersError(model_type, problems) from None


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
    hyperparams_schema: ClassVar[type[_Hyperparams]]

    def __init__(self, hyperparams: dict[str, Any] | None = None) -> None:
        self._params = _validate(self.model_type, self.hyperparams_schema, hyperparams)
        self.encoder: CounterEncoder | None = None
        self.training_summary: TrainingSummary | None = None

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

    def fit(self, normalised: pd.DataFrame) -> VelocastModel:
        """Fit on the rows of a normalised frame that have a count (others are ignored)."""
        missing = {"counter_id", "counted_at", TARGET} - set(normalised.columns)
        if missing:
            raise ModelError(f"the training frame lacks the columns {sorted(missing)}")
        train = normalised[normalised[TARGET].notna() & normalised["counter_id"].notna()]
        if train.empty:
            raise ModelError("the training frame has no row with a counter and a count")
        encoder = CounterEncoder.fit(train["counter_id"])
        features = build_features(train, encoder)
        target = train[TARGET].to_numpy(dtype=np.float64)
        self._fit(features, target, train["counted_at"])
        self.encoder = encoder
        self.training_summary = TrainingSummary(
            rows=len(train),
            counters=encoder.n_counters,
            first_counted_at=train["counted_at"].min(),
            last_counted_at=train["counted_at"].max(),
            school_holiday_unknown_rows=features.school_holiday_unknown_rows,
        )
        return self

    def predict(self, normalised: pd.DataFrame) -> np.ndarray:
        """Hourly counts for each row (``counter_id``, ``counted_at``), clipped at 0."""
        return self.predict_with_report(normalised).values

    def predict_with_report(self, normalised: pd.DataFrame) -> Prediction:
        if self.encoder is None:
            raise ModelError(f"the {self.model_type} model is not fitted")
        features = build_features(normalised, self.encoder)
        if features.frame.empty:
            values = np.zeros(0, dtype=np.float64)
        else:
            values = np.clip(np.asarray(self._predict(features), dtype=np.float64), 0.0, None)
        return Prediction(
            values=values,
            unseen_counters=features.unseen_counters,
            unseen_counter_rows=features.unseen_counter_rows,
            school_holiday_unknown_rows=features.school_holiday_unknown_rows,
        )

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

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "unfitted"
        return f"<{type(self).__name__} {self.model_type} {state} {self.hyperparams}>"


class RandomForestModel(VelocastModel):
    """The original system's model: one-hot counter + calendar, raw target."""

    model_type = "rf"
    hyperparams_schema = RandomForestHyperparams

    def __init__(self, hyperparams: dict[str, Any] | None = None) -> None:
        super().__init__(hyperparams)
        self.estimator: RandomForestRegressor | None = None

    @property
    def params(self) -> RandomForestHyperparams:
        assert isinstance(self._params, RandomForestHyperparams)
        return self._params

    @property
    def feature_names(self) -> tuple[str, ...]:
        counters = self.encoder.counters if self.encoder is not None else ()
        return (*(f"counter[{counter}]" for counter in counters), *CALENDAR_FEATURES)

    def _matrix(self, features: FeatureSet, n_counters: int) -> np.ndarray:
        # float32 is what the trees use internally: building it directly saves a copy.
        frame = features.frame
        matrix = np.zeros((len(frame), n_counters + len(CALENDAR_FEATURES)), dtype=np.float32)
        codes = frame[COUNTER_FEATURE].to_numpy()
        known = codes != UNKNOWN_COUNTER_CODE  # unseen counters: all-zero one-hot
        matrix[np.flatnonzero(known), codes[known]] = 1.0
        matrix[:, n_counters:] = frame[list(CALENDAR_FEATURES)].to_numpy(dtype=np.float32)
        return matrix

    def _fit(self, features: FeatureSet, target: np.ndarray, counted_at: pd.Series) -> None:
        n_counters = int(features.frame[COUNTER_FEATURE].max()) + 1
        params = self.params
        self.estimator = RandomForestRegressor(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf,
            max_features=params.max_features,
            n_jobs=params.n_jobs,
            random_state=params.random_state,
        )
        self.estimator.fit(self._matrix(features, n_counters), target)
        # Parallel prediction adds the trees' outputs in whatever order the threads finish, so
        # the last bits change from call to call; one worker keeps predictions reproducible.
        self.estimator.set_params(n_jobs=1)

    def _predict(self, features: FeatureSet) -> np.ndarray:
        assert self.estimator is not None and self.encoder is not None
        return np.asarray(self.estimator.predict(self._matrix(features, self.encoder.n_counters)))


class HistGradientBoostingModel(VelocastModel):
    """Gradient boosting with the counter as a native categorical (the default type)."""

    model_type = "hgb"
    hyperparams_schema = HistGradientBoostingHyperparams

    def __init__(self, hyperparams: dict[str, Any] | None = None) -> None:
        super().__init__(hyperparams)
        self.estimator: HistGradientBoostingRegressor | None = None
        # Per counter code; 1.0 where no recent data (and for unseen counters).
        self.level_factors: np.ndarray | None = None

    @property
    def params(self) -> HistGradientBoostingHyperparams:
        assert isinstance(self._params, HistGradientBoostingHyperparams)
        return self._params

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def _threads(self, rows: int) -> threadpool_limits:
        threads = self.params.n_threads
        if threads is None and rows < SINGLE_THREAD_ROWS:
            threads = 1
        return threadpool_limits(limits=threads, user_api="openmp")

    def _fit(self, features: FeatureSet, target: np.ndarray, counted_at: pd.Series) -> None:
        frame = features.frame
        codes = frame[COUNTER_FEATURE].to_numpy()
        n_counters = int(codes.max()) + 1
        if n_counters > MAX_HGB_COUNTERS:
            raise ModelError(
                f"hgb supports at most {MAX_HGB_COUNTERS} counters as a categorical, got {n_counters}"
            )
        params = self.params
        # Age of each row, in days, relative to the end of the training data.
        age_days = ((counted_at.max() - counted_at).dt.total_seconds() / 86_400.0).to_numpy()
        weights = None
        if params.recency_half_life_days is not None:
            weights = np.power(0.5, age_days / params.recency_half_life_days)
        estimator = HistGradientBoostingRegressor(
            loss=params.loss,
            learning_rate=params.learning_rate,
            max_iter=params.max_iter,
            max_leaf_nodes=params.max_leaf_nodes,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization,
            categorical_features=[COUNTER_FEATURE],
            # The hold-out is the next weeks, not a random 10 %: no early stopping on shuffled rows.
            early_stopping=False,
            random_state=params.random_state,
        )
        with self._threads(len(frame)):
            estimator.fit(frame, target, sample_weight=weights)
        self.estimator = estimator

        factors = np.ones(n_counters, dtype=np.float64)
        if params.level_window_days > 0:
            recent = age_days < params.level_window_days
            with self._threads(int(recent.sum())):
                fitted = np.clip(estimator.predict(frame[recent]), 0.0, None)
            recent_codes = codes[recent]
            actual_sum = np.bincount(recent_codes, weights=target[recent], minlength=n_counters)
            fitted_sum = np.bincount(recent_codes, weights=fitted, minlength=n_counters)
            seen = np.bincount(recent_codes, minlength=n_counters) > 0
            # +1 keeps a counter that reads 0 and is predicted ~0 at a neutral factor.
            ratio = (actual_sum + 1.0) / (fitted_sum + 1.0)
            factors[seen] = np.clip(ratio[seen], *LEVEL_FACTOR_RANGE)
        self.level_factors = factors

    def _predict(self, features: FeatureSet) -> np.ndarray:
        assert self.estimator is not None and self.level_factors is not None
        frame = features.frame
        with self._threads(len(frame)):
            raw = np.asarray(self.estimator.predict(frame))
        codes = frame[COUNTER_FEATURE].to_numpy()
        factors = np.where(codes == UNKNOWN_COUNTER_CODE, 1.0, self.level_factors[np.maximum(codes, 0)])
        result: np.ndarray = raw * factors
        return result


# --------------------------------------------------------------------------------------------
# Registry of types, building and loading
# --------------------------------------------------------------------------------------------

_MODEL_CLASSES: Final[dict[str, type[VelocastModel]]] = {
    HistGradientBoostingModel.model_type: HistGradientBoostingModel,
    RandomForestModel.model_type: RandomForestModel,
}
MODEL_TYPES: Final[tuple[str, ...]] = tuple(_MODEL_CLASSES)


def _model_class(model_type: str) -> type[VelocastModel]:
    try:
        return _MODEL_CLASSES[model_type]
    except (KeyError, TypeError):
        raise UnknownModelTypeError(model_type) from None


def build_model(
    model_type: str = DEFAULT_MODEL_TYPE, hyperparams: dict[str, Any] | None = None
) -> VelocastModel:
    """An unfitted model of this type; raises ``UnknownModelTypeError`` / ``InvalidHyperparametersError``."""
    return _model_class(model_type)(hyperparams)


def validate_hyperparams(model_type: str, hyperparams: dict[str, Any] | None) -> dict[str, Any]:
    """The complete hyper-parameters (defaults filled in), or the same errors as ``build_model``."""
    cls = _model_class(model_type)
    return _validate(model_type, cls.hyperparams_schema, hyperparams).model_dump()


def default_hyperparams(model_type: str) -> dict[str, Any]:
    return validate_hyperparams(model_type, None)


def hyperparams_json_schema(model_type: str) -> dict[str, Any]:
    """The allow-list as JSON Schema (for the API's documentation)."""
    return _model_class(model_type).hyperparams_schema.model_json_schema()


def load_model(path: Path) -> VelocastModel:
    """Read a file written by ``VelocastModel.save`` (a trusted file: it is a pickle)."""
    payload = joblib.load(Path(path))
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ModelError(f"{path} is not a velocast model file (format {FILE_FORMAT})")
    model = payload.get("model")
    if not isinstance(model, VelocastModel) or not model.is_fitted:
        raise ModelError(f"{path} does not hold a fitted velocast model")
    return model


def model_size_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1_048_576


__all__ = [
    "DEFAULT_MODEL_TYPE",
    "MODEL_TYPES",
    "HistGradientBoostingHyperparams",
    "HistGradientBoostingModel",
    "InvalidHyperparametersError",
    "ModelError",
    "Prediction",
    "RandomForestHyperparams",
    "RandomForestModel",
    "TrainingSummary",
    "UnknownModelTypeError",
    "VelocastModel",
    "build_model",
    "default_hyperparams",
    "hyperparams_json_schema",
    "load_model",
    "model_size_mb",
    "validate_hyperparams",
]
