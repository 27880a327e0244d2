"""The training job: sliding-window training, double evaluation, decision, MLflow run, registry entry.

``run_training(request, settings)`` is what the serving sidecar's ``/train`` and ``velocast train``
run, in this order:

1. load ``train_baseline`` / ``test_baseline`` (``velocast.ml.reference_data``, GCS);
2. with current data (the last weeks of actuals, raw or normalised rows): ``train`` = baseline
   train + the first 80 % (by time) of the current window, ``test_current`` = its last 20 %;
   without: ``train`` = baseline train and ``test_current`` = ``test_baseline``;
3. load the environment's champion of the same model type from the registry (if any: what the
   sidecar serves, see ``Registry.champion``), before fitting, so a broken champion fails fast;
4. fit the challenger; in ``test_mode`` on the last ``TEST_MODE_TRAIN_DAYS`` days only (a smoke
   run: its entry can never become a prod champion);
5. double evaluation of challenger and champion on the very same two frames, and the decision;
6. log the run to MLflow and register the model version (no alias);
7. add the registry entry, *not* champion: ``promote`` is a separate, explicit step.

Every step before 7 is free of side effects on the registry, so a training that fails (bad
current data, a model that raises, MLflow down) leaves the registry and the champion as they were.
A failure after the MLflow run leaves at most an orphan run and model version, which nothing serves.

Shared with the serving sidecar: never imports Airflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Self

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from velocast.data.normalize import normalize
from velocast.errors import RequestError
from velocast.gcp.actuals import ActualsWindow, read_actuals
from velocast.ml.decisions import DecisionThresholds, decide
from velocast.ml.evaluation import (
    DEFAULT_TEST_FRACTION,
    DoubleEvaluation,
    FrameInfo,
    Metrics,
    double_evaluate,
    evaluate,
    sliding_window_training_set,
)
from velocast.ml.models import (
    DEFAULT_MODEL_TYPE,
    MODEL_TYPES,
    TARGET,
    InvalidHyperparametersError,
    UnknownModelTypeError,
    VelocastModel,
    build_model,
    validate_hyperparams,
)
from velocast.ml.reference_data import BaselineError, BaselineLocation, load_baseline, load_test_baseline
from velocast.ml.registry import (
    DataWindow,
    EntryMetrics,
    Environment,
    PromotionResult,
    Registry,
    RegistryEntry,
    SplitMetrics,
    UnknownRunError,
)
from velocast.settings import VelocastSettings

if TYPE_CHECKING:  # MLflow is heavy: imported when a run is logged or a model loaded
    from velocast.ml.tracking import Tracker

log = logging.getLogger(__name__)

TEST_MODE_TRAIN_DAYS: Final = 28
# How many rejection reasons an error message quotes.
QUOTED_REASONS: Final = 3

# ``progress(step, fraction_done)``: called when a step starts (the sidecar's job status, the CLI).
Progress = Callable[[str, float], None]


class TrainingDataError(RequestError, ValueError):
    """The data of a training request cannot be used (the API answers 422)."""


# --- the request -------------------------------------------------------------------------------


class _DataRequest(BaseModel):
    """What training and evaluation requests share: the model type, the env and the data."""

    # protected_namespaces: ``model_type`` is a field name here, not a pydantic method.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_type: str = DEFAULT_MODEL_TYPE
    env: Environment = "dev"
    # gs://bucket/prefix of the baseline's two parquet files; None: gs://<bucket>/data.
    data_source: str | None = None
    # Recent actuals (raw or normalised rows, any variant normalize reads); None: baseline only.
    current_data: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    # Or a reference to them: a [start, end) window of the raw BigQuery table (what DAG 3 sends).
    current_window: ActualsWindow | None = None

    @field_validator("model_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in MODEL_TYPES:
            raise PydanticCustomError(
                "unknown_model_type", "{message}", {"message": str(UnknownModelTypeError(value))}
            )
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("data_source")
    @classmethod
    def _data_source(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            BaselineLocation.parse(value)
        except BaselineError as error:
            raise PydanticCustomError("invalid_data_source", "{message}", {"message": str(error)}) from None
        return value

    @model_validator(mode="after")
    def _one_current_source(self) -> Self:
        if self.current_data is not None and self.current_window is not None:
            raise PydanticCustomError(
                "ambiguous_current_data",
                "give current_data (rows) or current_window (a BigQuery window), not both",
            )
        return self

    def current_frame(self, settings: VelocastSettings) -> pd.DataFrame | None:
        """The current rows as given (``current_data``) or read (``current_window``); None if neither."""
        if self.current_data is not None:
            return pd.DataFrame.from_records(self.current_data)
        if self.current_window is None:
            return None
        frame = read_actuals(settings, self.current_window)
        if frame.empty:
            window = self.current_window
            raise TrainingDataError(
                f"{settings.raw_table_id} has no rows from {window.start.isoformat()} "
                f"to {window.end.isoformat()}: ingest them first (DAG ingest_bike_counts)"
            )
        return frame


class TrainingRequest(_DataRequest):
    """What to train, validated before any data is read: errors name the field and the problem."""

    # Completed with the type's defaults once validated (what the run logs).
    hyperparams: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    # A smoke run on a sample of the data; never a prod champion.
    test_mode: StrictBool = False
    # Share of the current window (by time) held out as test_current.
    test_fraction: float = Field(DEFAULT_TEST_FRACTION, gt=0, lt=1)

    @field_validator("hyperparams")
    @classmethod
    def _hyperparams(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        model_type = info.data.get("model_type")
        if model_type is None:  # the type was invalid: that error is reported already
            return value
        try:
            return validate_hyperparams(model_type, value)
        except (InvalidHyperparametersError, UnknownModelTypeError) as error:
            problems = getattr(error, "errors", [])
            raise PydanticCustomError(
                "invalid_hyperparameters", "{message}", {"message": str(error), "problems": problems}
            ) from None


class EvaluationRequest(_DataRequest):
    """Score one registered model on test_baseline and, if given, on current actuals."""

    # None: the environment's champion of ``model_type``.
    run_id: str | None = Field(default=None, min_length=1, max_length=200)


# --- the result --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_uri: str
    model_type: str
    env: str
    test_mode: bool
    registered_name: str
    version: int
    # The challenger's metrics: {"test_baseline": {...}, "test_current": {...}}.
    metrics: dict[str, Any]
    evaluation: dict[str, Any]
    # decision, reason, thresholds and the R² values it read (the evaluation is above).
    decision: dict[str, Any]
    data: dict[str, Any]
    timings: dict[str, float]
    champion_run_id: str | None
    registry_entry: dict[str, Any]
    # The fitted challenger, for callers in the same process (not serialised).
    model: VelocastModel = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_type": self.model_type,
            "env": self.env,
            "test_mode": self.test_mode,
            "registered_name": self.registered_name,
            "version": self.version,
            "metrics": self.metrics,
            "evaluation": self.evaluation,
            "decision": self.decision,
            "data": self.data,
            "timings": self.timings,
            "champion_run_id": self.champion_run_id,
            "registry_entry": self.registry_entry,
        }


# --- data --------------------------------------------------------------------------------------


def prepare_current(raw: pd.DataFrame, settings: VelocastSettings) -> tuple[pd.DataFrame, dict[str, int]]:
    """Normalised current rows with a counter and a count; refuses data that is mostly unreadable."""
    if raw.empty:
        raise TrainingDataError("the current data has no rows")
    result = normalize(raw)
    rejected = len(result.rejected)
    share = rejected / len(raw)
    if share > settings.max_rejected_share:
        reasons = "; ".join(result.rejected["reason"].astype(str).head(QUOTED_REASONS))
        raise TrainingDataError(
            f"{rejected} of {len(raw)} current rows cannot be read ({share:.1%} > the allowed "
            f"{settings.max_rejected_share:.1%}), e.g.: {reasons}"
        )
    frame = result.frame
    usable = frame["counter_id"].notna() & frame[TARGET].notna()
    frame = frame[usable].reset_index(drop=True)
    if frame.empty:
        raise TrainingDataError(f"none of the {len(raw)} current rows has both a counter and a count")
    return frame, {"rejected": rejected, "no_counter_or_count": int((~usable).sum())}


@dataclass(frozen=True)
class TrainingFrames:
    train: pd.DataFrame
    test_baseline: pd.DataFrame
    test_current: pd.DataFrame
    data: dict[str, Any]


def _window(frame: pd.DataFrame, name: str) -> dict[str, Any]:
    info = FrameInfo.of(frame)
    return {f"{name}_rows": info.n_rows, f"{name}_start": info.start, f"{name}_end": info.end}


def training_frames(
    baseline_train: pd.DataFrame,
    test_baseline: pd.DataFrame,
    current: pd.DataFrame | None,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    test_mode: bool = False,
) -> TrainingFrames:
    """The sliding window: the challenger's training set and the two evaluation frames."""
    if baseline_train.empty or test_baseline.empty:
        raise TrainingDataError("the baseline is empty: recreate it (velocast baseline)")
    data: dict[str, Any] = {}
    if current is None:
        train, test_current = baseline_train, test_baseline
        data["current_rows"] = 0
    else:
        baseline_end = pd.to_datetime(test_baseline["counted_at"], utc=True).max()
        current_start = pd.to_datetime(current["counted_at"], utc=True).min()
        # Current rows inside the baseline's span would be trained on and then scored on
        # test_baseline: the evaluation would flatter the challenger.
        if current_start <= baseline_end:
            raise TrainingDataError(
                f"the current data starts at {current_start.isoformat()}, not after the baseline, "
                f"which ends at {baseline_end.isoformat()}"
            )
        columns = list(baseline_train.columns)
        missing = sorted(set(columns) - set(current.columns))
        if missing:
            raise TrainingDataError(f"the current data lacks the baseline's columns {missing}")
        try:
            train, test_current = sliding_window_training_set(baseline_train, current[columns], test_fraction)
        except ValueError as error:
            raise TrainingDataError(str(error)) from None
        data["current_rows"] = len(current)
    if test_mode:
        end = pd.to_datetime(train["counted_at"], utc=True).max()
        recent = pd.to_datetime(train["counted_at"], utc=True) > end - pd.Timedelta(days=TEST_MODE_TRAIN_DAYS)
        train = train[recent].reset_index(drop=True)
    data |= {
        "baseline_train_rows": len(baseline_train),
        "test_mode_train_days": TEST_MODE_TRAIN_DAYS if test_mode else 0,
    }
    data |= (
        _window(train, "train")
        | _window(test_baseline, "test_baseline")
        | _window(test_current, "test_current")
    )
    data["counters"] = int(train["counter_id"].nunique())
    return TrainingFrames(train=train, test_baseline=test_baseline, test_current=test_current, data=data)


# --- the job -----------------------------------------------------------------------------------


class _Steps:
    """Timings of the job's steps, and their progress reports."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextmanager
    def step(self, name: str, fraction: float, message: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(message, fraction)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)

    def finish(self) -> dict[str, float]:
        self.timings["total"] = round(time.perf_counter() - self.started, 3)
        if self.progress is not None:
            self.progress("done", 1.0)
        return self.timings


def _split_metrics(metrics: Metrics) -> SplitMetrics:
    return SplitMetrics(r2=metrics.r2, rmse=metrics.rmse, mae=metrics.mae)


def _entry_metrics(evaluation: DoubleEvaluation) -> EntryMetrics:
    return EntryMetrics(
        test_baseline=_split_metrics(evaluation.challenger.test_baseline),
        test_current=_split_metrics(evaluation.challenger.test_current),
    )


def run_training(
    request: TrainingRequest,
    settings: VelocastSettings,
    *,
    tracker: Tracker | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
    current_frame: pd.DataFrame | None = None,
) -> TrainingResult:
    """Train, evaluate, log and register one challenger (see the module docstring).

    ``current_frame`` (raw or normalised rows) replaces ``request.current_data`` for in-process
    callers that hold a frame already (the CLI), saving a round trip through dicts.
    """
    steps = _Steps(progress)
    registry = registry if registry is not None else Registry(settings)
    env = request.env

    with steps.step("load_data", 0.0, "loading the baseline and the current data"):
        try:
            baseline_train, test_baseline = load_baseline(settings, request.data_source)
        except BaselineError as error:
            raise TrainingDataError(str(error)) from None
        raw_current = current_frame if current_frame is not None else request.current_frame(settings)
        current, dropped = (None, {}) if raw_current is None else prepare_current(raw_current, settings)
        frames = training_frames(
            baseline_train,
            test_baseline,
            current,
            test_fraction=request.test_fraction,
            test_mode=request.test_mode,
        )
        data = frames.data | {f"current_dropped_{reason}": count for reason, count in dropped.items()}
        data["data_source"] = request.data_source or BaselineLocation.default(settings).uri()

    with steps.step("load_champion", 0.1, f"loading the {env} champion ({request.model_type})"):
        champion_entry = registry.champion(env, request.model_type)
        if tracker is None:
            from velocast.ml.tracking import Tracker

            tracker = Tracker(settings)
        champion = None if champion_entry is None else tracker.load_model(champion_entry.model_uri)

    with steps.step("fit", 0.2, f"fitting the {request.model_type} challenger on {len(frames.train):,} rows"):
        model = build_model(request.model_type, request.hyperparams).fit(frames.train)

    with steps.step("evaluate", 0.5, "double evaluation on test_baseline and test_current"):
        evaluation = double_evaluate(model, champion, frames.test_baseline, frames.test_current)
        decision = decide(evaluation, DecisionThresholds.from_settings(settings))

    champion_run_id = None if champion_entry is None else champion_entry.run_id
    with steps.step("log", 0.6, "logging the run and the model to MLflow"):
        logged = tracker.log_training(
            model,
            evaluation,
            decision,
            data,
            {"test_baseline": frames.test_baseline, "test_current": frames.test_current},
            champion=champion,
            env=env,
            test_mode=request.test_mode,
            tags={"velocast.champion_run_id": champion_run_id or ""},
        )

    with steps.step("register", 0.95, f"adding the {env} registry entry"):
        summary = model.training_summary
        assert summary is not None  # fitted above
        entry = registry.add_entry(
            env,
            RegistryEntry(
                run_id=logged.run_id,
                model_uri=logged.model_uri,
                model_type=model.model_type,
                metrics=_entry_metrics(evaluation),
                data_window=DataWindow(
                    start=summary.first_counted_at.to_pydatetime(),
                    end=summary.last_counted_at.to_pydatetime(),
                ),
                test_mode=request.test_mode,
                extra={
                    "registered_name": logged.registered_name,
                    "version": logged.version,
                    "decision": decision.decision.value,
                    "champion_run_id": champion_run_id,
                    "hyperparams": model.hyperparams,
                },
            ),
        )

    decision_dict = {key: value for key, value in decision.to_dict().items() if key != "evaluation"}
    result = TrainingResult(
        run_id=logged.run_id,
        model_uri=logged.model_uri,
        model_type=model.model_type,
        env=env,
        test_mode=request.test_mode,
        registered_name=logged.registered_name,
        version=logged.version,
        metrics=evaluation.challenger.to_dict(),
        evaluation=evaluation.to_dict(),
        decision=decision_dict,
        data=data,
        timings=steps.finish(),
        champion_run_id=champion_run_id,
        registry_entry=entry.to_dict(),
        model=model,
    )
    log.info(
        "%s: trained %s run %s (%s) in %.1f s",
        env,
        model.model_type,
        result.run_id,
        decision.decision.value,
        result.timings["total"],
    )
    return result


def evaluate_registered(
    request: EvaluationRequest,
    settings: VelocastSettings,
    *,
    registry: Registry | None = None,
    load: Callable[[RegistryEntry], VelocastModel] | None = None,
) -> dict[str, Any]:
    """Metrics of a registered model (the champion by default) on test_baseline and current data.

    ``load`` turns the entry into a model (the sidecar reuses the model it serves); by default
    the model is loaded from MLflow.
    """
    registry = registry if registry is not None else Registry(settings)
    env = request.env
    if request.run_id is None:
        entry = registry.champion(env, request.model_type)
        if entry is None:
            raise UnknownRunError(
                f"{env} has no {request.model_type} champion to evaluate: train and promote one, "
                "or give run_id"
            )
    else:
        entry = registry.entry(env, request.model_type, request.run_id)
    if load is None:
        from velocast.ml.tracking import Tracker

        load = Tracker(settings).load_entry_model
    model = load(entry)
    try:
        test_baseline = load_test_baseline(settings, request.data_source)
    except BaselineError as error:
        raise TrainingDataError(str(error)) from None
    raw_current = request.current_frame(settings)
    scores: dict[str, Any] = {
        "test_baseline": evaluate(model, test_baseline).to_dict() | FrameInfo.of(test_baseline).to_dict()
    }
    if raw_current is not None:
        current, dropped = prepare_current(raw_current, settings)
        scores["test_current"] = evaluate(model, current).to_dict() | FrameInfo.of(current).to_dict()
        scores["current_dropped"] = dropped
    return {
        "env": env,
        "model_type": entry.model_type,
        "run_id": entry.run_id,
        "model_uri": entry.model_uri,
        "is_champion": entry.is_champion,
        "data_source": request.data_source or BaselineLocation.default(settings).uri(),
        "metrics": scores,
    }


def promote(
    settings: VelocastSettings,
    env: str,
    model_type: str,
    run_id: str,
    *,
    tracker: Tracker | None = None,
    registry: Registry | None = None,
) -> PromotionResult:
    """Make ``run_id`` the env's champion of ``model_type``: registry first, then the MLflow alias.

    The registry is the source of truth and refuses what must not happen (unknown run, a test-mode
    model in prod); the alias only mirrors it. Promotion is idempotent: calling it again after an
    alias failure re-applies the alias.
    """
    registry = registry if registry is not None else Registry(settings)
    result = registry.promote(env, model_type, run_id)
    from velocast.ml.tracking import Tracker, parse_model_uri

    uri = parse_model_uri(result.champion.model_uri)
    if uri.version is None:
        raise ValueError(
            f"run {run_id!r}: the entry's model_uri {result.champion.model_uri!r} names no version"
        )
    tracker = tracker if tracker is not None else Tracker(settings)
    tracker.set_champion_alias(model_type, uri.version, env, registered_name=uri.name)
    return result


__all__ = [
    "TEST_MODE_TRAIN_DAYS",
    "EvaluationRequest",
    "Progress",
    "TrainingDataError",
    "TrainingFrames",
    "TrainingRequest",
    "TrainingResult",
    "evaluate_registered",
    "prepare_current",
    "promote",
    "run_training",
    "training_frames",
]
