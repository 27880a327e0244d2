"""What ``SidecarHook`` returns: small typed copies of the serving sidecar's answers.

They mirror ``velocast_serving.schemas`` field for field, without importing it: the sidecar is a
separate deployable, and the DAG side must not depend on it (an import contract). Unknown fields
are ignored, so a sidecar that answers more does not break the DAGs; a field the DAGs rely on that
goes missing fails validation at once. ``tests/unit/orchestration/test_sidecar_app.py`` checks
them against the real app.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

_RESULT_CONFIG: Final = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

FINISHED_JOB_STATUSES: Final = frozenset({"succeeded", "failed", "cancelled"})


class Champion(BaseModel):
    """The model that answered: its registry entry and when the sidecar worker loaded it."""

    model_config = _RESULT_CONFIG

    run_id: str
    model_type: str
    model_uri: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    is_champion: bool
    loaded_at: datetime
    env: str


class Prediction(BaseModel):
    model_config = _RESULT_CONFIG

    counter_id: str
    counted_at: datetime  # UTC
    predicted_count: float


class Predictions(BaseModel):
    """The predictions of all the batches, in the order of the records, and the champion that made them."""

    model_config = _RESULT_CONFIG

    predictions: list[Prediction]
    champion: Champion
    unseen_counters: list[str] = Field(default_factory=list)
    unseen_counter_rows: int = 0
    school_holiday_unknown_rows: int = 0
    # How many POST /predict requests the records took.
    batches: int = 1


class Readiness(BaseModel):
    """``GET /ready``: whether a champion is loaded, and if not, the sidecar's reason."""

    model_config = _RESULT_CONFIG

    status: Literal["ready", "not_ready"]
    env: str
    champions: dict[str, str] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class WorkerServing(BaseModel):
    """One live sidecar worker and the run id it serves per model type."""

    model_config = _RESULT_CONFIG

    pid: int
    env: str
    served: dict[str, str] = Field(default_factory=dict)


class ModelSummary(BaseModel):
    """``GET /model_summary``: the registry entries of the served environment and the loaded champions."""

    model_config = _RESULT_CONFIG

    env: str
    registry: str
    generation: int
    entries: list[dict[str, Any]]
    loaded: dict[str, Champion]
    default_model_type: str | None
    errors: dict[str, str]
    checked_at: datetime | None
    worker_pid: int | None = None
    workers: int = 1
    workers_serving: list[WorkerServing] = Field(default_factory=list)

    @property
    def champion(self) -> Champion | None:
        """The champion that serves predictions by default, if one is loaded."""
        if self.default_model_type is None:
            return None
        return self.loaded.get(self.default_model_type)


class TrainingSubmission(BaseModel):
    """``POST /train`` accepted the job: poll ``job_status(job_id)``."""

    model_config = _RESULT_CONFIG

    job_id: str
    status: str
    status_url: str
    submitted_at: datetime
    request: dict[str, Any] = Field(default_factory=dict)


class TrainingJob(BaseModel):
    """``GET`` / ``DELETE /train/{job_id}``: where a training job is, and its outcome once finished."""

    model_config = _RESULT_CONFIG

    job_id: str
    status: str  # queued | running | succeeded | failed | cancelled
    step: str | None = None
    progress: float = 0.0
    submitted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    model_uri: str | None = None
    metrics: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    deployment_decision: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    timings: dict[str, float] | None = None
    registry_entry: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


class Evaluation(BaseModel):
    """``POST /evaluate``: one registered model scored on test_baseline (and current data if given)."""

    model_config = _RESULT_CONFIG

    env: str
    model_type: str
    run_id: str
    model_uri: str
    is_champion: bool
    data_source: str
    metrics: dict[str, Any]


class ServingState(BaseModel):
    model_config = _RESULT_CONFIG

    model_type: str
    run_id: str | None
    error: str | None


class Promotion(BaseModel):
    """``POST /promote_champion``: promoted or already champion, and what the answering worker serves."""

    model_config = _RESULT_CONFIG

    status: str  # promoted | already_champion
    message: str
    env: str
    champion: dict[str, Any]
    previous_champion: dict[str, Any] | None = None
    serving: ServingState | None = None


__all__ = [
    "FINISHED_JOB_STATUSES",
    "Champion",
    "Evaluation",
    "ModelSummary",
    "Prediction",
    "Predictions",
    "Promotion",
    "Readiness",
    "ServingState",
    "TrainingJob",
    "TrainingSubmission",
    "WorkerServing",
]
