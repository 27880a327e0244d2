"""Training jobs of the sidecar: one at a time, each in its own process, state in files.

``POST /train`` must answer at once, and a training (minutes of CPU, GBs of memory) must not run
in a worker that serves ``/predict``. So each job is a child process
(``python -m velocast_serving.jobs run <root> <job_id>``) started in its own session, and
everything about it lives under ``<root>/<job_id>/`` where every worker (and a restarted one)
can read it:

* ``request.json``: the validated ``TrainingRequest``;
* ``status.json``: status (``queued`` → ``running`` → ``succeeded`` | ``failed``), the current
  step and progress, and at the end the result (run id, metrics, double evaluation, decision)
  or the error; replaced atomically (write + rename), so readers never see half a file;
* ``job.log``: the child's output.

One job at a time, across all workers: ``<root>/train.lock`` is taken with ``flock`` by the
worker that accepts a job, *before* it answers, and handed to the child (inherited descriptor),
which holds it until it exits; a second ``POST /train`` finds it taken and gets 409. A child that
dies without writing its result (killed, out of memory) releases the lock with its last
descriptor; the next reader of its status sees "running but nobody holds the lock" and records
it as failed, so no job stays "running" forever.

Finished jobs are counted in ``<root>/counts.json`` (for ``velocast_training_jobs_total``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from velocast.errors import ConflictError
from velocast.ml.training_request import TrainingRequest
from velocast.settings import VelocastSettings, get_settings

log = logging.getLogger(__name__)

JOB_ID_PATTERN: Final = re.compile(r"^[0-9a-f]{32}$")
# Finished jobs kept on disk; older ones are deleted when a new job starts.
KEEP_FINISHED: Final = 50
LOCK_FILE: Final = "train.lock"
COUNTS_FILE: Final = "counts.json"
CURRENT_FILE: Final = "current"
# How long a new job waits for a finished job's process to exit and release the lock.
EXIT_GRACE_SECONDS: Final = 10.0
LOST_MESSAGE: Final = (
    "the training process exited without reporting a result (killed, or out of memory?); see job.log"
)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES: Final = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobBusyError(ConflictError, RuntimeError):
    """A training job is running already (the API answers 409)."""

    # Sent as Retry-After: a training takes minutes, polling more often only adds load.
    retry_after_seconds = 60

    def __init__(self, running: dict[str, Any] | None) -> None:
        self.running = running or {}
        job_id = self.running.get("job_id", "unknown")
        step = self.running.get("step") or self.running.get("status", "starting")
        super().__init__(
            f"training job {job_id} is running ({step}); one job runs at a time: "
            f"poll GET /train/{job_id} and retry when it has finished"
        )


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: readers see the old or the new file, never a partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(payload, default=str, allow_nan=False), encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """An exclusive, blocking lock for short read-modify-write sections."""
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def request_summary(request: TrainingRequest) -> dict[str, Any]:
    """The request as the job status shows it: the rows are counted, not echoed."""
    summary = request.model_dump(mode="json", exclude={"current_data"})
    summary["current_rows"] = len(request.current_data) if request.current_data is not None else 0
    return summary


@dataclass(frozen=True)
class JobStore:
    """The jobs under ``root`` (shared by every worker of a sidecar)."""

    root: Path

    @classmethod
    def from_settings(cls, settings: VelocastSettings) -> JobStore:
        return cls(settings.serving_jobs_dir or settings.state_dir / "jobs")

    # --- paths -------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    # --- submitting --------------------------------------------------------------------------
    def submit(
        self,
        request: TrainingRequest,
        settings: VelocastSettings,
        *,
        command: Callable[[Path, str], list[str]] | None = None,
    ) -> dict[str, Any]:
        """Start a job and return its first status; ``JobBusyError`` if one is running."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not self._acquire(lock_fd):
                raise JobBusyError(self.current())
            self._prune()
            job_id = uuid.uuid4().hex
            folder = self.root / job_id
            folder.mkdir()
            (folder / "request.json").write_text(request.model_dump_json(), encoding="utf-8")
            status = {
                "job_id": job_id,
                "status": JobState.QUEUED.value,
                "step": "starting the training process",
                "progress": 0.0,
                "submitted_at": utc_now(),
                "started_at": None,
                "finished_at": None,
                "pid": None,
                "request": request_summary(request),
                "result": None,
                "error": None,
            }
            # The current pointer first (atomically): a reader that sees the new status file must
            # also see it as current, or it would take the starting job for a dead one.
            current = self.root / f".{CURRENT_FILE}.{job_id}.tmp"
            current.write_text(job_id, encoding="utf-8")
            current.replace(self.root / CURRENT_FILE)
            _write_json(folder / "status.json", status)
            argv = (command or default_command)(self.root, job_id)
            if command is None:
                argv += ["--lock-fd", str(lock_fd)]
            with (folder / "job.log").open("ab") as output:
                process = subprocess.Popen(
                    argv,
                    env=child_environment(settings),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    # The child holds the lock from its first instruction to its exit.
                    pass_fds=(lock_fd,),
                    # Its own session: a worker restart or Ctrl-C does not kill the training.
                    start_new_session=True,
                )
            # Its own session: pid == process group id, what DELETE /train/{id} signals.
            status = self.update(job_id, pid=process.pid)
            # Reaps the child when it exits (no zombie), without blocking the request.
            threading.Thread(target=process.wait, name=f"train-{job_id[:8]}", daemon=True).start()
            log.info("training job %s started (pid %s): %s", job_id, process.pid, status["request"])
            return status
        finally:
            # The child keeps its own descriptor of the same open file, hence the lock.
            os.close(lock_fd)

    def _acquire(self, lock_fd: int) -> bool:
        """The job lock, at once; or within a few seconds if the last job is finished (its
        process is exiting: it writes its result before it lets go of the lock)."""
        deadline = time.monotonic() + EXIT_GRACE_SECONDS
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if self.current() is not None or time.monotonic() > deadline:
                    return False
                time.sleep(0.05)

    # --- reading -----------------------------------------------------------------------------
    def lock_is_held(self) -> bool:
        if not self.lock_path.exists():
            return False
        with self.lock_path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's status (None if unknown); a job whose process died is reported failed."""
        try:
            folder = self.job_dir(job_id)
        except KeyError:
            return None
        status = _read_json(folder / "status.json")
        if status is None or JobState(status["status"]).finished:
            return status
        if self._is_current(job_id) and self.lock_is_held():
            return status
        return self._mark_lost(job_id)

    def current(self) -> dict[str, Any] | None:
        """The running job, if any."""
        try:
            job_id = (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        status = self.get(job_id)
        if status is None or JobState(status["status"]).finished:
            return None
        return status

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest jobs first."""
        statuses = [self.get(folder.name) for folder in self._job_dirs()]
        known = [status for status in statuses if status is not None]
        known.sort(key=lambda status: str(status["submitted_at"]), reverse=True)
        return known[:limit]

    def counts(self) -> dict[str, int]:
        data = _read_json(self.root / COUNTS_FILE) or {}
        return {state.value: int(data.get(state.value, 0)) for state in FINISHED_STATES}

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Stop a queued or running job: its process group gets SIGTERM, then SIGKILL.

        Returns the job's status (unchanged if it had finished already), None if unknown. The
        outcome is recorded before the signal, so the job can never be reported anything else;
        the registry is untouched unless the job was past its last step (adding its entry).
        """
        status = self.get(job_id)
        if status is None or JobState(status["status"]).finished:
            return status
        pid = status.get("pid")
        status = self.finish(
            job_id,
            JobState.CANCELLED,
            step="cancelled",
            error={"type": "Cancelled", "message": "cancelled by DELETE /train/{job_id}"},
        )
        if status["status"] == JobState.CANCELLED.value and pid:
            _stop_group(int(pid))
        return status

    # --- the child's side ------------------------------------------------------------------
    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Change a job's status fields; a finished job's status is only changed by ``finish``.

        Under the same lock as ``finish``: a progress report racing a cancellation cannot
        write "running" back over "cancelled".
        """
        with _flocked(self._status_lock):
            return self._update(job_id, final=False, **fields)

    def _update(self, job_id: str, *, final: bool, **fields: Any) -> dict[str, Any]:
        path = self.job_dir(job_id) / "status.json"
        status = _read_json(path)
        if status is None:
            raise KeyError(job_id)
        if JobState(status["status"]).finished and not final:
            return status  # e.g. cancelled while its process was still reporting progress
        status.update(fields)
        _write_json(path, status)
        return status

    @property
    def _status_lock(self) -> Path:
        return self.root / f"{COUNTS_FILE}.lock"

    def finish(self, job_id: str, state: JobState, **fields: Any) -> dict[str, Any]:
        """Record the outcome once, and count it."""
        with _flocked(self._status_lock):
            status = _read_json(self.job_dir(job_id) / "status.json")
            if status is not None and JobState(status["status"]).finished:
                return status  # recorded already (e.g. by a reader that found the process dead)
            if state is JobState.SUCCEEDED:
                fields.setdefault("progress", 1.0)
            status = self._update(job_id, final=True, status=state.value, finished_at=utc_now(), **fields)
            counts = self.counts()
            counts[state.value] += 1
            _write_json(self.root / COUNTS_FILE, dict(counts))
            return status

    # --- housekeeping ------------------------------------------------------------------------
    def _is_current(self, job_id: str) -> bool:
        try:
            return (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip() == job_id
        except FileNotFoundError:
            return False

    def _mark_lost(self, job_id: str) -> dict[str, Any]:
        log.error("training job %s: %s", job_id, LOST_MESSAGE)
        return self.finish(
            job_id, JobState.FAILED, step="lost", error={"type": "JobLost", "message": LOST_MESSAGE}
        )

    def _job_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [path for path in self.root.iterdir() if path.is_dir() and JOB_ID_PATTERN.fullmatch(path.name)]

    def _prune(self) -> None:
        """Delete the oldest finished jobs beyond ``KEEP_FINISHED`` (called under the job lock)."""
        finished = []
        for folder in self._job_dirs():
            status = _read_json(folder / "status.json")
            if status is not None and JobState(status["status"]).finished:
                finished.append((str(status["submitted_at"]), folder))
        finished.sort()
        for _, folder in finished[: max(0, len(finished) - KEEP_FINISHED + 1)]:
            shutil.rmtree(folder, ignore_errors=True)


def _stop_group(pid: int, grace_seconds: float = 5.0) -> None:
    """SIGTERM the job's process group (its own session: the job and anything it started)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def default_command(root: Path, job_id: str) -> list[str]:
    return [sys.executable, "-m", "velocast_serving.jobs", "run", str(root), job_id]


def child_environment(settings: VelocastSettings) -> dict[str, str]:
    """The worker's environment with these settings (incl. changes made in code), minus secrets."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VELOCAST_")}
    env.update(settings.to_environment())
    # The client libraries read these names themselves; keep them in line with the settings.
    for name, value in (
        ("STORAGE_EMULATOR_HOST", settings.storage_emulator_host),
        ("BIGQUERY_EMULATOR_HOST", settings.bigquery_emulator_host),
    ):
        env.pop(name, None)
        if value:
            env[name] = value
    # A job's metrics go to counts.json, not into the workers' multiprocess files.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


# --- the child process ------------------------------------------------------------------------


def run_job(store: JobStore, job_id: str, settings: VelocastSettings, *, lock_fd: int | None = None) -> int:
    """Run one job to its end; every outcome is written to its status file.

    ``lock_fd``: the job lock inherited from the worker, released once the outcome is written
    (rather than at interpreter exit), so the next job can start at once.
    """
    try:
        return _run(store, job_id, settings)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _run(store: JobStore, job_id: str, settings: VelocastSettings) -> int:
    from velocast.ml.training import run_training

    status = store.update(job_id, status=JobState.RUNNING.value, started_at=utc_now(), pid=os.getpid())
    if JobState(status["status"]).finished:
        log.info("training job %s was %s before it started", job_id, status["status"])
        return 0
    try:
        request = TrainingRequest.model_validate_json(
            (store.job_dir(job_id) / "request.json").read_text(encoding="utf-8")
        )

        def progress(step: str, fraction: float) -> None:
            store.update(job_id, step=step, progress=round(fraction, 3))

        result = run_training(request, settings, progress=progress)
    except Exception as error:
        log.error("training job %s failed\n%s", job_id, traceback.format_exc())
        store.finish(
            job_id,
            JobState.FAILED,
            error={"type": type(error).__name__, "message": str(error) or repr(error)},
        )
        return 1
    store.finish(job_id, JobState.SUCCEEDED, step="done", result=result.to_dict())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m velocast_serving.jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one training job (started by POST /train)")
    run.add_argument("root", type=Path)
    run.add_argument("job_id")
    run.add_argument("--lock-fd", type=int, help="the inherited job lock (released when done)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_job(JobStore(args.root), args.job_id, get_settings(), lock_fd=args.lock_fd)


if __name__ == "__main__":
    raise SystemExit(main())
