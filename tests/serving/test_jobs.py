"""The training-job store: one job at a time across processes, state in files, lost jobs detected.

Real child processes stand in for the training (a Python that sleeps or exits): what is under
test is the locking and the bookkeeping, not the training (see test_serving_train.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from velocast_serving.job_runner import run_job
from velocast_serving.jobs import (
    KEEP_FINISHED,
    LOST_MESSAGE,
    JobBusyError,
    JobState,
    JobStore,
    child_environment,
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


# --- cancel racing the job's start and end -------------------------------------------------------


@dataclass(frozen=True)
class InterleavedStore(JobStore):
    """A store whose ``get`` runs the queued ``meanwhile`` steps after it has read a status.

    ``cancel`` reads the status first: the steps are what the job's process does between that
    read and the cancellation's write. The interleaving is driven, not slept into.
    """

    meanwhile: list[Callable[[], Any]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def get(self, job_id: str) -> dict[str, Any] | None:
        status = super().get(job_id)
        while self.meanwhile:
            step = self.meanwhile.pop(0)
            step()
            self.ran.append(getattr(step, "__name__", "step"))
        return status


@pytest.fixture
def interleaved(tmp_path: Path) -> InterleavedStore:
    return InterleavedStore(tmp_path / "jobs")


def stopped(process: psutil.Process) -> bool:
    return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_cancel_stops_a_job_that_starts_after_the_cancel_read_its_status(interleaved, request_, settings):
    """Before: the pid was read outside the lock, from a status taken before the job started (no
    pid yet): "cancelled" was recorded and nothing signalled, so the job trained on, held the job
    lock and at the end added its registry entry."""
    started = interleaved.submit(request_, settings, command=SLEEP)
    job_id, pid = started["job_id"], started["pid"]
    process = psutil.Process(pid)
    # The status as the worker first writes it, before it records the pid of the process it started.
    interleaved.update(job_id, pid=None)

    def job_starts() -> None:  # what the runner writes first (under the status lock)
        interleaved.update(job_id, status="running", started_at="now", pid=pid)

    interleaved.meanwhile.append(job_starts)
    cancelled = interleaved.cancel(job_id)

    assert interleaved.ran == ["job_starts"]
    assert cancelled["status"] == "cancelled" and cancelled["pid"] == pid
    assert stopped(process)
    wait_for(lambda: not interleaved.lock_is_held())
    assert interleaved.counts() == {"succeeded": 0, "failed": 0, "cancelled": 1}


def test_a_job_cancelled_before_its_start_check_does_not_train(interleaved, request_, settings):
    """The other order: the cancellation is recorded first, the runner's start check sees it."""
    started = interleaved.submit(request_, settings, command=python("pass"))
    wait_for(lambda: not interleaved.lock_is_held())
    job_id = started["job_id"]
    # As if its process were still starting (it holds the job lock until it exits).
    lock = interleaved.lock_path.open("a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        interleaved.update(job_id, pid=None)
        assert interleaved.cancel(job_id)["status"] == "cancelled"
    finally:
        lock.close()
    assert run_job(interleaved, job_id, settings) == 0
    assert interleaved.get(job_id)["status"] == "cancelled"
    assert interleaved.get(job_id)["started_at"] is None


def test_a_job_that_finishes_while_it_is_cancelled_keeps_its_outcome(interleaved, request_, settings):
    """It wrote its result first: the result stands and its (exiting) process is not signalled."""
    started = interleaved.submit(request_, settings, command=SLEEP_WITH_PID)
    job_id = started["job_id"]
    wait_for(lambda: interleaved.get(job_id)["status"] == "running")
    process = psutil.Process(started["pid"])

    def job_finishes() -> None:
        interleaved.finish(job_id, JobState.SUCCEEDED, step="done")

    interleaved.meanwhile.append(job_finishes)
    outcome = interleaved.cancel(job_id)

    assert interleaved.ran == ["job_finishes"]
    assert outcome["status"] == "succeeded"
    assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    assert interleaved.counts() == {"succeeded": 1, "failed": 0, "cancelled": 0}
    kill(outcome)


def test_a_job_that_dies_while_it_is_cancelled_is_lost_and_its_pid_is_not_signalled(
    interleaved, request_, settings
):
    """Its process died between the cancellation's read and its write: its pid may name another
    process by then, so it must not be signalled; the job is reported as GET reports it, lost.
    Before: "cancelled" was recorded and the stale pid signalled."""
    started = interleaved.submit(request_, settings, command=SLEEP_WITH_PID)
    job_id = started["job_id"]
    wait_for(lambda: interleaved.get(job_id)["status"] == "running")
    # A process that stands for whatever was given the dead job's pid (it must survive).
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )

    def job_dies_and_its_pid_is_reused() -> None:
        job = psutil.Process(started["pid"])
        job.kill()
        job.wait(timeout=20)
        wait_for(lambda: not interleaved.lock_is_held())
        # The reuse itself cannot be forced: the status is made to name the bystander's pid.
        path = interleaved.root / job_id / "status.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"pid": bystander.pid}))

    interleaved.meanwhile.append(job_dies_and_its_pid_is_reused)
    try:
        outcome = interleaved.cancel(job_id)
        assert interleaved.ran == ["job_dies_and_its_pid_is_reused"]
        assert outcome["status"] == "failed" and outcome["error"]["type"] == "JobLost"
        assert bystander.poll() is None
        assert interleaved.counts() == {"succeeded": 0, "failed": 1, "cancelled": 0}
    finally:
        bystander.kill()
        bystander.wait()
