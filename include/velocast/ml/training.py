"""The training job: sliding-window training, double evaluation, decision, MLflow run, registry entry.

``run_training(request, settings)`` is what the serving sidecar's ``/train`` and ``velocast train``
run, with a request validated beforehand (``velocast.ml.training_request``), in this order:

1. load ``train_baseline`` / ``test_baseline`` (``velocast.ml.reference_data``, GCS);
2. with current data (the last weeks of actuals, raw or normalized rows): ``train`` = baseline
   train + the first 80 % (by time) of the current window, ``test_current`` = its last 20 %;
   without: ``train`` = baseline train and ``test_current`` = ``test_baseline``
   (``velocast.ml.training_data``);
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

Its sibling ``evaluate_registered`` scores a registered model on the same frames; promoting an
entry to champion is ``velocast.ml.promotion.promote_champion``.

Shared with the serving sidecar: never imports Airflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from velocast.ml.decisions import DecisionThresholds, decide
from velocast.ml.evaluation import DoubleEvaluation, FrameInfo, Metrics, double_evaluate, evaluate
from velocast.ml.model_base import VelocastModel
from velocast.ml.models import build_model
from velocast.ml.reference_data import BaselineError, BaselineLocation, load_baseline, load_test_baseline
from velocast.ml.registry import Registry
from velocast.ml.registry_entries import (
    DataWindow,
    EntryMetrics,
    RegistryEntry,
    SplitMetrics,
    UnknownRunError,
)
from velocast.ml.training_data import prepare_current, training_frames
from velocast.ml.training_request import EvaluationRequest, TrainingDataError, TrainingRequest
from velocast.settings import VelocastSettings

if TYPE_CHECKING:  # MLflow is heavy: imported when a run is logged or a model loaded
    from velocast.ml.tracking import Tracker

log = logging.getLogger(__name__)

# ``progress(step, fraction_done)``: called when a step starts (the sidecar's job status, the CLI).
Progress = Callable[[str, float], None]


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

    ``current_frame`` (raw or normalized rows) replaces ``request.current_data`` for in-process
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
                    "decision_reason": decision.reason,
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


__all__ = [
    "Progress",
    "TrainingResult",
    "evaluate_registered",
    "run_training",
]
