"""The processes the sidecar starts for heavy work: training jobs and evaluations.

What ``velocast_serving.jobs`` (training) and ``velocast_serving.evaluations`` (``POST /evaluate``)
share: the command line of the child (``python -m velocast_serving.jobs …``, run by
``velocast_serving.job_runner``), its environment, and how its process group is stopped.

Each child runs in its own session (a worker restart or Ctrl-C does not kill it), so its pid is
also its process group id, and stopping it means signalling the group: the child and anything it
started.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from velocast.settings import VelocastSettings

RUNNER_MODULE: Final = "velocast_serving.jobs"
# An evaluation's folder: the worker writes the request, the child the result or the error.
REQUEST_FILE: Final = "request.json"
RESULT_FILE: Final = "result.json"
# How long a stopped job gets between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS: Final = 5.0


def default_command(root: Path, job_id: str) -> list[str]:
    """The training job's command line (``velocast_serving.job_runner.main``)."""
    return [sys.executable, "-m", RUNNER_MODULE, "run", str(root), job_id]


def evaluation_command(folder: Path) -> list[str]:
    """An evaluation's command line: it reads ``folder/request.json``, writes ``folder/result.json``."""
    return [sys.executable, "-m", RUNNER_MODULE, "evaluate", str(folder)]


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
    # A child's metrics go to counts.json, not into the workers' multiprocess files.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def start_child(
    argv: list[str], settings: VelocastSettings, output: Path, *, inherited: int
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, its output appended to ``output``.

    ``inherited``: a descriptor of a lock the child holds until it exits (the job lock, the
    evaluation slot). Its own session: a worker restart or Ctrl-C does not kill it, and its pid
    is its process group id, what a cancellation or a time budget signals.
    """
    with output.open("ab") as log:
        return subprocess.Popen(
            argv,
            env=child_environment(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(inherited,),
            start_new_session=True,
        )


class GroupStop:
    """Stopping a child's process group: SIGTERM now, SIGKILL if it outlives the grace period.

    ``terminate`` opens a pidfd on the group leader before it signals: the pidfd names that very
    process for as long as it is held, so the later wait and SIGKILL cannot hit another process
    that was given the same pid after the job exited (a pid is free for reuse once the job is
    reaped, possibly by another worker).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pidfd: int | None = None

    def terminate(self) -> bool:
        """SIGTERM to the group; False if the leader is gone already."""
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            # The leader is gone; what it started may not be. A group id is not given to a new
            # process while the group has members, so this reaches only them, if any.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            return False
        except OSError:  # no pidfd on this kernel: signal by group id only
            self._pidfd = None
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            self.close()
            return False
        return True

    def wait_or_kill(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Wait for the leader to exit (the pidfd turns readable), else SIGKILL the group."""
        try:
            if self._exited_within(grace_seconds):
                return
            # Alive: the group id is still its pid (not reusable while the leader lives).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        finally:
            self.close()

    def _exited_within(self, seconds: float) -> bool:
        if self._pidfd is not None:
            exited, _, _ = select.select([self._pidfd], [], [], seconds)
            return bool(exited)
        deadline = time.monotonic() + seconds  # without a pidfd: poll the group
        while time.monotonic() < deadline:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def stop_group(pid: int, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group ``pid``, then SIGKILL it if it is still there after the grace period."""
    stopping = GroupStop(pid)
    if stopping.terminate():
        stopping.wait_or_kill(grace_seconds)


__all__ = [
    "REQUEST_FILE",
    "RESULT_FILE",
    "RUNNER_MODULE",
    "STOP_GRACE_SECONDS",
    "GroupStop",
    "child_environment",
    "default_command",
    "evaluation_command",
    "start_child",
    "stop_group",
]
