"""The one settings object of a velocast process.

Every value comes from the environment (prefix ``VELOCAST_``) or its default. The defaults
describe the *local* stack (emulators and the API replay on 127.0.0.1) so that a fresh clone
runs end to end; production sets ``VELOCAST_ENV=prod`` and the real endpoints.

The Google client libraries read the emulator hosts from the standard variables
``STORAGE_EMULATOR_HOST`` and ``BIGQUERY_EMULATOR_HOST``; settings read the same names so
that there is a single source for them.
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PARIS_OPENDATA_URL = "https://opendata.paris.fr/api/explore/v2.1"


class VelocastSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VELOCAST_", extra="ignore", frozen=True)

    env: Literal["local", "dev", "prod"] = "local"

    # --- Google Cloud -------------------------------------------------------------------
    gcp_project: str = "velocast-local"
    gcp_location: str = "EU"
    gcp_conn_id: str = "google_cloud_default"
    bucket: str = "velocast-local"
    raw_dataset: str = "bike_traffic_raw"
    predictions_dataset: str = "bike_traffic_predictions"
    audit_dataset: str = "monitoring_audit"
    raw_table: str = "hourly_counts"
    quarantine_table: str = "hourly_counts_quarantine"
    ingestion_log_table: str = "ingestion_log"
    predictions_table: str = "hourly_predictions"
    decisions_table: str = "model_decisions"
    staging_prefix: str = "staging/ingest"

    storage_emulator_host: str | None = Field(
        default=None, validation_alias=AliasChoices("STORAGE_EMULATOR_HOST", "VELOCAST_STORAGE_EMULATOR_HOST")
    )
    bigquery_emulator_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BIGQUERY_EMULATOR_HOST", "VELOCAST_BIGQUERY_EMULATOR_HOST"),
    )

    # --- Paris Open Data API -------------------------------------------------------------
    opendata_base_url: str = PARIS_OPENDATA_URL
    opendata_dataset: str = "comptage-velo-donnees-compteurs"
    http_timeout_seconds: float = Field(default=60.0, gt=0)
    http_max_retries: int = Field(default=5, ge=0)
    http_backoff_seconds: float = Field(default=1.0, ge=0)
    http_max_backoff_seconds: float = Field(default=60.0, ge=0)

    # --- Ingestion -----------------------------------------------------------------------
    ingest_trailing_days: int = Field(default=3, ge=1, le=31)
    ingest_task_retries: int = Field(default=2, ge=0)
    # First logical date of DAG 1, and whether the scheduler catches up from it when enabled.
    ingest_start_date: date = date(2023, 1, 1)
    ingest_catchup: bool = False
    max_rejected_share: float = Field(default=0.05, ge=0, le=1)
    # Bounding box of the City of Paris (Bois de Boulogne and Bois de Vincennes included).
    paris_lat_min: float = 48.80
    paris_lat_max: float = 48.91
    paris_lon_min: float = 2.22
    paris_lon_max: float = 2.47
    metrics_prefix: str = "velocast"

    # --- Predictions (DAG 2) ------------------------------------------------------------------
    predict_task_retries: int = Field(default=2, ge=0)
    # First logical date of DAG 2, and whether the scheduler catches up from it when enabled.
    predict_start_date: date = date(2023, 1, 1)
    predict_catchup: bool = False

    # --- Monitor and train (DAG 3) ----------------------------------------------------------
    monitor_task_retries: int = Field(default=1, ge=0)
    monitor_start_date: date = date(2023, 1, 1)
    # The champion is scored on the last N complete local days before the run.
    monitor_recent_days: int = Field(default=7, ge=1, le=28)
    # RETRAIN when the champion's recent R² is below this, or when this share of columns drifted;
    # proactively when both drift ≥ the share and R² < the proactive bound.
    monitor_min_r2: float = Field(default=0.65, ge=-1, le=1)
    monitor_drift_share: float = Field(default=0.5, gt=0, le=1)
    monitor_proactive_r2: float = Field(default=0.70, ge=-1, le=1)
    # Days of the champion's training data compared with the recent days (a comparable slice).
    monitor_reference_days: int = Field(default=28, ge=7, le=366)
    # The sliding window of actuals a retraining adds to the baseline (POST /train current_window).
    monitor_train_window_days: int = Field(default=30, ge=7, le=92)
    # Baseline (train_baseline/test_baseline) of the retraining; None: the sidecar's default.
    monitor_baseline_uri: str | None = None
    # How long a training job may run, and how often the triggerer asks the sidecar about it.
    monitor_training_timeout_seconds: float = Field(default=3 * 3600.0, gt=0)
    monitor_poll_seconds: float = Field(default=15.0, gt=0)
    # How long a promotion may take to reach every sidecar worker.
    monitor_promotion_confirm_seconds: float = Field(default=120.0, gt=0)
    drift_reports_prefix: str = "drift_reports"
    monitor_staging_prefix: str = "staging/monitor"

    # --- Models, registry and tracking --------------------------------------------------
    # The registry file (summary.json) in the project bucket; entries namespaced by environment.
    registry_object: str = "registry/summary.json"
    registered_model_name: str = "velocast-bike-traffic"
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    mlflow_port: int = 5000
    mlflow_db_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_mlflow"
    # Double evaluation: REJECT below this R² on test_baseline; DEPLOY above champion + margin.
    decision_min_r2_baseline: float = Field(default=0.60, ge=-1, le=1)
    decision_min_r2_gain: float = Field(default=0.02, ge=0, le=1)

    # --- Serving sidecar ----------------------------------------------------------------
    serving_port: int = 8000
    # Registry environment the sidecar serves (dev | prod).
    serving_env: str = "dev"
    # API keys come from the environment (Secret Manager in production), never from code.
    serving_predict_api_keys: list[SecretStr] = Field(default_factory=list)
    serving_admin_api_key: SecretStr | None = None
    # Local development only: allows an empty or placeholder admin key.
    serving_local_dev: bool = False
    serving_max_records: int = Field(default=10_000, ge=1)
    serving_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    serving_reload_interval_seconds: float = Field(default=5.0, gt=0)
    # uvicorn worker processes (``--workers``): the DAGs confirm a promotion reached each of them.
    serving_workers: int = Field(default=1, ge=1, le=64)
    # Training jobs' state (shared by the workers); default <state_dir>/jobs.
    serving_jobs_dir: Path | None = None

    # --- The sidecar as the DAGs call it (velocast.orchestration.sidecar.SidecarHook) ----------
    # The Airflow connection: base URL as host/schema/port, the API key as its password.
    sidecar_conn_id: str = "velocast_sidecar"
    sidecar_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    sidecar_timeout_seconds: float = Field(default=120.0, gt=0)
    # Connection errors, timeouts, 429 and 5xx: attempts in all, exponential backoff between them.
    sidecar_max_attempts: int = Field(default=4, ge=1)
    sidecar_backoff_seconds: float = Field(default=1.0, ge=0)
    sidecar_max_backoff_seconds: float = Field(default=30.0, ge=0)

    # --- Observability --------------------------------------------------------------------
    # The MLOps exporter (registry + audit table → Prometheus) listens here.
    exporter_port: int = 9101
    # Seconds an exporter scrape may reuse its last BigQuery/GCS reads (bounds the query cost).
    exporter_cache_seconds: float = Field(default=60.0, ge=0)
    # Discord notifications: the Airflow connection holding the webhook, and the bound on one post
    # (connect and read each) so that a slow webhook never holds a pipeline.
    discord_conn_id: str = "velocast_discord"
    notify_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Base URL of the Airflow UI for links in messages; None: Airflow's [api] base_url.
    airflow_ui_url: str | None = None

    # --- Local stack (emulators and the API replay server) ------------------------------
    state_dir: Path = Path(".velocast")
    local_host: str = "127.0.0.1"
    gcs_emulator_port: int = 9023
    bigquery_emulator_port: int = 9050
    bigquery_emulator_grpc_port: int = 9060
    replay_port: int = 8089
    # The local stand-in for Discord's webhooks (velocast.local.discord).
    discord_port: int = 8096
    # Whole weeks added to the replayed dates; None shifts the data so that it ends yesterday.
    replay_shift_weeks: int | None = None
    bqemulator_bin: Path = Path(".venv-bqemulator/bin/bqemulator")
    # Airflow run locally (demo, dag.test() in tests) keeps its metadata in the local PostgreSQL.
    airflow_dags_folder: Path = Path("airflow/dags")
    airflow_plugins_folder: Path = Path("plugins")
    airflow_db_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_airflow"
    airflow_api_port: int = 8081
    airflow_scheduler_health_port: int = 8974

    @field_validator("state_dir", "bqemulator_bin", "airflow_dags_folder", "airflow_plugins_folder")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _local_defaults(self) -> VelocastSettings:
        """The local profile points every endpoint at the local stack unless told otherwise."""
        if self.env != "local":
            return self
        host = self.local_host
        updates: dict[str, object] = {}
        if self.storage_emulator_host is None:
            updates["storage_emulator_host"] = f"http://{host}:{self.gcs_emulator_port}"
        if self.bigquery_emulator_host is None:
            updates["bigquery_emulator_host"] = f"http://{host}:{self.bigquery_emulator_port}"
        if self.opendata_base_url == PARIS_OPENDATA_URL:
            updates["opendata_base_url"] = f"http://{host}:{self.replay_port}/api/explore/v2.1"
        if self.mlflow_tracking_uri is None:
            updates["mlflow_tracking_uri"] = f"http://{host}:{self.mlflow_port}"
        if self.mlflow_artifact_root is None:
            updates["mlflow_artifact_root"] = f"gs://{self.bucket}/mlflow"
        if self.airflow_ui_url is None:
            updates["airflow_ui_url"] = f"http://{host}:{self.airflow_api_port}"
        for name, value in updates.items():
            object.__setattr__(self, name, value)
        return self

    @property
    def raw_table_id(self) -> str:
        return f"{self.gcp_project}.{self.raw_dataset}.{self.raw_table}"

    @property
    def quarantine_table_id(self) -> str:
        return f"{self.gcp_project}.{self.raw_dataset}.{self.quarantine_table}"

    @property
    def ingestion_log_table_id(self) -> str:
        return f"{self.gcp_project}.{self.raw_dataset}.{self.ingestion_log_table}"

    @property
    def predictions_table_id(self) -> str:
        return f"{self.gcp_project}.{self.predictions_dataset}.{self.predictions_table}"

    @property
    def decisions_table_id(self) -> str:
        return f"{self.gcp_project}.{self.audit_dataset}.{self.decisions_table}"

    @property
    def uses_emulators(self) -> bool:
        return self.bigquery_emulator_host is not None or self.storage_emulator_host is not None

    def to_environment(self, *, include_secrets: bool = False) -> dict[str, str]:
        """``VELOCAST_*`` variables that rebuild these settings in a child process.

        Settings changed in code (``model_copy``) reach a subprocess this way; secrets are left
        out unless asked for (a training job needs no API key).
        """
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            if "SecretStr" in str(field.annotation):
                if not include_secrets:
                    continue
                value = (
                    [item.get_secret_value() for item in value]
                    if isinstance(value, list)
                    else value.get_secret_value()
                )
            if isinstance(value, list | dict):
                text = json.dumps(value, default=str)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"VELOCAST_{name.upper()}"] = text
        return env


@lru_cache(maxsize=1)
def get_settings() -> VelocastSettings:
    """The process-wide settings, read once from the environment."""
    return VelocastSettings()
