"""Request and response bodies of the sidecar (they are also its OpenAPI description).

A prediction record comes in one of three shapes, told apart by its keys (see ``record_shape``):

* ``normalized``: the warehouse's rows (``counter_id``, ``counted_at``, optional ``latitude``...);
* ``api``: a Paris Explore API v2.1 record (``id_compteur``, ``date``, ``coordinates``...);
* ``v1``: a v1 export record (its values under ``fields``).

Pydantic checks the structure and the JSON types (a precise 422 per field); the values themselves
(dates, counts, coordinates) are read by ``velocast.data.normalize``, the same code as ingestion, so the
sidecar accepts exactly what the pipeline accepts. Keys a shape does not know are ignored: clients
can post warehouse rows or API records as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StringConstraints,
    Tag,
    field_validator,
)

from velocast.ml.models import MODEL_TYPES, UnknownModelTypeError
from velocast.ml.registry_entries import Environment
from velocast.ml.training_request import EvaluationRequest, TrainingRequest

RecordShape = Literal["normalized", "api", "v1"]

# Dates are text (ISO 8601); naive ones are Europe/Paris wall-clock time, as in the City's exports.
DateText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CounterId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
# Strict: "3" and true are not numbers (lax pydantic would take them).
JsonNumber = Annotated[float, Strict()]
Latitude = Annotated[float, Strict(), Field(ge=-90, le=90)]
Longitude = Annotated[float, Strict(), Field(ge=-180, le=180)]

_RECORD_CONFIG: Final = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class NormalizedRecord(BaseModel):
    """A row of the normalized frame (``velocast.data.normalize``): what the warehouse stores."""

    model_config = _RECORD_CONFIG

    counter_id: CounterId
    counted_at: DateText = Field(description="ISO 8601; without an offset, Europe/Paris local time")
    counter_name: ShortText | None = None
    site_id: ShortText | None = None
    site_name: ShortText | None = None
    hourly_count: JsonNumber | None = Field(None, description="ignored by the prediction")
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    installation_date: DateText | None = None


class LonLat(BaseModel):
    model_config = _RECORD_CONFIG

    lon: Longitude
    lat: Latitude


class ApiRecord(BaseModel):
    """A record of the Paris Explore API v2.1 (``comptage-velo-donnees-compteurs``)."""

    model_config = _RECORD_CONFIG

    id_compteur: CounterId
    date: DateText = Field(description="ISO 8601; without an offset, Europe/Paris local time")
    nom_compteur: ShortText | None = None
    id: ShortText | None = None
    name: ShortText | None = None
    sum_counts: JsonNumber | None = Field(None, description="ignored by the prediction")
    coordinates: LonLat | None = None
    installation_date: DateText | None = None


class V1Fields(BaseModel):
    model_config = _RECORD_CONFIG

    id_compteur: CounterId
    date: DateText
    nom_compteur: ShortText | None = None
    id: ShortText | None = None
    name: ShortText | None = None
    sum_counts: JsonNumber | None = None
    coordinates: tuple[Latitude, Longitude] | None = Field(None, description="[lat, lon]")
    installation_date: DateText | None = None


class V1Record(BaseModel):
    """A record of the v1 export API: the values sit under ``fields``."""

    model_config = _RECORD_CONFIG

    fields: V1Fields


def record_shape(value: Any) -> RecordShape | None:
    """Which shape a raw record is read as; None (a 422) for anything but an object."""
    if isinstance(value, BaseModel):
        return _SHAPE_OF_CLASS.get(type(value))
    if not isinstance(value, dict):
        return None
    if "fields" in value:
        return "v1"
    if "counter_id" in value or "counted_at" in value:
        return "normalized"
    if "id_compteur" in value or "date" in value:
        return "api"
    # Neither: the normalized shape's "field required" errors are the clearest answer.
    return "normalized"


_SHAPE_OF_CLASS: Final[dict[type[BaseModel], RecordShape]] = {
    NormalizedRecord: "normalized",
    ApiRecord: "api",
    V1Record: "v1",
}

PredictionRecord = Annotated[
    Annotated[NormalizedRecord, Tag("normalized")]
    | Annotated[ApiRecord, Tag("api")]
    | Annotated[V1Record, Tag("v1")],
    Discriminator(
        record_shape,
        custom_error_type="record_type",
        custom_error_message=(
            "a record is a JSON object: normalized (counter_id, counted_at), "
            "API v2.1 (id_compteur, date) or v1 export (fields)"
        ),
    ),
]


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

    _model_type = field_validator("model_type")(_check_model_type)


class PredictionOut(BaseModel):
    counter_id: str
    counted_at: datetime = Field(description="UTC")
    predicted_count: float = Field(ge=0)


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
    unseen_counter_rows: int
    school_holiday_unknown_rows: int


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: str = Field(min_length=1, json_schema_extra={"enum": list(MODEL_TYPES)})
    run_id: str = Field(min_length=1, max_length=200)
    env: str | None = Field(None, description="dev or prod (default: the environment this sidecar serves)")

    _model_type = field_validator("model_type")(_check_model_type)


class ServingState(BaseModel):
    """What this worker serves for one model type after the promotion."""

    model_type: str
    run_id: str | None
    error: str | None


class PromoteResponse(BaseModel):
    status: str = Field(description="promoted | already_champion")
    message: str
    env: str
    champion: dict[str, Any]
    previous_champion: dict[str, Any] | None
    serving: ServingState | None = Field(description="None when the promotion is for another env")


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


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    env: str
    champions: dict[str, str] = Field(description="model type → run id loaded by this worker")
    errors: dict[str, str]
    reason: str | None = None


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
