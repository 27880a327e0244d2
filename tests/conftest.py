"""Shared fixtures: the local stack and Airflow, started by the same code a user runs.

Tests use their own ports, state directory and Airflow database so that a developer's running
demo stack is neither reused nor disturbed. The environment is set here, at import, because
Airflow reads its configuration when it is first imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real Paris Open Data samples shipped with the tests (ODbL; see tests/data/paris_bike_counts/NOTICE.md).
SHARED_DATA = REPO_ROOT / "tests" / "data" / "paris_bike_counts"

# VELOCAST_TEST_SLOT=N (default 0) gives a test session its own ports, state directory and
# databases, so that several sessions (parallel shards, two checkouts) can run side by side.
_SLOT = int(os.environ.get("VELOCAST_TEST_SLOT", "0"))
_SUFFIX = "" if _SLOT == 0 else f"_{_SLOT}"


def _port(base: int) -> str:
    return str(base + 100 * _SLOT)


os.environ.update(
    {
        "VELOCAST_ENV": "local",
        "VELOCAST_STATE_DIR": str(REPO_ROOT / ".velocast" / f"test{_SUFFIX}"),
        "VELOCAST_GCS_EMULATOR_PORT": _port(19023),
        "VELOCAST_BIGQUERY_EMULATOR_PORT": _port(19050),
        "VELOCAST_BIGQUERY_EMULATOR_GRPC_PORT": _port(19060),
        "VELOCAST_REPLAY_PORT": _port(18089),
        "VELOCAST_DISCORD_PORT": _port(18096),
        "VELOCAST_SERVING_PORT": _port(18000),
        "VELOCAST_MLFLOW_PORT": _port(15000),
        "VELOCAST_MLFLOW_DB_URL": f"postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_mlflow_test{_SUFFIX}",
        "VELOCAST_BQEMULATOR_BIN": str(REPO_ROOT / ".venv-bqemulator" / "bin" / "bqemulator"),
        "VELOCAST_AIRFLOW_DAGS_FOLDER": str(REPO_ROOT / "airflow" / "dags"),
        "VELOCAST_AIRFLOW_PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "VELOCAST_AIRFLOW_DB_URL": f"postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_airflow_test{_SUFFIX}",
        # The real Airflow processes of tests/e2e (api-server, scheduler health check).
        "VELOCAST_AIRFLOW_API_PORT": _port(18081),
        "VELOCAST_AIRFLOW_SCHEDULER_HEALTH_PORT": _port(18974),
        # Failures must surface at once in tests, not after Airflow's retry delays.
        "VELOCAST_INGEST_TASK_RETRIES": "0",
        "VELOCAST_PREDICT_TASK_RETRIES": "0",
        "VELOCAST_MONITOR_TASK_RETRIES": "0",
        "VELOCAST_HTTP_BACKOFF_SECONDS": "0.05",
        "VELOCAST_HTTP_MAX_BACKOFF_SECONDS": "2",
        # MLflow's job execution (GenAI jobs, unused here) starts a job runner and seven huey
        # consumers: a minute of CPU at start, then polling all session long. Off for the test server.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
)
for _name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"):
    os.environ.pop(_name, None)

from velocast.local.airflow_env import airflow_environment, migrate_airflow_db  # noqa: E402
from velocast.local.mlflow_server import MlflowServer  # noqa: E402
from velocast.local.serving import ServingSidecar  # noqa: E402
from velocast.local.stack import LocalStack, running, running_stack  # noqa: E402
from velocast.settings import VelocastSettings, get_settings  # noqa: E402

os.environ.update(airflow_environment(get_settings()))

if TYPE_CHECKING:
    from velocast.local.champion import BootstrappedChampion


@pytest.fixture(scope="session")
def settings() -> VelocastSettings:
    return get_settings()


@pytest.fixture(scope="session")
def local_stack(settings: VelocastSettings) -> Iterator[LocalStack]:
    with running_stack(settings) as stack:
        yield stack


@pytest.fixture(scope="session")
def airflow_db(settings: VelocastSettings) -> None:
    """The tests' Airflow metadata database, created and migrated once per session (``airflow db
    migrate`` takes seconds even when there is nothing to do; parsing a DAG already reads it)."""
    migrate_airflow_db(settings)


@pytest.fixture(scope="session")
def mlflow_server(local_stack: LocalStack, settings: VelocastSettings) -> Iterator[MlflowServer]:
    """The MLflow tracking server (PostgreSQL backend, artifacts in the GCS emulator)."""
    with running(MlflowServer(settings)) as server:
        assert isinstance(server, MlflowServer)
        yield server


@pytest.fixture(scope="session")
def sidecar_champion(local_stack: LocalStack, settings: VelocastSettings) -> BootstrappedChampion:
    """The sidecar's champion: the default model type trained on the shipped counts (reused if any)."""
    from velocast.local.champion import bootstrap_champion  # pandas and scikit-learn: when needed

    return bootstrap_champion(settings)


@pytest.fixture(scope="session")
def serving_sidecar(
    sidecar_champion: BootstrappedChampion, settings: VelocastSettings
) -> Iterator[ServingSidecar]:
    """The real sidecar process (uvicorn, ``settings.serving_port``) serving ``sidecar_champion``; the
    ``velocast_sidecar`` connection exported above points at it."""
    with running(ServingSidecar(settings)) as sidecar:
        assert isinstance(sidecar, ServingSidecar)
        sidecar.wait_ready()
        yield sidecar


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA
