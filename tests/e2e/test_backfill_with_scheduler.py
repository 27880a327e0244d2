"""End to end: real Airflow processes (api-server, scheduler, dag-processor, LocalExecutor)
run a backfill created with the CLI, each task in its own process, against the local stack.

This is the path a data engineer takes from the UI or ``airflow backfill create``; the table
it produces must equal the source (and so what daily runs produce, see the DAG tests).
"""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def airflow_services(local_stack: Any, settings: VelocastSettings) -> Iterator[AirflowServices]:
    """Airflow on a metadata database of its own, created empty for this module."""
    url = make_url(settings.airflow_db_url).set(database="velocast_airflow_e2e")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text('DROP DATABASE IF EXISTS "velocast_airflow_e2e" WITH (FORCE)'))
    admin.dispose()
    e2e_settings = settings.model_copy(update={"airflow_db_url": url.render_as_string(hide_password=False)})
    services = AirflowServices(e2e_settings)
    with running(services):
        yield services


def airflow_cli(services: AirflowServices, *args: str) -> str:
    env = {**os.environ, **services.env()}
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def json_output(stdout: str) -> Any:
    """The CLI's JSON, after any log lines Airflow printed first."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("[", "{")))
    return json.loads("\n".join(lines[start:]))


def wait_for_dag(services: AirflowServices) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listing = airflow_cli(services, "dags", "list", "--output", "json")
        if any(d["dag_id"] == DAG_ID for d in json_output(listing)):
            return
        time.sleep(3)
    pytest.fail(f"the dag-processor did not register {DAG_ID}")


def backfill_run_states(services: AirflowServices) -> list[str]:
    listing = airflow_cli(services, "dags", "list-runs", DAG_ID, "--output", "json")
    return [run["state"] for run in json_output(listing) if run["run_id"].startswith("backfill__")]


def test_cli_backfill_runs_through_the_scheduler(
    airflow_services: AirflowServices, settings: VelocastSettings
) -> None:
    wait_for_dag(airflow_services)
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
        states = backfill_run_states(airflow_services)
        if len(states) == 3 and all(state in {"success", "failed"} for state in states):
            break
        time.sleep(5)
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
