"""The training-job store: one job at a time across processes, state in files, lost jobs detected.

Real child processes stand in for the training (a Python that sleeps or exits): what is under
test is the locking and the bookkeeping, not the training (see test_serving_train.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from velocast_serving.jobs import (
    KEEP_FINISHED,
    LOST_MESSAGE,
    JobBusyError,
    JobState,
    JobStore,
    child_environment,
    run_job,
)

from velocast.ml.training_request import TrainingRequest


def python(code: str) -> Callable[[Path, str], list[str]]:
    """A job command that runs ``code`` (with ``root`` and ``job_id`` in sys.argv)."""
    return lambda root, job_id: [sys.executable, "-c", code, str(root), job_id]


SLEEP = python("import time; time.sleep(120)")
# Marks itself running in its status as the real runner does (under the store's status lock,
# written atomically), then sleeps.
SLEEP_WITH_PID = python(
    "import fcntl, json, os, sys, time\n"
    "from pathlib import Path\n"
    "root = Path(sys.argv[1])\n"
    "path = root / sys.argv[2] / 'status.json'\n"
    "with open(root / 'counts.json.lock', 'a+') as lock:\n"
    "    fcntl.flock(lock, fcntl.LOCK_EX)\n"
    "    status = json.loads(path.read_text())\n"
    "    status.update(status='running', pid=os.getpid())\n"
    "    tmp = path.with_suffix('.tmp')\n"
    "    tmp.write_text(json.dumps(status))\n"
    "    tmp.replace(path)\n"
    "time.sleep(120)\n"
)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs")


@pytest.fixture
def request_() -> TrainingRequest:
    return TrainingRequest(model_type="hgb", hyperparams={"max_iter": 10}, current_data=[{"a": 1}, {"a": 2}])


def kill(status: dict[str, object]) -> None:
    os.kill(int(str(status["pid"])), signal.SIGKILL)


def test_one_job_at_a_time_then_the_next_one_starts(store, request_, settings):
    first = store.submit(request_, settings, command=SLEEP_WITH_PID)
    assert first["status"] == "queued"
    assert first["request"]["current_rows"] == 2 and "current_data" not in first["request"]
    with pytest.raises(JobBusyError) as busy:
        store.submit(request_, settings, command=SLEEP)
    assert busy.value.running["job_id"] == first["job_id"]
    assert f"GET /train/{first['job_id']}" in str(busy.value)
    assert store.current()["job_id"] == first["job_id"]
    assert store.lock_is_held()

    wait_for(lambda: store.get(first["job_id"])["status"] == "running")
    running = store.get(first["job_id"])
    assert running["status"] == "running" and running["pid"] != os.getpid()
    kill(running)
    # The lock goes with the child's last descriptor: the next job may start.
    wait_for(lambda: not store.lock_is_held())
    second = store.submit(request_, settings, command=SLEEP_WITH_PID)
    assert second["job_id"] != first["job_id"]
    wait_for(lambda: store.get(second["job_id"])["status"] == "running")
    kill(store.get(second["job_id"]))


def test_a_job_whose_process_died_is_reported_failed_once(store, request_, settings):
    started = store.submit(request_, settings, command=SLEEP_WITH_PID)
    wait_for(lambda: store.get(started["job_id"])["status"] == "running")
    kill(store.get(started["job_id"]))
    wait_for(lambda: not store.lock_is_held())

    lost = store.get(started["job_id"])
    assert lost["status"] == "failed"
    assert lost["error"] == {"type": "JobLost", "message": LOST_MESSAGE}
    assert lost["finished_at"] is not None
    assert store.current() is None
    # Read again (by another worker, say): still one failure counted.
    store.get(started["job_id"])
    assert store.counts() == {"succeeded": 0, "failed": 1, "cancelled": 0}


def test_a_stale_running_status_of_an_older_job_is_not_trusted(store, request_, settings):
    """Another job holds the lock: an older job still marked running is lost, not running."""
    old = store.submit(request_, settings, command=python("pass"))
    wait_for(lambda: not store.lock_is_held())
    store.update(old["job_id"], status="running")  # as if its process died mid-way
    new = store.submit(request_, settings, command=SLEEP_WITH_PID)
    assert store.get(old["job_id"])["status"] == "failed"
    assert store.current()["job_id"] == new["job_id"]
    wait_for(lambda: store.get(new["job_id"])["status"] == "running")
    kill(store.get(new["job_id"]))


def test_status_files_are_replaced_whole(store, request_, settings):
    started = store.submit(request_, settings, command=python("pass"))
    folder = store.root / started["job_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["job.log", "request.json", "status.json"]
    for step in range(50):
        store.update(started["job_id"], step=f"step {step}", progress=step / 50)
        json.loads((folder / "status.json").read_text())
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_unknown_and_malformed_ids(store):
    assert store.get("0" * 32) is None
    assert store.get("../../etc/passwd") is None
    assert store.get("ABCDEF") is None
    with pytest.raises(KeyError):
        store.job_dir("../x")


def test_old_finished_jobs_are_pruned(store, request_, settings):
    for _ in range(KEEP_FINISHED + 3):
        started = store.submit(request_, settings, command=python("pass"))
        store.finish(started["job_id"], JobState.SUCCEEDED)
        wait_for(lambda: not store.lock_is_held())
    kept = store.recent(limit=1000)
    assert len(kept) == KEEP_FINISHED
    assert store.counts()["succeeded"] == KEEP_FINISHED + 3  # counts survive pruning


@pytest.mark.stack
def test_run_job_records_a_failure_with_its_reason(store, settings, local_stack, tmp_path):
    """The real runner, in process: no baseline at the data source → failed, with the message."""
    source = f"gs://{settings.bucket}/tests/none-{tmp_path.name}"
    started = store.submit(TrainingRequest(data_source=source), settings, command=python("pass"))
    wait_for(lambda: not store.lock_is_held())
    code = run_job(store, started["job_id"], settings)
    status = store.get(started["job_id"])
    assert code == 1
    assert status["status"] == "failed" and status["started_at"] is not None
    assert status["error"]["type"] == "TrainingDataError"
    assert f"{source}/train_baseline.parquet does not exist" in status["error"]["message"]
    assert store.counts() == {"succeeded": 0, "failed": 1, "cancelled": 0}


def test_child_environment_carries_settings_changed_in_code(settings, monkeypatch):
    monkeypatch.setenv("VELOCAST_REGISTRY_OBJECT", "from/the/parent.json")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/somewhere")
    changed = settings.model_copy(update={"registry_object": "tests/x/summary.json"})
    env = child_environment(changed)
    assert env["VELOCAST_REGISTRY_OBJECT"] == "tests/x/summary.json"
    assert env["STORAGE_EMULATOR_HOST"] == changed.storage_emulator_host
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    assert not any("API_KEY" in name for name in env)
    # A child process rebuilds the same settings from it.
    code = "from velocast.settings import get_settings as g; s = g(); print(s.registry_object, s.bucket)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["tests/x/summary.json", changed.bucket]


def test_cancel_stops_the_process_group_and_records_it(store, request_, settings):
    started = store.submit(request_, settings, command=SLEEP_WITH_PID)
    assert started["pid"] is not None  # known at once: a queued job can be cancelled too
    wait_for(lambda: store.get(started["job_id"])["status"] == "running")
    process = psutil.Process(started["pid"])

    cancelled = store.cancel(started["job_id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]["type"] == "Cancelled"
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    wait_for(lambda: not store.lock_is_held())
    # Recorded once; a later progress report of a dying process changes nothing.
    store.update(started["job_id"], status="running", step="fit")
    assert store.get(started["job_id"])["status"] == "cancelled"
    assert store.counts() == {"succeeded": 0, "failed": 0, "cancelled": 1}
    # Cancelling a finished job is a no-op that returns its status.
    assert store.cancel(started["job_id"])["status"] == "cancelled"
    assert store.cancel("0" * 32) is None


def test_a_job_cancelled_before_it_starts_does_not_run(store, request_, settings, tmp_path):
    """The runner checks the status first: a job cancelled while queued never trains."""
    started = store.submit(request_, settings, command=python("pass"))
    wait_for(lambda: not store.lock_is_held())
    store.finish(started["job_id"], JobState.CANCELLED, error={"type": "Cancelled", "message": "x"})
    assert run_job(store, started["job_id"], settings) == 0
    status = store.get(started["job_id"])
    assert status["status"] == "cancelled" and status["started_at"] is None
