"""Request and response bodies of the sidecar (they are also its OpenAPI description).

The shapes a prediction record may take are in ``velocast_serving.records``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from velocast.ml.models import MODEL_TYPES, UnknownModelTypeError
from velocast.ml.promotion import AliasOutcome
from velocast.ml.registry_entries import Environment, PromotionRecord
from velocast.ml.training_request import EvaluationRequest, TrainingRequest
from velocast_serving.records import PredictionRecord

# The metrics of a registry entry (on test_current) a request may ask to see.
MetricName = Literal["r2", "rmse", "mae"]


def _check_model_type(value: str | None) -> str | None:
    if value is not None and value not in MODEL_TYPES:
        raise ValueError(str(UnknownModelTypeError(value)))
    return value


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The upper bound is settings.serving_max_records, checked by the route (it is per deployment).
    records: list[PredictionRecord] = Field(description="one prediction per record, in order")
    model_type: str | None = Field(
        None,
        description="the champion of this type serves the request (default: hgb)",
        json_schema_extra={"enum": [*MODEL_TYPES, None]},
    )
    metric: MetricName | None = Field(
        None,
        description=(
            "reported, not used to choose the model: the type's champion (chosen by the deployment "
            "rule; without one, its best entry by R²) answers whatever the metric, and the response "
            "gives that model's value for it (default: r2)"
        ),
    )

    _model_type = field_validator("model_type")(_check_model_type)


class PredictionOut(BaseModel):
    counter_id: str | None = Field(
        description="None: a counter given by a name that resolved to no single id (unresolved_counter_names)"
    )
    counted_at: datetime = Field(description="UTC")
    predicted_count: float = Field(ge=0)


UnresolvedReason = Literal["unknown_name", "ambiguous_name", "model_has_no_names"]


class UnresolvedCounterName(BaseModel):
    """A counter name (records without a counter id) the model's training names do not resolve.

    Its rows are still predicted, as a counter the model was not trained on.
    """

    name: str = Field(description="as sent (trimmed)")
    reason: UnresolvedReason = Field(
        description="unknown_name: not in the training data; ambiguous_name: several counters had it; "
        "model_has_no_names: the model keeps no counter names (saved before they were kept, or "
        "trained on data without them)"
    )
    counter_ids: list[str] = Field(description="the counters an ambiguous name could be")
    rows: int


class MetricReport(BaseModel):
    """The serving model's value for the asked metric (it did not choose the model)."""

    name: MetricName
    value: float | None = Field(description="the registry entry's test_current value (None: undefined)")
    split: Literal["test_current"] = "test_current"


class ChampionInfo(BaseModel):
    """The model that answered: the registry entry and when this worker loaded it."""

    run_id: str
    model_type: str
    model_uri: str
    metrics: dict[str, Any]
    is_champion: bool = Field(description="False: the best entry by R², no champion flagged yet")
    loaded_at: datetime
    env: str


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]
    champion: ChampionInfo
    unseen_counters: list[str] = Field(description="counters the model was not trained on (still predicted)")
    unseen_counter_rows: int = Field(description="rows of unseen counters, unresolved names' rows included")
    school_holiday_unknown_rows: int
    unresolved_counter_names: list[UnresolvedCounterName] = Field(
        default_factory=list, description="names of records without a counter id that did not resolve"
    )
    metric: MetricReport


class CompatModelMetadata(BaseModel):
    """``POST /compat/predict``: the model that answered, in the original system's terms."""

    model_type: str
    run_id: str
    model_uri: str
    metric: MetricName = Field(
        description="the asked metric (default r2); reported, it did not choose the model"
    )
    metric_value: float | None = Field(description="the model's test_current value for it")
    is_champion: bool = Field(description="False: the best entry by R², no champion flagged yet")
    env: str
    loaded_at: datetime
    unseen_counters: list[str]
    unseen_counter_rows: int
    unresolved_counter_names: list[UnresolvedCounterName]


class CompatPredictResponse(BaseModel):
    """The original system's answer: one number per record, in order, and the model's metadata."""

    predictions: list[float]
    model_metadata: CompatModelMetadata


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: str = Field(min_length=1, json_schema_extra={"enum": list(MODEL_TYPES)})
    run_id: str = Field(min_length=1, max_length=200)
    env: str | None = Field(None, description="dev or prod (default: the environment this sidecar serves)")
    override_rejection: Annotated[bool, Strict()] = Field(
        False,
        description="promote a model whose deployment decision was REJECT (needs a reason; recorded)",
    )
    reason: str | None = Field(
        None, max_length=500, description="why this promotion: required with override_rejection, recorded"
    )
    requested_by: str | None = Field(
        None, min_length=1, max_length=100, description="who asks, recorded (default: 'admin API key')"
    )

    _model_type = field_validator("model_type")(_check_model_type)

    @model_validator(mode="after")
    def _override_is_explained(self) -> PromoteRequest:
        if self.override_rejection and not (self.reason or "").strip():
            raise ValueError("override_rejection needs a reason: why should a REJECTed model serve anyway?")
        return self


class ServingState(BaseModel):
    """What this worker serves for one model type after the promotion."""

    model_type: str
    run_id: str | None
    error: str | None
    reason: str | None = Field(
        None, description="why it is not served as asked: model_load_failed | only_rejected | only_test_mode"
    )


class PromoteResponse(BaseModel):
    status: str = Field(description="promoted | already_champion")
    message: str
    env: str
    champion: dict[str, Any]
    previous_champion: dict[str, Any] | None
    serving: ServingState | None = Field(description="None when the promotion is for another env")
    promotion: PromotionRecord | None = Field(
        None, description="what this call recorded on the entry (who, when, why); None if already champion"
    )
    alias: AliasOutcome = Field(
        description="the MLflow alias mirroring the champion: moved, or not_applicable (not in MLflow)"
    )


class WorkerServing(BaseModel):
    pid: int
    env: str
    served: dict[str, str] = Field(description="model type → run id this worker serves")
    updated_at: float = Field(description="when the worker last checked the registry (epoch seconds)")


class ModelSummary(BaseModel):
    env: str
    registry: str
    generation: int
    entries: list[dict[str, Any]]
    loaded: dict[str, ChampionInfo]
    default_model_type: str | None
    errors: dict[str, str]
    checked_at: datetime | None
    # Which worker answered, and how many there are: a caller confirms a promotion reached each.
    worker_pid: int = Field(description="process id of the worker that answered")
    workers: int = Field(description="worker processes the sidecar runs (VELOCAST_SERVING_WORKERS)")
    workers_serving: list[WorkerServing] = Field(
        description="what each live worker serves, from the board the workers share"
    )


# Why a worker is not ready (or what failed), as codes: an open route never shows error text.
ReadyReason = Literal[
    "registry_not_read",
    "registry_unavailable",
    "model_load_failed",
    "no_model",
    "only_rejected",
    "only_test_mode",
]


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    env: str
    champions: dict[str, str] = Field(description="model type → run id loaded by this worker")
    errors: dict[str, ReadyReason] = Field(
        description="registry or model type → what failed (details: logs, GET /model_summary)"
    )
    reason: ReadyReason | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"]


# --- training jobs and evaluation ---------------------------------------------------------------


_Request = TypeVar("_Request", bound=BaseModel)


def _with_env(body: TrainBody | EvaluateBody, request_type: type[_Request], default_env: str) -> _Request:
    """The library's request from an API body whose ``env`` may be left to the sidecar's default."""
    values = body.model_dump(exclude={"env"})
    return request_type.model_validate(values | {"env": body.env or default_env})


class TrainBody(TrainingRequest):
    """``POST /train``: the training request; ``env`` defaults to the environment served here."""

    env: Environment | None = Field(  # type: ignore[assignment]
        None, description="dev or prod (default: the environment this sidecar serves)"
    )

    def for_env(self, default_env: str) -> TrainingRequest:
        return _with_env(self, TrainingRequest, default_env)


class EvaluateBody(EvaluationRequest):
    """``POST /evaluate``: which model (default: the champion) on which data."""

    env: Environment | None = Field(  # type: ignore[assignment]
        None, description="dev or prod (default: the environment this sidecar serves)"
    )

    def for_env(self, default_env: str) -> EvaluationRequest:
        return _with_env(self, EvaluationRequest, default_env)


class TrainAccepted(BaseModel):
    job_id: str
    status: str = Field(description="queued: the training process is starting")
    status_url: str = Field(description="poll it: GET /train/{job_id}")
    submitted_at: datetime
    request: dict[str, Any] = Field(
        description="the validated request (current_data rows counted, not echoed)"
    )


class TrainJobStatus(BaseModel):
    job_id: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    step: str | None = Field(description="what the job is doing (or did last)")
    progress: float = Field(ge=0, le=1)
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    request: dict[str, Any]
    run_id: str | None = Field(None, description="MLflow run id of the challenger, when succeeded")
    model_uri: str | None = None
    metrics: dict[str, Any] | None = Field(
        None, description="the challenger on test_baseline and test_current"
    )
    evaluation: dict[str, Any] | None = Field(
        None, description="double evaluation: champion and challenger on the same two frames"
    )
    deployment_decision: dict[str, Any] | None = Field(
        None, description="REJECT | SKIP | DEPLOY with its reason, thresholds and the R² it read"
    )
    data: dict[str, Any] | None = Field(None, description="data sizes and windows")
    timings: dict[str, float] | None = None
    registry_entry: dict[str, Any] | None = None
    error: dict[str, str] | None = Field(None, description="type and message, when failed")

    @classmethod
    def of(cls, status: dict[str, Any]) -> TrainJobStatus:
        result: dict[str, Any] = status.get("result") or {}
        return cls(
            job_id=status["job_id"],
            status=status["status"],
            step=status.get("step"),
            progress=float(status.get("progress") or 0.0),
            submitted_at=status["submitted_at"],
            started_at=status.get("started_at"),
            finished_at=status.get("finished_at"),
            request=status.get("request") or {},
            run_id=result.get("run_id"),
            model_uri=result.get("model_uri"),
            metrics=result.get("metrics"),
            evaluation=result.get("evaluation"),
            deployment_decision=result.get("decision"),
            data=result.get("data"),
            timings=result.get("timings"),
            registry_entry=result.get("registry_entry"),
            error=status.get("error"),
        )


class TrainJobList(BaseModel):
    running: str | None = Field(description="job id of the running job, if any")
    jobs: list[TrainJobStatus] = Field(description="the newest first")


class EvaluateResponse(BaseModel):
    env: str
    model_type: str
    run_id: str
    model_uri: str
    is_champion: bool
    data_source: str
    metrics: dict[str, Any] = Field(
        description="test_baseline (and test_current when current data was given): r2, rmse, mae, rows, span"
    )
