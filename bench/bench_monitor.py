"""DAG 3 benchmark: one ``monitor_and_train`` bootstrap run (RETRAIN → DEPLOY) through the real sidecar.

The local stack and MLflow run on their own ports (the test ports + 1800), state directory
(``.velocast/bench_monitor``) and databases, so that they never collide with a test session or
``bench_predict.py``. The world is the one of ``tests/dags/test_monitor_and_train.py``: the raw table
gets the replay's last ``--raw-weeks`` weeks (as DAG 1 writes them), the baseline the
``--baseline-weeks`` weeks before them; the registry object and the registered model name are the
bench's own and emptied at the start, so the run finds no champion and bootstraps one. The sidecar
(two workers, serving ``prod``) trains it in a child process and serves it once promoted. The run
goes through ``dag.test()``, which runs every task in this process and the trigger in line. Prints:

- wall time of each task (the task instances' start and end) and of the run;
- worker-slot seconds: ``WaitForTrainingJobOperator.execute`` and ``execute_complete`` (the only
  code of ``wait_for_training`` a worker runs), timed by wrapping them, beside the wait in
  ``TrainingJobTrigger.run`` (on the triggerer in production) and the training job's own timings
  (``GET /train/{job_id}``): the slot is held for a fraction of a second while the model trains;
- the drift step's seconds (``measure_drift``);
- peak RSS: this process (``ru_maxrss``: the tasks ran in it, as well as the seeding) and the
  sidecar's processes (``VmHWM``, sampled every 0.2 s: the uvicorn master, its workers and the
  training job's process, which is gone by the end of the run);
- the run's decision (the ``model_decisions`` row), the challenger's run id and what every sidecar
  worker serves.

``--runs 2`` adds a forced retrain on the same data (usually SKIP), measured the same way.
Everything the bench started is stopped at the end::

    .venv/bin/python bench/bench_monitor.py [--raw-weeks 6] [--baseline-weeks 8] [--runs 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
PORT_OFFSET = 1800  # the test ports + 100 × slot 18: clear of any test session and of bench_predict
DAG_ID = "monitor_and_train"
PREFIX = "bench/monitor"  # the bench's registry and baseline in the bucket, emptied at each start
SAMPLE_SECONDS = 0.2


def _port(base: int) -> str:
    return str(base + PORT_OFFSET)


def bench_environment() -> dict[str, str]:
    """The ``VELOCAST_*`` values of ``tests/conftest.py`` and of the DAG 3 tests' own world, with the
    bench's ports, state and databases."""
    state = REPO_ROOT / ".velocast" / "bench_monitor"
    return {
        "VELOCAST_ENV": "local",
        "VELOCAST_STATE_DIR": str(state),
        "VELOCAST_GCS_EMULATOR_PORT": _port(19023),
        "VELOCAST_BIGQUERY_EMULATOR_PORT": _port(19050),
        "VELOCAST_BIGQUERY_EMULATOR_GRPC_PORT": _port(19060),
        "VELOCAST_REPLAY_PORT": _port(18089),
        "VELOCAST_DISCORD_PORT": _port(18096),
        "VELOCAST_SERVING_PORT": _port(18000),
        "VELOCAST_MLFLOW_PORT": _port(15000),
        "VELOCAST_MLFLOW_DB_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_mlflow_bench_monitor",
        "VELOCAST_BQEMULATOR_BIN": str(REPO_ROOT / ".venv-bqemulator" / "bin" / "bqemulator"),
        "VELOCAST_AIRFLOW_DAGS_FOLDER": str(REPO_ROOT / "airflow" / "dags"),
        "VELOCAST_AIRFLOW_PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "VELOCAST_AIRFLOW_DB_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/velocast_airflow_bench_monitor",
        "VELOCAST_REGISTRY_OBJECT": f"{PREFIX}/registry/summary.json",
        "VELOCAST_REGISTERED_MODEL_NAME": "velocast-monitor-bench",
        "VELOCAST_SERVING_ENV": "prod",
        "VELOCAST_SERVING_WORKERS": "2",
        "VELOCAST_SERVING_RELOAD_INTERVAL_SECONDS": "1",
        "VELOCAST_SERVING_JOBS_DIR": str(state / "monitor-jobs"),
        "VELOCAST_MONITOR_POLL_SECONDS": "0.5",
        "VELOCAST_MONITOR_TASK_RETRIES": "0",  # a failure shows at once instead of after retry delays
        "VELOCAST_MONITOR_PROMOTION_CONFIRM_SECONDS": "60",
    }


def logical_date_of(day: date, hour: int) -> datetime:
    """A logical date on ``day`` (Paris): the hour gives runs of the same D their own run ids."""
    from velocast.contract import PARIS

    return datetime.combine(day, clock(hour), tzinfo=PARIS).astimezone(UTC)


# --- what the bench measures around the code it runs ---------------------------------------------


@dataclass
class WaitTimings:
    """Seconds spent in ``wait_for_training``'s worker-side methods and in its trigger, per call."""

    execute: list[float] = field(default_factory=list)
    execute_complete: list[float] = field(default_factory=list)
    trigger: list[float] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    def clear(self) -> None:
        for calls in (self.execute, self.execute_complete, self.trigger, self.job_ids):
            calls.clear()


def _timed(method: Callable[..., Any], calls: list[float]) -> Callable[..., Any]:
    # *args/**kwargs: the task runner passes Airflow's ExecutorSafeguard sentinel through.
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            calls.append(time.perf_counter() - started)

    return timed


def instrument_wait(timings: WaitTimings) -> None:
    """Wrap the operator's ``execute``/``execute_complete`` and the trigger's ``run`` with timers.

    ``dag.test()`` runs the operator and the trigger in this process, with these very classes, so
    patching the classes reaches them. A deferral leaves ``execute`` by ``TaskDeferred``: its
    timer stops there. ``dag.test()`` reads only the trigger's first event: its timer stops at it.
    """
    from velocast.orchestration.training_wait import TrainingJobTrigger, WaitForTrainingJobOperator

    execute = _timed(WaitForTrainingJobOperator.execute, timings.execute)

    def execute_recording_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        timings.job_ids.append(str(self.job_id))
        return execute(self, *args, **kwargs)

    WaitForTrainingJobOperator.execute = execute_recording_job  # type: ignore[method-assign]
    WaitForTrainingJobOperator.execute_complete = _timed(  # type: ignore[method-assign]
        WaitForTrainingJobOperator.execute_complete, timings.execute_complete
    )
    run = TrainingJobTrigger.run

    async def timed_run(self: TrainingJobTrigger) -> AsyncIterator[Any]:
        started = time.perf_counter()
        async for event in run(self):
            timings.trigger.append(time.perf_counter() - started)
            yield event

    TrainingJobTrigger.run = timed_run  # type: ignore[method-assign]


def vm_hwm_mb(pid: int) -> float | None:
    """The peak resident set of a live process (``VmHWM``), in MB; None once it has exited."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class SidecarPeaks(threading.Thread):
    """Samples ``VmHWM`` of the sidecar's process tree: the uvicorn master, its workers and the
    training jobs they start (their own sessions, still their children), which exit before the end."""

    def __init__(self, master_pid: int) -> None:
        super().__init__(daemon=True)
        self.master = psutil.Process(master_pid)
        self.peaks: dict[int, tuple[str, float]] = {}  # pid → (role, MB)
        self._done = threading.Event()  # not _stop: Thread has one

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        try:
            processes = [self.master, *self.master.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            peak = vm_hwm_mb(process.pid)
            if peak is None:
                continue
            role = self.peaks[process.pid][0] if process.pid in self.peaks else self._role(process)
            self.peaks[process.pid] = (role, max(peak, self.peaks.get(process.pid, (role, 0.0))[1]))

    def _role(self, process: psutil.Process) -> str:
        if process.pid == self.master.pid:
            return "master"
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:
            return "other"
        if "velocast_serving.jobs" in command:
            return "training job"
        if "resource_tracker" in command:
            return "resource tracker"
        return "worker" if "spawn_main" in command else "other"

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()

    def summary(self) -> str:
        by_role: dict[str, list[float]] = {}
        for role, peak in self.peaks.values():
            by_role.setdefault(role, []).append(peak)
        return ", ".join(
            f"{role} {' / '.join(f'{peak:.0f}' for peak in sorted(peaks, reverse=True))} MB"
            for role, peaks in sorted(by_role.items())
        )


# --- the world --------------------------------------------------------------------------------


def empty_own_prefix(settings: Any) -> None:
    """A fresh registry and baseline: the run has no champion to monitor and bootstraps one."""
    from velocast.gcp.clients import storage_client

    bucket = storage_client(settings).bucket(settings.bucket)
    for blob in bucket.list_blobs(prefix=f"{PREFIX}/"):
        blob.delete()


def seed_world(settings: Any, raw_weeks: int, baseline_weeks: int) -> date:
    """The raw table with the replay's last weeks, the baseline with the weeks before them (as the
    DAG 3 tests build them); the run's D, the day after the last complete raw day."""
    from velocast.local.champion import shipped_counts
    from velocast.local.seed import seed_raw_counts
    from velocast.ml.reference_data import BaselineLocation, split_baseline, write_baseline

    seeded = seed_raw_counts(settings, raw_weeks, run_id="bench_monitor_seed")
    older = shipped_counts(settings, raw_weeks + baseline_weeks)
    older = older[pd.to_datetime(older["counted_at"], utc=True) < seeded.start]
    baseline = split_baseline(older, test_fraction=0.2)
    manifest = write_baseline(
        baseline, settings, location=BaselineLocation.parse(settings.monitor_baseline_uri), source="bench"
    )
    print(f"raw table: {seeded.rows:,} rows, {seeded.counters} counters, {seeded.start} → {seeded.end}")
    print(
        f"baseline ({baseline_weeks} weeks before): {manifest['train']['n_rows']:,} train + "
        f"{manifest['test']['n_rows']:,} test rows at {settings.monitor_baseline_uri}"
    )
    return seeded.complete_days[1] + timedelta(days=1)


def audit_row(settings: Any, run_id: str) -> dict[str, Any]:
    """The run's one ``model_decisions`` row."""
    from velocast import contract
    from velocast.data.sql import table_ref
    from velocast.gcp.warehouse import Warehouse

    warehouse = Warehouse(settings)
    table = warehouse.table_id(contract.load_contract(contract.MODEL_DECISIONS))
    escaped = run_id.replace("'", "\\'")
    rows = warehouse.query_frame(f"SELECT * FROM {table_ref(table)} WHERE airflow_run_id = '{escaped}'")
    assert len(rows) == 1, rows
    row = {str(name): value for name, value in rows.iloc[0].to_dict().items()}
    return row


def sidecar_get(sidecar: Any, path: str) -> dict[str, Any]:
    from velocast.local.airflow_env import local_sidecar_admin_key

    headers = {"X-API-Key": local_sidecar_admin_key(sidecar.settings)}
    response = httpx.get(f"{sidecar.url}{path}", headers=headers, timeout=10)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def served_run_ids(sidecar: Any) -> dict[int, str | None]:
    """What each live sidecar worker serves (``GET /model_summary``'s worker board)."""
    body = sidecar_get(sidecar, "/model_summary")
    return {line["pid"]: line["served"].get("hgb") for line in body["workers_serving"]}


# --- one run ----------------------------------------------------------------------------------


def _ms(calls: list[float]) -> str:
    return " + ".join(f"{1000 * seconds:.1f}" for seconds in calls) + " ms"


def measure_run(
    dag: Any, settings: Any, sidecar: Any, timings: WaitTimings, day: date, hour: int, *, force: bool
) -> None:
    """One ``dag.test()`` run for D = ``day``, timed by ``timings`` (see ``instrument_wait``); prints it."""
    timings.clear()
    conf = {"force_retrain": force, "test_mode": False, "model_type": "hgb"}
    started = time.perf_counter()
    dag_run = dag.test(logical_date=logical_date_of(day, hour), run_conf=conf)
    wall = time.perf_counter() - started
    assert str(dag_run.state) == "success", dag_run.state

    print(f"\nrun for D = {day} ({dag_run.run_id}, force_retrain={force}): dag.test() {wall:.1f} s")
    durations: dict[str, float] = {}
    instances = dag_run.get_task_instances()
    ran = [ti for ti in instances if ti.start_date and ti.end_date and str(ti.state) != "skipped"]
    for ti in sorted(ran, key=lambda ti: ti.start_date):
        durations[ti.task_id] = (ti.end_date - ti.start_date).total_seconds()
        print(f"  {ti.task_id:<22} {durations[ti.task_id]:7.2f} s")
    skipped = sorted({ti.task_id for ti in instances} - durations.keys())
    print(f"  skipped (the other branches): {', '.join(skipped)}")
    first = min(ti.start_date for ti in ran)
    last = max(ti.end_date for ti in ran)
    print(f"  first task start → last task end: {(last - first).total_seconds():.1f} s")
    print(f"drift step (measure_drift): {durations['measure_drift']:.2f} s")

    row = audit_row(settings, dag_run.run_id)
    print(
        f"decision: {row['branch']} ({row['branch_reason']}) → {row['decision']} "
        f"({row['decision_reason']}), promoted={bool(row['promoted'])}"
    )
    if "wait_for_training" not in durations:
        return
    job_id = timings.job_ids[0]
    job = sidecar_get(sidecar, f"/train/{job_id}")
    submitted, begun, finished = (
        datetime.fromisoformat(job[key]) for key in ("submitted_at", "started_at", "finished_at")
    )
    steps = job.get("timings") or {}
    worker = sum(timings.execute) + sum(timings.execute_complete)
    waited = sum(timings.trigger)
    task = durations["wait_for_training"]
    print(
        f"wait_for_training: task instance {task:.2f} s = worker side {1000 * worker:.1f} ms "
        f"(execute {_ms(timings.execute)}, execute_complete {_ms(timings.execute_complete)}) "
        f"+ trigger {waited:.2f} s (in line here, on the triggerer in production) "
        f"+ Airflow's task runner {task - worker - waited:.2f} s"
    )
    print(
        f"training job {job_id[:8]} (GET /train): {job['status']}, submitted → finished "
        f"{(finished - submitted).total_seconds():.1f} s, started → finished "
        f"{(finished - begun).total_seconds():.1f} s; steps {steps}"
    )
    print(f"training data: {job.get('data')}")
    training = (finished - submitted).total_seconds()
    print(
        f"worker slot held: {1000 * worker:.1f} ms while the model trained {training:.1f} s "
        f"({100 * worker / training:.2f} %)"
    )
    challenger = row["challenger_run_id"]
    served = served_run_ids(sidecar)
    serving = sum(1 for run_id in served.values() if run_id == challenger)
    print(
        f"challenger run id: {challenger}; served by {serving} of {len(served)} sidecar workers "
        f"(they serve {', '.join(sorted({str(run_id) for run_id in served.values()}))})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-weeks", type=int, default=6, help="replay weeks loaded into the raw table")
    parser.add_argument("--baseline-weeks", type=int, default=8, help="weeks before them in the baseline")
    parser.add_argument(
        "--runs", type=int, default=1, help="1: the bootstrap run; more: forced retrains after it"
    )
    args = parser.parse_args()

    os.environ.update(bench_environment())
    for name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"):
        os.environ.pop(name, None)
    from velocast.settings import get_settings

    # The baseline's address names the bucket, which the settings know.
    os.environ["VELOCAST_MONITOR_BASELINE_URI"] = f"gs://{get_settings().bucket}/{PREFIX}/baseline"
    get_settings.cache_clear()
    settings = get_settings()

    from velocast.local.airflow_env import airflow_environment, migrate_airflow_db
    from velocast.local.mlflow_server import MlflowServer
    from velocast.local.serving import ServingSidecar
    from velocast.local.stack import running, running_stack

    os.environ.update(airflow_environment(settings))  # before Airflow is imported
    for noisy in ("httpx", "airflow", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    with running_stack(settings), running(MlflowServer(settings)):
        migrate_airflow_db(settings)
        empty_own_prefix(settings)
        day = seed_world(settings, args.raw_weeks, args.baseline_weeks)
        sidecar = ServingSidecar(settings, name="serving-monitor")
        with running(sidecar):
            master = int((sidecar.run_dir / f"{sidecar.name}.pid").read_text())
            peaks = SidecarPeaks(master)
            peaks.start()
            from airflow.dag_processing.dagbag import DagBag

            from velocast.ml.registry import Registry

            assert Registry(settings).champion("prod") is None, "the bench's registry is not fresh"
            bag = DagBag(dag_folder=str(settings.airflow_dags_folder))
            assert bag.import_errors == {}, bag.import_errors
            dag = bag.get_dag(DAG_ID)
            timings = WaitTimings()
            instrument_wait(timings)
            for number in range(args.runs):
                measure_run(dag, settings, sidecar, timings, day, number, force=number > 0)
            peaks.stop()
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak RSS: bench process (tasks, in process) {own_peak:.0f} MB")
        print(f"peak RSS of the sidecar's processes (VmHWM): {peaks.summary()}")


if __name__ == "__main__":
    main()
