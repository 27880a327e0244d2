"""``dag.test()`` runs of DAG 2 against the emulators, the real serving sidecar and its champion.

The raw table gets the replay's own rows (``velocast.local.champion.shipped_counts``: the weeks
the replay has published, dated as it serves them, what DAG 1 writes) straight from the packaged
file, which is cheaper than running DAG 1 for every day the forecasts and scores read.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from velocast import contract
from velocast.contract import PARIS
from velocast.data.sql import date_literal, time_range
from velocast.errors import RequestError, UnavailableError
from velocast.gcp.warehouse import Warehouse
from velocast.predict.days import day_range, hours_in_day
from velocast.settings import VelocastSettings, get_settings

pytestmark = [pytest.mark.airflow]

DAG_ID = "predict_bike_counts"
# Enough published weeks to hold the last autumn clock change and its 14-day lookback.
RAW_WEEKS = 8


def parse_dag(settings: VelocastSettings) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.airflow_dags_folder))
    assert bag.import_errors == {}
    return bag.get_dag(DAG_ID)


@pytest.fixture(scope="module")
def parsed_dag(settings: VelocastSettings, airflow_db: None) -> Any:
    return parse_dag(settings)


@pytest.fixture(scope="module")
def raw_days(local_stack: Any, settings: VelocastSettings) -> tuple[date, date]:
    """The replay's last ``RAW_WEEKS`` weeks in the raw table (replacing that range); their first
    and last complete local days."""
    from velocast.local.seed import seed_raw_counts
    from velocast.predict.steps import ensure_tables

    seeded = seed_raw_counts(settings, RAW_WEEKS, run_id="test_predict_seed")
    ensure_tables(Warehouse(settings))
    return seeded.complete_days


@pytest.fixture(scope="module")
def dag(parsed_dag: Any, raw_days: tuple[date, date], serving_sidecar: Any) -> Any:
    return parsed_dag


@pytest.fixture()
def discord(settings: VelocastSettings) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=f"http://{settings.local_host}:{settings.discord_port}", timeout=10)
    client.delete("/__admin/messages")
    client.delete("/__admin/mode")
    yield client
    client.delete("/__admin/mode")
    client.close()


def logical_date_of(day: date) -> datetime:
    """The scheduled logical date of ``day``'s run: 04:00 Paris."""
    return datetime.combine(day, time(4), tzinfo=PARIS).astimezone(UTC)


def partition(warehouse: Warehouse, day: date) -> pd.DataFrame:
    table = warehouse.table_id(contract.load_contract(contract.PREDICTIONS))
    return warehouse.query_frame(
        f"SELECT * FROM `{table}` WHERE prediction_date = {date_literal(day)} "
        "ORDER BY counter_id, predicted_for"
    )


def active_counters(warehouse: Warehouse, day: date) -> set[str]:
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    start = datetime.combine(day - timedelta(days=14), time(0), tzinfo=PARIS)
    end = datetime.combine(day, time(0), tzinfo=PARIS)
    frame = warehouse.query_frame(
        f"SELECT DISTINCT counter_id FROM `{raw}` WHERE {time_range('counted_at', start, end)}"
    )
    return set(frame.counter_id)


def assert_partition_is_right(warehouse: Warehouse, day: date, run_id: str | None = None) -> pd.DataFrame:
    rows = partition(warehouse, day)
    counters = active_counters(warehouse, day)
    hours = hours_in_day(day) + hours_in_day(day + timedelta(days=1))
    assert set(rows.counter_id) == counters
    assert len(rows) == len(counters) * hours
    assert not rows.duplicated(["counter_id", "predicted_for"]).any()
    assert rows.model_run_id.nunique() == 1
    assert (rows.predicted_count >= 0).all()
    start, _ = day_range(day)
    _, end = day_range(day + timedelta(days=1))
    predicted_for = pd.to_datetime(rows.predicted_for, utc=True)
    assert predicted_for.min() == start and predicted_for.max() == end - timedelta(hours=1)
    cutoff = pd.to_datetime(rows.data_cutoff, utc=True)
    assert cutoff.nunique() == 1 and cutoff.iloc[0] <= start
    expected_horizons = ((predicted_for - cutoff) // pd.Timedelta(hours=1)).astype(int)
    assert (rows.horizon_hours.astype(int) == expected_horizons).all()
    assert (rows.horizon_hours >= 0).all()
    if run_id is not None:
        assert set(rows.airflow_run_id) == {run_id}
    return rows


def test_tasks_are_wired_and_scheduled(parsed_dag: Any, settings: VelocastSettings) -> None:
    from airflow.sdk import RetryAction

    upstream = {t.task_id: set(t.upstream_task_ids) for t in parsed_dag.tasks}
    assert upstream == {
        "ensure_tables": set(),
        "forecast": {"ensure_tables"},
        "load_forecasts": {"forecast"},
        "score": {"load_forecasts"},
    }
    assert parsed_dag.max_active_runs == 1
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = coerce_to_core_timetable(parsed_dag.timetable)
    for earliest, expected in (
        (datetime(2024, 1, 15, 12, tzinfo=UTC), datetime(2024, 1, 16, 3, tzinfo=UTC)),  # 04:00 CET
        (datetime(2024, 7, 15, 12, tzinfo=UTC), datetime(2024, 7, 16, 2, tzinfo=UTC)),  # 04:00 CEST
    ):
        restriction = TimeRestriction(earliest=earliest, latest=None, catchup=True)
        info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
        assert info is not None and info.logical_date == expected
    outlets = {a.uri for task in parsed_dag.tasks for a in task.outlets}
    assert {uri.rsplit("/", 1)[1] for uri in outlets} == {"hourly_predictions", "prediction_scores"}
    for task in parsed_dag.tasks:
        assert task.retries == settings.predict_task_retries
        assert task.on_failure_callback, task.task_id
        policy = task.retry_policy
        assert policy.evaluate(RequestError("bad"), 1, 3).action is RetryAction.FAIL
        assert policy.evaluate(UnavailableError("down"), 1, 3).action is RetryAction.RETRY


def test_normal_day_then_rerun_replaces_the_partition(
    dag: Any, raw_days: tuple[date, date], settings
) -> None:
    warehouse = Warehouse(settings)
    day = raw_days[1] - timedelta(days=2)
    first = dag.test(logical_date=logical_date_of(day))
    assert str(first.state) == "success"
    rows = assert_partition_is_right(warehouse, day, first.run_id)

    again = dag.test(logical_date=logical_date_of(day))
    assert str(again.state) == "success"
    rerun = assert_partition_is_right(warehouse, day, again.run_id)
    key = ["counter_id", "predicted_for"]
    assert len(rerun) == len(rows)
    assert rerun[key].reset_index(drop=True).equals(rows[key].reset_index(drop=True))
    assert np.allclose(rerun.predicted_count, rows.predicted_count)


class _NotReadySidecar(BaseHTTPRequestHandler):
    """A sidecar that has no champion yet: ``/ready`` answers as the real one does then."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"status": "not_ready", "env": "local", "champions": {}, "errors": {}, "reason": "no model"}
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_no_champion_fails_at_once_writes_nothing_and_says_so(
    dag: Any, raw_days: tuple[date, date], settings, discord, monkeypatch
) -> None:
    warehouse = Warehouse(settings)
    day = raw_days[1] - timedelta(days=20)
    before = partition(warehouse, day)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotReadySidecar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = {"conn_type": "http", "host": "127.0.0.1", "schema": "http", "port": server.server_port}
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.sidecar_conn_id.upper()}", json.dumps(connection))
    monkeypatch.setenv("VELOCAST_PREDICT_TASK_RETRIES", "2")
    get_settings.cache_clear()
    try:
        retrying_dag = parse_dag(get_settings())
        dag_run = retrying_dag.test(logical_date=logical_date_of(day))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        server.shutdown()
    assert str(dag_run.state) == "failed"
    forecast = dag_run.get_task_instance("forecast")
    assert (str(forecast.state), forecast.try_number) == ("failed", 1)
    assert len(partition(warehouse, day)) == len(before)
    received = json.dumps(discord.get("/__admin/messages").json()["messages"])
    assert "no champion yet: trigger monitor_and_train" in received
    assert "forecast" in received


def last_clock_change(first: date, last: date) -> date:
    """The latest 23- or 25-hour day whose 14-day lookback is in the raw table."""
    day = last
    while hours_in_day(day) == 24:
        day -= timedelta(days=1)
        if day < first + timedelta(days=15):
            pytest.fail(f"no clock change in the published weeks {first}..{last}: raise RAW_WEEKS")
    return day


def test_clock_change_day_forecasts_23_or_25_hours(dag: Any, raw_days: tuple[date, date], settings) -> None:
    change = last_clock_change(*raw_days)
    warehouse = Warehouse(settings)
    for day in (change - timedelta(days=1), change):
        dag_run = dag.test(logical_date=logical_date_of(day))
        assert str(dag_run.state) == "success", day
        rows = assert_partition_is_right(warehouse, day)
        per_counter = rows.groupby("counter_id").size()
        assert set(per_counter) == {hours_in_day(day) + hours_in_day(day + timedelta(days=1))}
    assert hours_in_day(change) in (23, 25)


def _recompute(warehouse: Warehouse, day: date) -> dict[str, dict[str, float]]:
    """Scores of ``day`` per champion run, from the two tables with plain pandas (no ``scoring``)."""
    predictions = warehouse.query_frame(
        f"SELECT * FROM `{warehouse.table_id(contract.load_contract(contract.PREDICTIONS))}` "
        f"WHERE {time_range('predicted_for', *day_range(day))}"
    )
    latest = predictions.sort_values("prediction_date").groupby(["counter_id", "predicted_for"]).tail(1)
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    start, end = day_range(day)
    actuals = warehouse.query_frame(
        f"SELECT counter_id, counted_at, hourly_count FROM `{raw}` "
        f"WHERE {time_range('counted_at', start - timedelta(days=7), end)}"
    )
    actuals["counted_at"] = pd.to_datetime(actuals.counted_at, utc=True)
    latest = latest.assign(predicted_for=pd.to_datetime(latest.predicted_for, utc=True))
    latest = latest.assign(last_week_at=latest.predicted_for - timedelta(days=7))  # no clock change here
    lookup = actuals.set_index(["counter_id", "counted_at"]).hourly_count
    latest["actual"] = [
        lookup.get((c, t)) for c, t in zip(latest.counter_id, latest.predicted_for, strict=True)
    ]
    latest["last_week"] = [
        lookup.get((c, t)) for c, t in zip(latest.counter_id, latest.last_week_at, strict=True)
    ]
    result = {}
    for run_id, group in latest.groupby("model_run_id"):
        usable = group.dropna(subset=["actual", "last_week"])
        y = usable.actual.to_numpy(float)
        metrics = {"n_rows": float(len(usable)), "n_rows_left_out": float(len(group) - len(usable))}
        for prefix, column in (("", "predicted_count"), ("baseline_", "last_week")):
            guess = usable[column].to_numpy(float)
            metrics[f"{prefix}rmse"] = float(np.sqrt(np.mean((y - guess) ** 2)))
            metrics[f"{prefix}mae"] = float(np.mean(np.abs(y - guess)))
            metrics[f"{prefix}wape"] = float(np.sum(np.abs(y - guess)) / np.sum(np.abs(y)))
            metrics[f"{prefix}r2"] = float(r2_score(y, guess))
        result[str(run_id)] = metrics
    return result


def test_scores_equal_an_independent_recomputation(dag: Any, raw_days: tuple[date, date], settings) -> None:
    warehouse = Warehouse(settings)
    day = raw_days[1] - timedelta(days=4)
    scored = day - timedelta(days=1)
    assert hours_in_day(scored) == 24 and hours_in_day(scored - timedelta(days=7)) == 24
    for run_day in (scored - timedelta(days=1), scored, day):
        assert str(dag.test(logical_date=logical_date_of(run_day)).state) == "success", run_day
    table = warehouse.table_id(contract.load_contract(contract.PREDICTION_SCORES))
    stored = warehouse.query_frame(f"SELECT * FROM `{table}` WHERE scored_date = {date_literal(scored)}")
    expected = _recompute(warehouse, scored)
    assert len(stored) == len(expected) >= 1
    for row in stored.itertuples(index=False):
        for name, value in expected[row.model_run_id].items():
            assert float(getattr(row, name)) == pytest.approx(value, rel=1e-9, abs=1e-9), name


def _unreachable_sidecar(settings: VelocastSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = {"conn_type": "http", "host": "127.0.0.1", "schema": "http", "port": port}
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.sidecar_conn_id.upper()}", json.dumps(connection))


def test_webhook_failing_never_changes_the_run(
    dag: Any, raw_days: tuple[date, date], settings, discord, monkeypatch
) -> None:
    """The webhook answers 500: a good run still succeeds, a failing one fails as usual (post refused)."""
    discord.post("/__admin/mode", json={"status": 500}).raise_for_status()
    day = raw_days[1] - timedelta(days=3)
    assert str(dag.test(logical_date=logical_date_of(day)).state) == "success"
    assert_partition_is_right(Warehouse(settings), day)
    # The run's success message was tried once and refused; nothing else changed.
    assert discord.get("/__admin/messages").json()["refused"] == 1

    _unreachable_sidecar(settings, monkeypatch)
    dag_run = dag.test(logical_date=logical_date_of(day))
    monkeypatch.undo()
    assert str(dag_run.state) == "failed"
    assert str(dag_run.get_task_instance("forecast").state) == "failed"
    assert discord.get("/__admin/messages").json()["refused"] >= 2  # and the failure message
    assert_partition_is_right(Warehouse(settings), day)  # the earlier run's partition is kept


def test_sidecar_down_fails_writes_nothing_and_says_so(
    dag: Any, raw_days: tuple[date, date], settings, discord, monkeypatch
) -> None:
    warehouse = Warehouse(settings)
    day = raw_days[1] - timedelta(days=21)
    before = partition(warehouse, day)
    _unreachable_sidecar(settings, monkeypatch)
    dag_run = dag.test(logical_date=logical_date_of(day))
    monkeypatch.undo()
    assert str(dag_run.state) == "failed"
    assert str(dag_run.get_task_instance("forecast").state) == "failed"
    assert len(partition(warehouse, day)) == len(before)
    received = json.dumps(discord.get("/__admin/messages").json()["messages"])
    assert "forecast" in received and DAG_ID in received


def _tables_of(warehouse: Warehouse, days: list[date]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predictions and scores of ``days`` without the columns that name the run or its time
    (one query per table: each emulator query costs a fraction of a second)."""
    listed = ", ".join(date_literal(day) for day in days)
    predictions_table = warehouse.table_id(contract.load_contract(contract.PREDICTIONS))
    predictions = warehouse.query_frame(
        f"SELECT * FROM `{predictions_table}` WHERE prediction_date IN ({listed}) "
        "ORDER BY prediction_date, counter_id, predicted_for"
    ).drop(columns=["airflow_run_id", "predicted_at"])
    scores_table = warehouse.table_id(contract.load_contract(contract.PREDICTION_SCORES))
    scores = warehouse.query_frame(
        f"SELECT * FROM `{scores_table}` WHERE scored_date IN ({listed}) ORDER BY scored_date, model_run_id"
    ).drop(columns=["airflow_run_id", "scored_at"])
    return predictions.reset_index(drop=True), scores.reset_index(drop=True)


def test_a_seven_day_backfill_equals_seven_daily_runs(
    dag: Any, raw_days: tuple[date, date], settings
) -> None:
    """Daily runs in order, then the same range again in reverse (a backfill in any order): same tables."""
    warehouse = Warehouse(settings)
    days = [raw_days[1] - timedelta(days=offset) for offset in range(14, 7, -1)]
    for day in days:
        assert str(dag.test(logical_date=logical_date_of(day)).state) == "success", day
    daily = _tables_of(warehouse, days)
    for day in reversed(days):
        assert str(dag.test(logical_date=logical_date_of(day)).state) == "success", day
    backfilled = _tables_of(warehouse, days)
    pd.testing.assert_frame_equal(daily[0], backfilled[0])
    pd.testing.assert_frame_equal(daily[1], backfilled[1])
    assert len(daily[0]) > 0 and len(daily[1]) > 0
