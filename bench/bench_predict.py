"""DAG 2 benchmark: one ``predict_bike_counts`` run on the full replay, through the real sidecar.

The local stack runs on its own ports (the test ports + 1700), state directory
(``.velocast/bench_predict``) and Airflow database, so that it never collides with a test session.
The raw table gets the replay's last ``--raw-weeks`` weeks (≈100 counters, as DAG 1 writes them,
``velocast.local.champion.shipped_counts``), a champion is bootstrapped
(``velocast.local.champion.bootstrap_champion``) and the real sidecar process serves it. The
``--warmup-days`` daily runs before D give the measured run 7 days of forecasts to score; then
one run for D (the last complete replay day but one) through ``dag.test()``, which runs every
task in this process. Prints:

- wall time of each task (the task instances' start and end) and of the run;
- the share of the forecast task spent in the sidecar: the sum of the sidecar's own
  ``POST /predict`` request-duration histogram (``/metrics``), read before and after the run;
- rows written (forecasts, scores);
- peak RSS: this process (``ru_maxrss``: the tasks ran in it, as well as the seeding) and the
  sidecar process (``VmHWM``).

Everything the bench started is stopped at the end::

    .venv/bin/python bench/bench_predict.py
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[1]
PORT_OFFSET = 1700  # the test ports + 100 × slot 17: clear of any test session's stack
DAG_ID = "predict_bike_counts"


def _port(base: int) -> str:
    return str(base + PORT_OFFSET)


def bench_environment() -> dict[str, str]:
    """The ``VELOCAST_*`` values of ``tests/conftest.py``, with the bench's ports, state and databases."""
    return {
        "VELOCAST_ENV": "local",
        "VELOCAST_STATE_DIR": str(REPO_ROOT / ".velocast" / "bench_predict"),
        "VELOCAST_GCS_EMULATOR_PORT": _port(19023),
        "VELOCAST_BIGQUERY_EMULATOR_PORT": _port(19050),
        "VELOCAST_BIGQUERY_EMULATOR_GRPC_PORT": _port(19060),
        "VELOCAST_REPLAY_PORT": _port(18089),
        "VELOCAST_DISCORD_PORT": _port(18096),
        "VELOCAST_SERVING_PORT": _port(18000),
        "VELOCAST_MLFLOW_PORT": _port(15000),
        "VELOCAST_MLFLOW_DB_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_mlflow_bench",
        "VELOCAST_BQEMULATOR_BIN": str(REPO_ROOT / ".venv-bqemulator" / "bin" / "bqemulator"),
        "VELOCAST_AIRFLOW_DAGS_FOLDER": str(REPO_ROOT / "airflow" / "dags"),
        "VELOCAST_AIRFLOW_PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "VELOCAST_AIRFLOW_DB_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_airflow_bench",
        "VELOCAST_PREDICT_TASK_RETRIES": "0",  # a failure shows at once instead of after retry delays
    }


def logical_date_of(day: date) -> datetime:
    """The scheduled logical date of ``day``'s run: 04:00 Paris."""
    from velocast.contract import PARIS

    return datetime.combine(day, clock(4), tzinfo=PARIS).astimezone(UTC)


def predict_seconds(sidecar_url: str) -> tuple[float, float]:
    """(sum of seconds, count) of the sidecar's ``POST /predict`` request-duration histogram."""
    text = httpx.get(f"{sidecar_url}/metrics", timeout=10).text
    seconds = count = 0.0
    for family in text_string_to_metric_families(text):
        if not family.name.endswith("_serving_request_duration_seconds"):
            continue
        for sample in family.samples:
            if sample.labels.get("route") != "/predict" or sample.labels.get("method") != "POST":
                continue
            if sample.name.endswith("_sum"):
                seconds += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return seconds, count


def peak_rss_mb(pid: int) -> float:
    """The peak resident set of a live process (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def seed_raw_table(settings: Any, weeks: int) -> tuple[date, date]:
    """The replay's last ``weeks`` weeks in the raw table (replacing that range); their first and last
    complete local days (as ``tests/dags/test_predict_bike_counts.py`` seeds it)."""
    from velocast.gcp.warehouse import Warehouse
    from velocast.local.seed import seed_raw_counts
    from velocast.predict.steps import ensure_tables

    seeded = seed_raw_counts(settings, weeks, run_id="bench_predict_seed")
    ensure_tables(Warehouse(settings))
    print(f"raw table: {seeded.rows:,} rows, {seeded.counters} counters, {seeded.start} → {seeded.end}")
    return seeded.complete_days


def rows_written(settings: Any, day: date, run_id: str) -> tuple[int, int]:
    """(forecast rows in D's partition, score rows this run wrote)."""
    from velocast import contract
    from velocast.data.sql import date_literal
    from velocast.gcp.warehouse import Warehouse

    warehouse = Warehouse(settings)
    predictions = warehouse.table_id(contract.load_contract(contract.PREDICTIONS))
    scores = warehouse.table_id(contract.load_contract(contract.PREDICTION_SCORES))
    forecasts = warehouse.scalar(
        f"SELECT COUNT(*) FROM `{predictions}` WHERE prediction_date = {date_literal(day)}"
    )
    scored = warehouse.scalar(f"SELECT COUNT(*) FROM `{scores}` WHERE airflow_run_id = '{run_id}'")
    return int(forecasts), int(scored)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-weeks", type=int, default=4, help="replay weeks loaded into the raw table")
    parser.add_argument("--warmup-days", type=int, default=7, help="daily runs before D (not measured)")
    args = parser.parse_args()

    os.environ.update(bench_environment())
    for name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"):
        os.environ.pop(name, None)
    from velocast.local.airflow_env import airflow_environment, migrate_airflow_db
    from velocast.local.champion import bootstrap_champion
    from velocast.local.serving import SERVICE_NAME, ServingSidecar
    from velocast.local.stack import running, running_stack
    from velocast.settings import get_settings

    settings = get_settings()
    os.environ.update(airflow_environment(settings))  # before Airflow is imported
    for noisy in ("httpx", "airflow", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    with running_stack(settings):
        migrate_airflow_db(settings)
        first, last = seed_raw_table(settings, args.raw_weeks)
        champion = bootstrap_champion(settings)
        print(
            f"champion: {champion.entry.model_type} {champion.entry.run_id} "
            f"({'trained' if champion.created else 'reused'} in {champion.seconds:.1f} s)"
        )
        with running(ServingSidecar(settings)) as group:
            assert isinstance(group, ServingSidecar)
            group.wait_ready()
            sidecar_pid = int((group.run_dir / f"{SERVICE_NAME}.pid").read_text())
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(settings.airflow_dags_folder))
            assert bag.import_errors == {}, bag.import_errors
            dag = bag.get_dag(DAG_ID)
            day = last - timedelta(days=1)
            warmup = [day - timedelta(days=offset) for offset in range(args.warmup_days, 0, -1)]
            assert not warmup or warmup[0] - timedelta(days=14) >= first, "raise --raw-weeks"
            for warm_day in warmup:
                started = time.perf_counter()
                state = str(dag.test(logical_date=logical_date_of(warm_day)).state)
                assert state == "success", (warm_day, state)
                print(f"warm-up run {warm_day}: {time.perf_counter() - started:.1f} s")

            sidecar_before = predict_seconds(group.url)
            started = time.perf_counter()
            dag_run = dag.test(logical_date=logical_date_of(day))
            wall = time.perf_counter() - started
            sidecar_after = predict_seconds(group.url)
            assert str(dag_run.state) == "success", dag_run.state
            sidecar_peak = peak_rss_mb(sidecar_pid)

        print(f"\nrun for D = {day} ({dag_run.run_id}): dag.test() {wall:.1f} s")
        durations: dict[str, float] = {}
        for ti in sorted(dag_run.get_task_instances(), key=lambda ti: ti.start_date):
            durations[ti.task_id] = (ti.end_date - ti.start_date).total_seconds()
            print(f"  {ti.task_id:<16} {durations[ti.task_id]:7.2f} s")
        in_sidecar = sidecar_after[0] - sidecar_before[0]
        requests = int(sidecar_after[1] - sidecar_before[1])
        forecast = durations["forecast"]
        print(
            f"forecast task in the sidecar: {in_sidecar:.2f} s of {forecast:.2f} s "
            f"({100 * in_sidecar / forecast:.0f} %, {requests} POST /predict)"
        )
        forecasts, scores = rows_written(settings, day, dag_run.run_id)
        print(f"rows written: {forecasts:,} forecasts, {scores} score rows")
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: bench process (tasks, in process) {own_peak:.0f} MB, sidecar {sidecar_peak:.0f} MB")


if __name__ == "__main__":
    main()
