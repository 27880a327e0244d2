"""End to end: real Airflow processes (api-server, scheduler, dag-processor, LocalExecutor)
run a backfill created with the CLI, each task in its own process, against the local stack.

This is the path a data engineer takes from the UI or ``airflow backfill create``; the table
it produces must equal the source (and so what daily runs produce, see the DAG tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from velocast import contract
from velocast.data.sql import timestamp_literal
from velocast.gcp.warehouse import Warehouse
from velocast.ingest.window import plan_window
from velocast.local.airflow_env import AirflowServices
from velocast.local.stack import running
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.airflow, pytest.mark.e2e]

DAG_ID = "ingest_bike_counts"
BACKFILL_TIMEOUT_SECONDS = 600
POLL_SECONDS = 1.0


class BackfillOnlyAirflow(AirflowServices):
    """Airflow as a user runs it, except that the scheduler creates no runs from the schedule:
    unpausing the DAG would otherwise start the latest interval's run beside the backfill, a
    fourth run on two cores that this test never looks at. Backfill runs are still the scheduler's."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}


@pytest.fixture(scope="module")
def airflow_services(local_stack: Any, settings: VelocastSettings) -> Iterator[AirflowServices]:
    """Airflow on a metadata database of its own (per test slot), created empty for this module."""
    url = make_url(settings.airflow_db_url)
    url = url.set(database=f"{url.database}_e2e")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()
    e2e_settings = settings.model_copy(update={"airflow_db_url": url.render_as_string(hide_password=False)})
    services = BackfillOnlyAirflow(e2e_settings)
    with running(services):
        yield services


def airflow_cli(services: AirflowServices, *args: str) -> str:
    env = {**os.environ, **services.env()}
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def api(airflow_services: AirflowServices) -> Iterator[httpx.Client]:
    """The api-server's REST API, polled while the scheduler works: each ``airflow`` CLI call
    would cost seconds of CPU importing Airflow, on the cores the scheduler's tasks need. Every
    local user is an admin, so a token needs no credentials."""
    s = airflow_services.settings
    base = f"http://{s.local_host}:{s.airflow_api_port}"
    token = httpx.get(f"{base}/auth/token", timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{base}/api/v2", headers=headers, timeout=30) as client:
        yield client


def wait_for_dag(api: httpx.Client) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if api.get(f"/dags/{DAG_ID}").status_code == 200:
            return
        time.sleep(POLL_SECONDS)
    pytest.fail(f"the dag-processor did not register {DAG_ID}")


def backfill_run_states(api: httpx.Client) -> list[str]:
    response = api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})
    response.raise_for_status()
    runs = response.json()["dag_runs"]
    return [run["state"] for run in runs if run["dag_run_id"].startswith("backfill__")]


def test_cli_backfill_runs_through_the_scheduler(
    airflow_services: AirflowServices, api: httpx.Client, settings: VelocastSettings
) -> None:
    wait_for_dag(api)
    airflow_cli(airflow_services, "dags", "unpause", DAG_ID)
    first = (datetime.now(UTC) - timedelta(days=100)).date()
    last = first + timedelta(days=2)
    airflow_cli(
        airflow_services,
        "backfill",
        "create",
        "--dag-id",
        DAG_ID,
        "--from-date",
        first.isoformat(),
        "--to-date",
        last.isoformat(),
    )
    deadline = time.monotonic() + BACKFILL_TIMEOUT_SECONDS
    states: list[str] = []
    while time.monotonic() < deadline:
        states = backfill_run_states(api)
        if len(states) == 3 and all(state in {"success", "failed"} for state in states):
            break
        time.sleep(POLL_SECONDS)
    assert states == ["success"] * 3, states

    # The runs' windows, from the scheduler's logical dates, hold exactly the source rows.
    start = plan_window(
        datetime(first.year, first.month, first.day, 2, tzinfo=UTC), settings.ingest_trailing_days
    )
    end = plan_window(datetime(last.year, last.month, last.day, 2, tzinfo=UTC), settings.ingest_trailing_days)
    where = f"date >= '{start.start.isoformat()}' AND date < '{end.end.isoformat()}'"
    replay = f"http://{settings.local_host}:{settings.replay_port}"
    expected = httpx.get(
        f"{replay}/api/explore/v2.1/catalog/datasets/comptage-velo-donnees-compteurs/records",
        params={"where": where, "limit": 1},
    ).json()["total_count"]
    warehouse = Warehouse(settings)
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    rows = warehouse.scalar(
        f"SELECT COUNT(*) FROM `{raw}` WHERE counted_at >= {timestamp_literal(start.start)} "
        f"AND counted_at < {timestamp_literal(end.end)}"
    )
    assert rows == expected
