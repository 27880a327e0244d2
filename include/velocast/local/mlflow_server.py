"""The MLflow tracking server of the local stack: PostgreSQL backend store (Cloud SQL in
production) and artifacts in the bucket (the GCS emulator locally), proxied by the server so
that clients need no storage credentials."""

from __future__ import annotations

from velocast.local.airflow_env import ensure_database
from velocast.local.stack import ProcessGroup, Service, venv_executable


class MlflowServer(ProcessGroup):
    def prepare(self) -> None:
        ensure_database(self.settings.mlflow_db_url)

    def services(self) -> list[Service]:
        s = self.settings
        mlflow = venv_executable("mlflow")
        return [
            Service(
                name="mlflow",
                argv=[
                    mlflow,
                    "server",
                    "--host",
                    s.local_host,
                    "--port",
                    str(s.mlflow_port),
                    "--backend-store-uri",
                    s.mlflow_db_url,
                    "--artifacts-destination",
                    str(s.mlflow_artifact_root),
                    "--serve-artifacts",
                    "--workers",
                    "1",
                ],
                health_url=f"http://{s.local_host}:{s.mlflow_port}/health",
            )
        ]
