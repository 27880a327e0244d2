"""Airflow configured for the local stack: metadata in the local PostgreSQL, our DAG folder.

Used by ``velocast demo`` and the DAG tests (``dag.test()``), so both run Airflow the same way.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from velocast.local.discord import LOCAL_WEBHOOK_ENDPOINT
from velocast.local.stack import ProcessGroup, Service, StackError, stack_environment, venv_executable
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)


def airflow_environment(settings: VelocastSettings) -> dict[str, str]:
    home = settings.state_dir / "airflow"
    return {
        **stack_environment(settings),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.airflow_dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.airflow_plugins_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Task outputs travel through XCom as velocast dataclasses (velocast.ingest.run).
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* velocast.*",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # The default spawns 32 workers; two cores need far fewer.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_db_url,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # The serving sidecar as the DAGs call it (SidecarHook): its URL, the admin key as password.
        f"AIRFLOW_CONN_{settings.sidecar_conn_id.upper()}": sidecar_connection_json(settings),
        # Discord notifications go to the local stand-in (the provider's HTTP connection shape).
        f"AIRFLOW_CONN_{settings.discord_conn_id.upper()}": json.dumps(
            {
                "conn_type": "http",
                "host": f"http://{settings.local_host}:{settings.discord_port}/api/",
                "extra": {"webhook_endpoint": LOCAL_WEBHOOK_ENDPOINT},
            }
        ),
    }


def local_sidecar_admin_key(settings: VelocastSettings) -> str:
    """The sidecar's admin key: the configured one, else one generated once per state directory.

    A locally started sidecar gets it as ``VELOCAST_SERVING_ADMIN_API_KEY``; Airflow as the password
    of the sidecar connection. The file is readable by its owner only.
    """
    if settings.serving_admin_api_key is not None:
        return settings.serving_admin_api_key.get_secret_value()
    path = settings.state_dir / "serving" / "admin_api_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def sidecar_connection_json(settings: VelocastSettings) -> str:
    """The sidecar's Airflow connection (``AIRFLOW_CONN_VELOCAST_SIDECAR``, JSON form) for the local stack."""
    return json.dumps(
        {
            "conn_type": "http",
            "host": settings.local_host,
            "schema": "http",
            "port": settings.serving_port,
            "password": local_sidecar_admin_key(settings),
        }
    )


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def ensure_database(database_url: str) -> None:
    """Start the machine's PostgreSQL cluster if it is not answering, then create the database."""
    url = make_url(database_url)
    host, port = url.host or "127.0.0.1", url.port or 5432
    if not _port_open(host, port):
        clusters = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
        if not clusters or shutil.which("pg_ctlcluster") is None:
            raise StackError(f"PostgreSQL is not running on {host}:{port} and no local cluster was found")
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1].name, "main", "start"]
        subprocess.run(command, check=True)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
        ).scalar()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{url.database}"'))
            log.info("created database %s", url.database)
    admin.dispose()


def run_airflow(settings: VelocastSettings, *args: str, quiet: bool = False) -> None:
    """Run the ``airflow`` CLI of this environment against the local configuration."""
    env = {**os.environ, **airflow_environment(settings)}
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = venv_executable("airflow")
    output = subprocess.DEVNULL if quiet else None
    subprocess.run([airflow, *args], env=env, check=True, stdout=output)


def migrate_airflow_db(settings: VelocastSettings) -> None:
    ensure_database(settings.airflow_db_url)
    run_airflow(settings, "db", "migrate", quiet=True)


def _jwt_secret(settings: VelocastSettings) -> str:
    """One secret shared by every local Airflow process, generated once per state directory."""
    path = settings.state_dir / "airflow" / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


class AirflowServices(ProcessGroup):
    """Airflow as a user runs it: api-server (UI + REST + execution API), scheduler and
    dag-processor, with the LocalExecutor, against the local stack and PostgreSQL."""

    def env(self) -> dict[str, str]:
        s = self.settings
        api = f"http://{s.local_host}:{s.airflow_api_port}"
        return {
            **airflow_environment(s),
            "AIRFLOW__API_AUTH__JWT_SECRET": _jwt_secret(s),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": s.local_host,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(s.airflow_scheduler_health_port),
            # Local development only: every UI user is an admin (no login on 127.0.0.1).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }

    def prepare(self) -> None:
        migrate_airflow_db(self.settings)

    def services(self) -> list[Service]:
        s = self.settings
        airflow = venv_executable("airflow")
        return [
            Service(
                name="airflow-api-server",
                argv=[airflow, "api-server", "--host", s.local_host, "--port", str(s.airflow_api_port)],
                health_url=f"http://{s.local_host}:{s.airflow_api_port}/api/v2/version",
            ),
            Service(
                name="airflow-scheduler",
                argv=[airflow, "scheduler"],
                health_url=f"http://{s.local_host}:{s.airflow_scheduler_health_port}/health",
            ),
            Service(name="airflow-dag-processor", argv=[airflow, "dag-processor"], health_url=None),
        ]
