"""The forecasting model types, behind one interface.

``build_model(model_type, hyperparams)`` validates the hyper-parameters against the type's
allow-list and returns an unfitted ``VelocastModel``; ``fit`` and ``predict`` take *normalized*
frames (``velocast.data.normalize``), so callers never build features themselves. Predictions are
hourly counts, clipped at 0. What every type shares (the interface, the feature plumbing, the
model file) is ``velocast.ml.model_base``; this module holds the types and the catalogue of them.

Types:

* ``hgb`` (default): ``HistGradientBoostingRegressor`` with the counter as a native categorical
  and the calendar features of ``velocast.ml.features``. Two choices made on the temporal hold-out
  (train 2023, test 2024-01-01 → 02-25, ``bench/bench_models.py``), squared-error loss included
  (R² is a squared-error score; Poisson and log1p targets scored lower):

  - recent rows weigh more (``recency_half_life_days``): cycling grows and counters change from
    year to year, and the next day looks more like last month than like last spring;
  - a per-counter level factor (``level_window_days``): the ratio of the counts to the model's
    own predictions over the counter's last days in the training data. A counter that was moved
    keeps its recent level instead of last year's; one whose loop broke (``drop_broken_runs``,
    ``velocast.ml.broken``) keeps its level from before. It is a parameter of the fitted model,
    so predictions still need nothing but the counter and the hour.

  With ``history`` on, a second stage reads what each counter just did (``velocast.ml.forecast``:
  recent-history features, a blend with the calendar and calibrated intervals); ``predict``
  stays the calendar forecast, ``velocast.ml.forecast.forecast`` is the one with history.

* ``rf``: the original system's model, kept for comparison: ``RandomForestRegressor`` (50 trees,
  depth 20) on the one-hot counter and the same calendar features, raw target.

Unseen counters get ``velocast.ml.features.UNKNOWN_COUNTER_CODE`` (all-zero one-hot for ``rf``, the
"missing" branch for ``hgb``) and are reported by ``predict_with_report``.

Files written by ``save`` are joblib pickles that name these classes by their module path
(``velocast.ml.models.HistGradientBoostingModel``): moving a type to another module makes the
files saved before unreadable.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from threadpoolctl import threadpool_limits

from velocast.ml.broken import BrokenRun, broken_rows
from velocast.ml.features import (
    CALENDAR_FEATURES,
    COUNTER_FEATURE,
    FEATURE_NAMES,
    UNKNOWN_COUNTER_CODE,
    FeatureArrays,
    FeatureSet,
)
from velocast.ml.forecast import fit_history
from velocast.ml.history_stage import HistoryStage
from velocast.ml.model_base import (
    SINGLE_THREAD_ROWS,
    Hyperparams,
    ModelError,
    VelocastModel,
    counted_rows,
)
from velocast.ml.model_types import DEFAULT_MODEL_TYPE, MODEL_TYPE_NAMES
from velocast.ml.tree_kernel import CompiledBoosting

# From this many rows on, predictions go through the estimator rather than the compiled trees.
COMPILED_MAX_ROWS: Final = 100_000
# HistGradientBoosting takes at most max_bins (255) categories per categorical feature.
MAX_HGB_COUNTERS: Final = 255
# A level factor outside this range says more about a glitch than about the counter.
LEVEL_FACTOR_RANGE: Final = (0.0, 3.0)


# --------------------------------------------------------------------------------------------
# Hyper-parameters: one allow-list per model type
# --------------------------------------------------------------------------------------------
#
# The upper bounds are a resource ceiling, not advice: an admin's request (POST /train) must not
# be able to exhaust the sidecar's machine (2 cores, 24 GB). They are sized for this data: ~100
# counters × a year of hourly counts ≈ 0.9M training rows. Measured on the 2023 counts (860k rows,
# 101 counters, ``bench/bench_models.py``'s split): rf one tree at a time (CPU time, busy
# machine), hgb relative to its default; sizes are those of the fitted model.


class RandomForestHyperparams(Hyperparams):
    # One tree of depth 20 is 63k nodes (~4 MB) and ~17 s; 100 trees is twice the original's 50:
    # at the deepest allowed that is ~1.2 GB and ~40 min of CPU (~20 min on 2 cores).
    n_estimators: int = Field(50, ge=1, le=100)
    # Required: None grows each tree until its leaves are pure, ~1M nodes (~70 MB) and ~40 s a
    # tree, depth 125. Depth 30 is 169k nodes (~12 MB) and ~24 s.
    max_depth: int = Field(20, ge=1, le=30)
    min_samples_leaf: int = Field(1, ge=1, le=100_000)
    max_features: float = Field(1.0, gt=0, le=1)
    n_jobs: int = Field(-1, ge=-1, le=256)
    random_state: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("max_depth", mode="before")
    @classmethod
    def _bounded_depth(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "max_depth must be an integer from 1 to 30: None (unlimited) grows trees of ~1M nodes "
                "(~70 MB each) on a year of data"
            )
        return value

    @field_validator("n_jobs")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("n_jobs is -1 (every core) or a number of workers ≥ 1, not 0")
        return value


class HistGradientBoostingHyperparams(Hyperparams):
    loss: Literal["squared_error", "poisson"] = "squared_error"
    learning_rate: float = Field(0.1, gt=0, le=1)
    # The default 150 iterations of 31 leaves fit in ~15 s (0.6 MB); 1000 is ~7 times that.
    max_iter: int = Field(150, ge=1, le=1000)
    # An iteration of 255 leaves costs ~2.2 times one of 31, of 1024 ~6.5 times: 1000 × 1024
    # leaves is the worst case, ~10-20 min and ~120 MB (the trees hold 2 × leaves nodes each).
    max_leaf_nodes: int = Field(31, ge=2, le=1024)
    # None is safe here: max_leaf_nodes bounds each tree.
    max_depth: int | None = Field(None, ge=1, le=200)
    min_samples_leaf: int = Field(200, ge=1, le=1_000_000)
    l2_regularization: float = Field(0.0, ge=0, le=1e6)
    # None: every training row weighs the same.
    recency_half_life_days: float | None = Field(180.0, gt=0, le=36_500)
    # 0: no per-counter level factor.
    level_window_days: int = Field(28, ge=0, le=3650)
    # A second stage reading the counters' recent history (``velocast.ml.forecast``), fitted with
    # the cut-off a forecast has: a publication lag and a horizon of 1 … history_horizon_days days.
    history: bool = False
    history_lag_days: int = Field(2, ge=0, le=14)
    history_horizon_days: int = Field(2, ge=1, le=7)
    # Central coverage of the prediction intervals, calibrated on the last days of the window.
    interval_coverage: float = Field(0.8, ge=0.5, le=0.99)
    interval_calibration_days: int = Field(28, ge=1, le=365)
    # > 0: each band follows the stage's errors on the last days before the forecast's cut-off.
    interval_recent_days: int = Field(28, ge=0, le=60)
    # Runs of zeros, of one stuck value or of days at a fraction of the usual where the counter
    # usually counts (``velocast.ml.broken``) are a broken loop, not traffic: on, they are left out
    # of the fit and of the level factors, and the counter keeps its level from before. Off by
    # default: a loop broken for months still reads 0 in the hold-out, which scores (all rows) count.
    drop_broken_runs: bool = False
    # OpenMP threads; None: one for small frames, every core otherwise.
    n_threads: int | None = Field(None, ge=1, le=256)
    random_state: int = Field(0, ge=0, le=2**32 - 1)


# --------------------------------------------------------------------------------------------
# The model types
# --------------------------------------------------------------------------------------------


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
    # None: calendar only (and what files saved before the stage existed read as).
    history_stage: HistoryStage | None = None
    # The broken runs left out of the last fit (reported by the training job and the backtest).
    broken_runs: tuple[BrokenRun, ...] = ()

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

    def fit(self, normalized: pd.DataFrame) -> VelocastModel:
        """The calendar model, then (``history`` on) the history stage on the same rows."""
        self.history_stage = None
        params = self.params
        self.broken_runs = ()
        if params.drop_broken_runs:
            broken, cells = broken_rows(normalized)
            normalized = normalized[~broken]
            self.broken_runs = cells.runs
        super().fit(normalized)
        if params.history:
            train = counted_rows(normalized)
            try:
                with self._threads(len(train)):
                    self.history_stage = self._fit_history(train)
            except Exception:
                self.encoder = None  # a model that asked for history is not fitted without it
                raise
        return self

    def _fit_history(self, train: pd.DataFrame) -> HistoryStage:
        params = self.params
        return fit_history(
            self,
            lambda: HistGradientBoostingModel({**self.hyperparams, "history": False}),
            train,
            estimator=self._estimator(categorical=False),
            weights=self._recency_weights(train["counted_at"]),
            lag_days=params.history_lag_days,
            horizon_days=params.history_horizon_days,
            coverage=params.interval_coverage,
            calibration_days=params.interval_calibration_days,
            recent_days=params.interval_recent_days,
        )

    def _recency_weights(self, counted_at: pd.Series) -> np.ndarray | None:
        half_life = self.params.recency_half_life_days
        if half_life is None:
            return None
        age_days = ((counted_at.max() - counted_at).dt.total_seconds() / 86_400.0).to_numpy()
        weights: np.ndarray = np.power(0.5, age_days / half_life)
        return weights

    def _estimator(self, *, categorical: bool) -> HistGradientBoostingRegressor:
        params = self.params
        return HistGradientBoostingRegressor(
            loss=params.loss,
            learning_rate=params.learning_rate,
            max_iter=params.max_iter,
            max_leaf_nodes=params.max_leaf_nodes,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization,
            categorical_features=[COUNTER_FEATURE] if categorical else None,
            # The hold-out is the next weeks, not a random 10 %: no early stopping on shuffled rows.
            early_stopping=False,
            random_state=params.random_state,
        )

    def _fit(self, features: FeatureSet, target: np.ndarray, counted_at: pd.Series) -> None:
        frame = features.frame
        codes = frame[COUNTER_FEATURE].to_numpy()
        n_counters = int(codes.max()) + 1
        if n_counters > MAX_HGB_COUNTERS:
            raise ModelError(
                f"hgb supports at most {MAX_HGB_COUNTERS} counters as a categorical, got {n_counters}"
            )
        params = self.params
        weights = self._recency_weights(counted_at)
        estimator = self._estimator(categorical=True)
        with self._threads(len(frame)):
            estimator.fit(frame, target, sample_weight=weights)
        self.estimator = estimator
        self.__dict__.pop("_compiled_trees", None)  # compiled from a previous fit

        factors = np.ones(n_counters, dtype=np.float64)
        if params.level_window_days > 0:
            # Each counter's own last days: one whose data stopped (a broken loop left out of the
            # fit, a counter removed) keeps the level it had before, not that of its last hours.
            stamps = pd.Series(counted_at.to_numpy(), index=codes)
            counter_age_days = (
                (stamps.groupby(level=0).transform("max") - stamps).dt.total_seconds() / 86_400.0
            ).to_numpy()
            recent = counter_age_days < params.level_window_days
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
        assert self.estimator is not None
        frame = features.frame
        with self._threads(len(frame)):
            raw = np.asarray(self.estimator.predict(frame))
        return self._times_level_factors(raw, frame[COUNTER_FEATURE].to_numpy())

    def _predict_arrays(self, features: FeatureArrays) -> np.ndarray:
        # The compiled form wins on requests (≤ 50k rows: 2-5× faster); on a year of rows its
        # per-row bitmasks leave the caches and the estimator's threads are ~4× faster. Both
        # give the same bits (``tests/unit/ml/test_tree_kernel.py``).
        if len(features) >= COMPILED_MAX_ROWS:
            return super()._predict_arrays(features)
        compiled = self._compiled()
        if compiled is None:  # a forest the compiled form cannot hold: the estimator's own path
            return super()._predict_arrays(features)
        return self._times_level_factors(compiled.predict(features), features.codes)

    def _times_level_factors(self, raw: np.ndarray, codes: np.ndarray) -> np.ndarray:
        assert self.level_factors is not None
        factors = np.where(codes == UNKNOWN_COUNTER_CODE, 1.0, self.level_factors[np.maximum(codes, 0)])
        result: np.ndarray = raw * factors
        return result

    def _compiled(self) -> CompiledBoosting | None:
        # Built once per process (not saved: ``__getstate__`` drops it); a race builds it twice.
        if not hasattr(self, "_compiled_trees"):
            assert self.estimator is not None and self.encoder is not None
            self._compiled_trees = CompiledBoosting.compile(self.estimator, self.encoder.n_counters)
        return self._compiled_trees

    def prepare(self) -> VelocastModel:
        if self.is_fitted:
            self._compiled()
        return super().prepare()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_compiled_trees", None)
        return state


# --------------------------------------------------------------------------------------------
# The catalogue of types: building a model by its name
# --------------------------------------------------------------------------------------------


class UnknownModelTypeError(ModelError):
    """A model type this catalogue does not hold."""

    def __init__(self, model_type: object) -> None:
        self.model_type = model_type
        super().__init__(f"unknown model type {model_type!r}; known types: {', '.join(MODEL_TYPES)}")


_MODEL_CLASSES: Final[dict[str, type[VelocastModel]]] = {
    HistGradientBoostingModel.model_type: HistGradientBoostingModel,
    RandomForestModel.model_type: RandomForestModel,
}
MODEL_TYPES: Final[tuple[str, ...]] = tuple(_MODEL_CLASSES)
if MODEL_TYPES != MODEL_TYPE_NAMES or DEFAULT_MODEL_TYPE not in MODEL_TYPES:  # the DAGs' Params list them
    raise ImportError(f"velocast.ml.model_types lists {MODEL_TYPE_NAMES}, the model types are {MODEL_TYPES}")


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
    return _model_class(model_type).parse_hyperparams(hyperparams).model_dump()


def default_hyperparams(model_type: str) -> dict[str, Any]:
    return validate_hyperparams(model_type, None)


def hyperparams_json_schema(model_type: str) -> dict[str, Any]:
    """The allow-list as JSON Schema (for the API's documentation)."""
    return _model_class(model_type).hyperparams_schema.model_json_schema()


__all__ = [
    "DEFAULT_MODEL_TYPE",
    "MODEL_TYPES",
    "HistGradientBoostingHyperparams",
    "HistGradientBoostingModel",
    "RandomForestHyperparams",
    "RandomForestModel",
    "UnknownModelTypeError",
    "build_model",
    "default_hyperparams",
    "hyperparams_json_schema",
    "validate_hyperparams",
]
