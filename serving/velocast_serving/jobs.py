"""Training jobs of the sidecar: one at a time, each in its own process, state in files.

``POST /train`` must answer at once, and a training (minutes of CPU, GBs of memory) must not run
in a worker that serves ``/predict``. So each job is a child process
(``python -m velocast_serving.jobs run <root> <job_id>``, ``velocast_serving.job_runner``)
started in its own session (``velocast_serving.job_process``), and everything about it lives
under ``<root>/<job_id>/`` where every worker (and a restarted one) can read it:

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

Every status change (the runner's start, its progress, an outcome, a cancellation) is a
read-modify-write under one file lock, ``<root>/counts.json.lock`` (see ``cancel``). Finished jobs
are counted in ``<root>/counts.json`` (for ``velocast_training_jobs_total``). This module is the
store, the workers' side; the child's side is ``velocast_serving.job_runner``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
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
from velocast.settings import VelocastSettings
from velocast_serving.job_process import GroupStop, child_environment, default_command, start_child

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


def flock_is_held(path: Path) -> bool:
    """Whether a process (this one included, through another open file) holds ``path``'s flock."""
    if not path.exists():
        return False
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


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
            # The child holds the lock from its first instruction to its exit.
            process = start_child(argv, settings, folder / "job.log", inherited=lock_fd)
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
        return flock_is_held(self.lock_path)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's status (None if unknown); a job whose process died is reported failed."""
        try:
            folder = self.job_dir(job_id)
        except KeyError:
            return None
        status = _read_json(folder / "status.json")
        if status is None or JobState(status["status"]).finished:
            return status
        if self._process_alive(job_id):
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

        Pid read, status check, ``cancelled`` written and SIGTERM sent: one section under the
        status lock, which the runner's start (``running`` + its pid) and outcome take too. A job
        starting meanwhile either sees ``cancelled`` and never trains, or has written its pid and
        gets the signal; one that finished first keeps its outcome; one whose process died is
        reported lost and its pid (free for reuse) is not signalled.
        """
        status = self.get(job_id)  # a job whose process died is recorded lost here
        if status is None or JobState(status["status"]).finished:
            return status
        stopping: GroupStop | None = None
        with _flocked(self._status_lock):
            status = _read_json(self.job_dir(job_id) / "status.json")
            if status is None or JobState(status["status"]).finished:
                return status  # finished (or cancelled by another worker) since the first read
            if not self._process_alive(job_id):
                return self._record_lost(job_id)
            status = self._record_outcome(
                job_id,
                JobState.CANCELLED,
                step="cancelled",
                error={"type": "Cancelled", "message": "cancelled by DELETE /train/{job_id}"},
            )
            pid = status.get("pid")
            # None: queued, its process not started yet; the runner sees "cancelled" and exits.
            if pid:
                stopping = GroupStop(int(pid))
                if not stopping.terminate():
                    stopping = None
        # The grace period is waited outside the lock, on the pidfd taken under it.
        if stopping is not None:
            stopping.wait_or_kill()
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
            return self._record_outcome(job_id, state, **fields)

    def _record_outcome(self, job_id: str, state: JobState, **fields: Any) -> dict[str, Any]:
        """``finish`` with the status lock held by the caller."""
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

    def _process_alive(self, job_id: str) -> bool:
        """Whether the job's process (or the worker starting it) still holds the job lock."""
        return self._is_current(job_id) and self.lock_is_held()

    def _mark_lost(self, job_id: str) -> dict[str, Any]:
        with _flocked(self._status_lock):
            return self._record_lost(job_id)

    def _record_lost(self, job_id: str) -> dict[str, Any]:
        log.error("training job %s: %s", job_id, LOST_MESSAGE)
        return self._record_outcome(
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


__all__ = [
    "FINISHED_STATES",
    "KEEP_FINISHED",
    "LOST_MESSAGE",
    "JobBusyError",
    "JobState",
    "JobStore",
    "child_environment",
    "default_command",
    "request_summary",
    "utc_now",
]


if __name__ == "__main__":  # ``python -m velocast_serving.jobs``: the child's side
    from velocast_serving.job_runner import main

    raise SystemExit(main())
