"""``dag.test()`` runs of DAG 1 against the emulators and the API replay server.

Every test works on its own logical dates so that tests do not depend on one another; the
expected row counts come from the replay server itself (its ``/records`` ``total_count``).
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from airflow.timetables.base import TimeRestriction

from velocast import contract
from velocast.data.sql import date_literal, timestamp_literal
from velocast.errors import RequestError, UnavailableError
from velocast.gcp.warehouse import Warehouse
from velocast.ingest.window import plan_window
from velocast.settings import VelocastSettings, get_settings

pytestmark = [pytest.mark.airflow]

DAG_ID = "ingest_bike_counts"


def parse_dag(settings: VelocastSettings) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.airflow_dags_folder))
    assert bag.import_errors == {}
    return bag.get_dag(DAG_ID)


@pytest.fixture(scope="module")
def parsed_dag(settings: VelocastSettings, airflow_db: None) -> Any:
    return parse_dag(settings)


@pytest.fixture(scope="module")
def dag(parsed_dag: Any, local_stack: Any) -> Any:
    return parsed_dag


@pytest.fixture(scope="module")
def warehouse(dag: Any, settings: VelocastSettings) -> Warehouse:
    # The tables exist before the first run, as Terraform creates them in production.
    from velocast.ingest.steps import ensure_tables

    ensure_tables(settings)
    return Warehouse(settings)


@pytest.fixture()
def replay(settings: VelocastSettings) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=f"http://{settings.local_host}:{settings.replay_port}", timeout=30)
    client.delete("/__admin/faults")
    client.delete("/__admin/stats")
    yield client
    client.delete("/__admin/faults")
    client.close()


def logical_date_days_ago(days: int) -> datetime:
    """02:00 Paris (01:00 UTC in winter, close enough: the window is the Paris date's)."""
    today = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def expected_rows(replay: httpx.Client, start: datetime, end: datetime) -> int:
    where = f"date >= '{start.isoformat()}' AND date < '{end.isoformat()}'"
    response = replay.get(
        "/api/explore/v2.1/catalog/datasets/comptage-velo-donnees-compteurs/records",
        params={"where": where, "limit": 1},
    )
    response.raise_for_status()
    return int(response.json()["total_count"])


def window_counts(warehouse: Warehouse, start: datetime, end: datetime) -> tuple[int, int]:
    """(rows, distinct (counter, hour) keys) of the raw table in [start, end)."""
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    frame = warehouse.query_frame(
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT CONCAT(counter_id, '|', CAST(counted_at AS STRING))) AS k "
        f"FROM `{raw}` WHERE counted_at >= {timestamp_literal(start)} "
        f"AND counted_at < {timestamp_literal(end)}"
    )
    return int(frame.n[0]), int(frame.k[0])


def log_rows(warehouse: Warehouse, logical_day: date) -> Any:
    table = warehouse.table_id(contract.load_contract(contract.INGESTION_LOG))
    return warehouse.query_frame(
        f"SELECT * FROM `{table}` WHERE logical_date = {date_literal(logical_day)} ORDER BY logged_at"
    )


def quarantine_rows(warehouse: Warehouse, logical_day: date) -> Any:
    table = warehouse.table_id(contract.load_contract(contract.QUARANTINE))
    return warehouse.query_frame(f"SELECT * FROM `{table}` WHERE logical_date = {date_literal(logical_day)}")


def core_timetable(dag: Any) -> Any:
    from airflow.serialization.encoders import coerce_to_core_timetable

    return coerce_to_core_timetable(dag.timetable)


def run(dag: Any, logical_date: datetime) -> str:
    dag_run = dag.test(logical_date=logical_date)
    return str(dag_run.state)


@pytest.mark.parametrize(
    ("earliest", "expected_utc"),
    [
        (datetime(2024, 1, 15, 12, tzinfo=UTC), datetime(2024, 1, 16, 1, tzinfo=UTC)),  # CET
        (datetime(2024, 7, 15, 12, tzinfo=UTC), datetime(2024, 7, 16, 0, tzinfo=UTC)),  # CEST
    ],
)
def test_dag_runs_daily_at_two_paris_time(
    parsed_dag: Any, earliest: datetime, expected_utc: datetime
) -> None:
    info = core_timetable(parsed_dag).next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=earliest, latest=None, catchup=True),
    )
    assert info is not None
    assert info.logical_date == expected_utc
    assert parsed_dag.max_active_runs == 1


def test_catchup_runs_cover_every_day_without_gaps(parsed_dag: Any, settings: VelocastSettings) -> None:
    """The scheduler's catch-up sequence of logical dates re-ingests every UTC day exactly
    ``trailing_days`` times, across both clock changes of a year."""
    timetable = core_timetable(parsed_dag)
    restriction = TimeRestriction(earliest=datetime(2023, 1, 1, tzinfo=UTC), latest=None, catchup=True)
    interval, coverage = None, Counter[date]()
    for _ in range(366):
        info = timetable.next_dagrun_info(last_automated_data_interval=interval, restriction=restriction)
        assert info is not None
        interval = info.data_interval
        coverage.update(plan_window(info.logical_date, settings.ingest_trailing_days).days)
    inner_days = sorted(coverage)[settings.ingest_trailing_days : -settings.ingest_trailing_days]
    assert inner_days[0] == date(2023, 1, 1)
    assert len(inner_days) == (inner_days[-1] - inner_days[0]).days + 1  # no missing day
    assert {coverage[day] for day in inner_days} == {settings.ingest_trailing_days}


def test_tasks_are_wired_from_plan_to_report(parsed_dag: Any) -> None:
    upstream = {t.task_id: set(t.upstream_task_ids) for t in parsed_dag.tasks}
    assert upstream == {
        "ensure_tables": set(),
        "plan_window": set(),
        "extract": {"plan_window", "ensure_tables"},
        "transform": {"plan_window", "extract"},
        "load": {"plan_window", "transform"},
        "report": {"plan_window", "extract", "transform", "load"},
    }
    assert {a.uri for a in parsed_dag.get_task("load").outlets} >= {
        "bigquery://velocast-local/bike_traffic_raw/hourly_counts"
    }


def test_normal_day_then_rerun_keeps_row_count(dag, warehouse, replay, settings) -> None:
    logical = logical_date_days_ago(20)
    window = plan_window(logical, settings.ingest_trailing_days)
    expected = expected_rows(replay, window.start, window.end)
    assert expected > 0

    logged_before = len(log_rows(warehouse, window.logical_date))  # a reused stack keeps history
    assert run(dag, logical) == "success"
    assert window_counts(warehouse, window.start, window.end) == (expected, expected)
    first_log = log_rows(warehouse, window.logical_date)
    assert len(first_log) == logged_before + 1
    latest = first_log.iloc[-1]
    assert latest.status == "success"
    assert int(latest.rows_fetched) == expected
    assert int(latest.rows_loaded) == expected
    assert int(latest.rows_quarantined) == 0

    # Same day again: the days are replaced, never appended to.
    assert run(dag, logical) == "success"
    assert window_counts(warehouse, window.start, window.end) == (expected, expected)
    second_log = log_rows(warehouse, window.logical_date)
    assert len(second_log) == logged_before + 2
    assert second_log.iloc[-1].status == "success"

    # The next day's run overlaps two of these days: still no duplicates.
    assert run(dag, logical + timedelta(days=1)) == "success"
    wider_end = window.end + timedelta(days=1)
    assert (
        window_counts(warehouse, window.start, wider_end)
        == (expected_rows(replay, window.start, wider_end),) * 2
    )


def test_fourteen_day_backfill_equals_the_source(dag, warehouse, replay, settings) -> None:
    first = logical_date_days_ago(60)
    logical_dates = [first + timedelta(days=i) for i in range(14)]
    for logical in logical_dates:
        assert run(dag, logical) == "success", logical
    start = plan_window(logical_dates[0], settings.ingest_trailing_days).start
    end = plan_window(logical_dates[-1], settings.ingest_trailing_days).end
    expected = expected_rows(replay, start, end)
    assert window_counts(warehouse, start, end) == (expected, expected)

    # Backfilling the same range in reverse order lands on the same table.
    for logical in reversed(logical_dates[:3]):
        assert run(dag, logical) == "success"
    assert window_counts(warehouse, start, end) == (expected, expected)


def test_rate_limited_api_is_retried_until_success(dag, warehouse, replay, settings) -> None:
    logical = logical_date_days_ago(30)
    window = plan_window(logical, settings.ingest_trailing_days)
    replay.post(
        "/__admin/faults", json={"mode": "rate_limit", "count": 2, "retry_after": 1}
    ).raise_for_status()

    assert run(dag, logical) == "success"
    expected = expected_rows(replay, window.start, window.end)
    assert window_counts(warehouse, window.start, window.end) == (expected, expected)
    stats = replay.get("/__admin/stats").json()
    assert stats["faults_fired"]["rate_limit"] == 2


def test_api_failure_mid_window_fails_and_leaves_table_unchanged(dag, warehouse, replay, settings) -> None:
    logical = logical_date_days_ago(40)
    window = plan_window(logical, settings.ingest_trailing_days)
    assert run(dag, logical) == "success"
    before = window_counts(warehouse, window.start, window.end)
    log_before = len(log_rows(warehouse, window.logical_date))

    # Exports down, and the records endpoint dies after a few pages: the task must fail.
    replay.post("/__admin/faults", json={"mode": "exports_down"}).raise_for_status()
    replay.post("/__admin/faults", json={"mode": "fail_after", "after": 20}).raise_for_status()
    assert run(dag, logical) == "failed"
    assert window_counts(warehouse, window.start, window.end) == before
    assert len(log_rows(warehouse, window.logical_date)) == log_before


def test_malformed_rows_are_quarantined_with_reasons(dag, warehouse, replay, settings) -> None:
    logical = logical_date_days_ago(50)
    window = plan_window(logical, settings.ingest_trailing_days)
    replay.post("/__admin/faults", json={"mode": "malformed_rows", "count": 1, "rows": 7}).raise_for_status()

    assert run(dag, logical) == "success"
    quarantined = quarantine_rows(warehouse, window.logical_date)
    assert len(quarantined) == 7
    assert all(reason for reason in quarantined.reason)
    assert all(json.loads(raw) for raw in quarantined.raw_record)
    log = log_rows(warehouse, window.logical_date)
    assert int(log.rows_quarantined.iloc[-1]) == 7
    loaded = int(log.rows_loaded.iloc[-1])
    assert window_counts(warehouse, window.start, window.end) == (loaded, loaded)

    # A clean re-run replaces the run's quarantine partition: nothing stale remains.
    assert run(dag, logical) == "success"
    assert len(quarantine_rows(warehouse, window.logical_date)) == 0


def test_too_many_rejected_rows_fail_loudly(warehouse, replay, settings, monkeypatch) -> None:
    """The run fails at the transform's first try, even with retries configured: the data is wrong,
    so a retry would fail the same way (and would log the run as rejected once per try)."""
    logical = logical_date_days_ago(70)
    window = plan_window(logical, settings.ingest_trailing_days)
    logged_before = len(log_rows(warehouse, window.logical_date))
    monkeypatch.setenv("VELOCAST_MAX_REJECTED_SHARE", "0.0001")
    monkeypatch.setenv("VELOCAST_INGEST_TASK_RETRIES", "2")
    get_settings.cache_clear()
    try:
        retrying_dag = parse_dag(get_settings())
        assert retrying_dag.get_task("transform").retries == 2
        replay.post(
            "/__admin/faults", json={"mode": "malformed_rows", "count": 1, "rows": 7}
        ).raise_for_status()
        dag_run = retrying_dag.test(logical_date=logical)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert str(dag_run.state) == "failed"
    transform = dag_run.get_task_instance("transform")
    assert (str(transform.state), transform.try_number) == ("failed", 1)
    assert window_counts(warehouse, window.start, window.end) == (0, 0)
    log = log_rows(warehouse, window.logical_date)
    assert len(log) == logged_before + 1
    assert log.iloc[-1].status == "rejected"
    assert len(quarantine_rows(warehouse, window.logical_date)) == 7


def test_every_task_fails_request_errors_at_once_and_retries_unavailable_ones(
    parsed_dag: Any, settings: VelocastSettings
) -> None:
    from airflow.sdk import RetryAction

    for task in parsed_dag.tasks:
        assert task.retries == settings.ingest_task_retries, task.task_id
        policy = task.retry_policy
        assert policy.evaluate(RequestError("bad data"), 1, 3).action is RetryAction.FAIL, task.task_id
        assert policy.evaluate(UnavailableError("down"), 1, 3).action is RetryAction.RETRY, task.task_id


def test_ingestion_metrics_reach_statsd(dag, warehouse, replay, settings, monkeypatch) -> None:
    """A real UDP listener stands in for the statsd exporter.

    ``dag.test()`` runs tasks in this process, so the stats client is initialised here exactly
    as Airflow's task runner initialises it in a worker.
    """
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(0.5)
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(server.getsockname()[1]))
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
        stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
        try:
            assert run(dag, logical_date_days_ago(80)) == "success"
        finally:
            stats.initialize(factory=stats_utils.NoStatsLogger, export_legacy_names=False)
        packets = []
        try:
            while True:
                packets.append(server.recv(65535).decode())
        except TimeoutError:
            pass
    lines = "\n".join(packets).splitlines()
    for metric in ("rows_fetched", "rows_loaded", "rows_quarantined", "duplicates_dropped"):
        assert any(
            line.startswith(f"airflow.velocast.ingest.{metric}:") and "|c" in line for line in lines
        ), metric
    assert any(line.startswith("airflow.velocast.ingest.duration:") and "|ms" in line for line in lines)
    assert any(line.startswith("airflow.velocast.ingest.runs.success:1|c") for line in lines)
