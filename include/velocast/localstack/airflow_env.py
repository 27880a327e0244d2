"""Airflow configured for the local stack: metadata in the local PostgreSQL, our DAG folder.

Used by ``velocast demo`` and the DAG tests (``dag.test()``), so both run Airflow the same way.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from velocast.localstack.stack import StackError, stack_environment
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
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # The default spawns 32 workers; two cores need far fewer.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_db_url,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def ensure_postgres(settings: VelocastSettings) -> None:
    """Start the machine's PostgreSQL cluster if it is not answering, then create the Airflow DB."""
    url = make_url(settings.airflow_db_url)
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
    airflow = str(Path(sys.executable).with_name("airflow"))
    output = subprocess.DEVNULL if quiet else None
    subprocess.run([airflow, *args], env=env, check=True, stdout=output)


def migrate_airflow_db(settings: VelocastSettings) -> None:
    ensure_postgres(settings)
    run_airflow(settings, "db", "migrate", quiet=True)
