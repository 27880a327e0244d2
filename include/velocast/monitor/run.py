"""What one run of DAG 3 is, and the typed values its tasks hand each other through XCom.

``MonitorRun`` is the context every step takes: the run's local Paris day ``D`` (from the logical
date; the weekly run at Sunday 00:00 monitors the 7 days before it), Airflow's run id, the run's
Params and the settings. The outcomes are flat frozen dataclasses of built-in values, so they travel
through XCom with Airflow's serde (``velocast.*`` is in ``[core] allowed_deserialization_classes``).

Light on purpose (no pandas, no Google clients, no Airflow): the DAG file imports these types when
it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from velocast.errors import RequestError
from velocast.predict.days import day_start
from velocast.settings import VelocastSettings


class MonitorDataError(RequestError):
    """The data the monitor needs is not there (no recent actuals, no reference data)."""


@dataclass(frozen=True)
class MonitorParams:
    """The run's Params (the UI's trigger form): defaults on a scheduled run."""

    force_retrain: bool = False
    test_mode: bool = False
    model_type: str = "hgb"

    @classmethod
    def of(cls, params: dict[str, Any]) -> MonitorParams:
        return cls(
            force_retrain=bool(params.get("force_retrain", False)),
            test_mode=bool(params.get("test_mode", False)),
            model_type=str(params.get("model_type") or cls.model_type),
        )


@dataclass(frozen=True)
class MonitorRun:
    """The context of one run: what every step needs besides its own inputs."""

    run_day: date
    run_id: str
    params: MonitorParams
    settings: VelocastSettings

    @property
    def key(self) -> str:
        """The run id as a suffix safe in table and object names."""
        return "".join(char if char.isalnum() else "_" for char in self.run_id)[:200]

    def recent_window(self) -> tuple[datetime, datetime]:
        """The last ``monitor_recent_days`` complete local days before ``D``, as a UTC range."""
        return day_start(self.run_day - timedelta(days=self.settings.monitor_recent_days)), day_start(
            self.run_day
        )

    def training_window(self) -> tuple[datetime, datetime]:
        """The sliding window of actuals a retraining adds to the baseline, as a UTC range."""
        days = self.settings.monitor_train_window_days
        return day_start(self.run_day - timedelta(days=days)), day_start(self.run_day)

    @property
    def staging_prefix(self) -> str:
        return f"{self.settings.monitor_staging_prefix}/{self.key}"

    @property
    def drift_report_object(self) -> str:
        return f"{self.settings.drift_reports_prefix}/{self.key}/report.html"


@dataclass(frozen=True)
class ChampionHealth:
    """The champion scored on the recent actuals (None everywhere when there is no champion)."""

    env: str
    window_start: datetime
    window_end: datetime
    champion_run_id: str | None = None
    champion_model_type: str | None = None
    champion_model_uri: str | None = None
    n_rows: int = 0
    n_rows_left_out: int = 0
    r2: float | None = None
    rmse: float | None = None
    mae: float | None = None
    baseline_r2: float | None = None
    baseline_rmse: float | None = None
    baseline_mae: float | None = None
    # The recent rows with the champion's predictions (Parquet in GCS), for the drift step.
    rows_uri: str | None = None
    counters: int = 0

    @property
    def has_champion(self) -> bool:
        return self.champion_run_id is not None


@dataclass(frozen=True)
class DriftOutcome:
    """The measured drift of the recent days against the reference (``measured`` False: why not)."""

    measured: bool
    share: float | None = None
    drifted_columns: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    counter_share: float | None = None
    drifted_counters: list[str] = field(default_factory=list)
    counters_compared: int = 0
    method: str | None = None
    reference: str | None = None
    reference_rows: int = 0
    current_rows: int = 0
    report_uri: str | None = None
    seconds: float = 0.0
    not_measured_reason: str | None = None


@dataclass(frozen=True)
class BranchOutcome:
    """WAIT or RETRAIN, why (a reason code and a sentence), and the thresholds used."""

    branch: str
    reason: str
    detail: str
    thresholds: dict[str, float]


@dataclass(frozen=True)
class TrainingSubmitted:
    job_id: str
    model_type: str
    test_mode: bool
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True)
class TrainingOutcome:
    """A finished training job: its challenger and the decision of the double evaluation."""

    job_id: str
    status: str
    model_type: str
    test_mode: bool
    run_id: str | None = None
    decision: str | None = None
    decision_reason: str | None = None
    decision_thresholds: dict[str, float] = field(default_factory=dict)
    # {"challenger"|"champion": {"test_baseline"|"test_current": {"r2", "rmse", "mae", ...}}}
    scores: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    champion_run_id: str | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class PromotionOutcome:
    promoted: bool
    run_id: str
    model_type: str
    env: str
    previous_run_id: str | None = None
    # The sidecar worker processes seen serving ``run_id`` after the promotion, and how many there are.
    confirmed_workers: list[int] = field(default_factory=list)
    workers: int = 1
    seconds: float = 0.0
    note: str | None = None


@dataclass(frozen=True)
class DeploymentOutcome:
    """The branch after the double evaluation (``reject``, ``skip`` or ``promote``) and why."""

    branch: str
    reason: str


@dataclass(frozen=True)
class TaskFailure:
    task_id: str
    error: str


@dataclass(frozen=True)
class MonitorFacts:
    """Everything one run learnt, whatever its path: what the audit row and the message are made of."""

    run_id: str
    run_day: date
    env: str
    params: MonitorParams
    health: ChampionHealth | None = None
    drift: DriftOutcome | None = None
    branch: BranchOutcome | None = None
    submitted: TrainingSubmitted | None = None
    training: TrainingOutcome | None = None
    deployment: DeploymentOutcome | None = None
    promotion: PromotionOutcome | None = None
    failures: list[TaskFailure] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures)


__all__ = [
    "BranchOutcome",
    "ChampionHealth",
    "DeploymentOutcome",
    "DriftOutcome",
    "MonitorDataError",
    "MonitorFacts",
    "MonitorParams",
    "MonitorRun",
    "PromotionOutcome",
    "TaskFailure",
    "TrainingOutcome",
    "TrainingSubmitted",
]
