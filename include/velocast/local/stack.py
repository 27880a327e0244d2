"""The local GCP-compatible stack: real processes on 127.0.0.1 instead of Google Cloud.

- ``gcs``: gcp-storage-emulator, storing objects on disk under ``<state>/gcs/.cloudstorage``;
- ``bigquery``: bqemulator (DuckDB) in its own virtual environment, resolving ``gs://`` URIs
  onto that same directory, so load jobs read what the GCS emulator stored;
- ``replay``: a replay of the Paris Open Data Explore API v2.1 serving real counts;
- ``discord``: a stand-in for Discord's incoming webhooks (``velocast.local.discord``).

The CLI (``velocast stack up``), ``make demo`` and the pytest fixtures all use this module, so
tests run against the processes a user gets. A service that already answers on its port is
reused, not restarted; ``down`` only stops processes this module started (pid files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from velocast.errors import VelocastError
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("bqemulator_launcher.py")
START_TIMEOUT_SECONDS = 90.0


def venv_executable(name: str) -> str:
    """A console script of this interpreter's environment (the stack runs from the project venv)."""
    return str(Path(sys.executable).with_name(name))


class StackError(VelocastError, RuntimeError):
    """A local service could not be started or did not become healthy."""


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    # None: the process has no health endpoint; being alive counts as healthy.
    health_url: str | None
    env: dict[str, str] = field(default_factory=dict)


def stack_environment(settings: VelocastSettings) -> dict[str, str]:
    """Variables a process needs to use the local stack through the standard Google clients."""
    env = {
        "VELOCAST_ENV": settings.env,
        "VELOCAST_GCP_PROJECT": settings.gcp_project,
        "VELOCAST_BUCKET": settings.bucket,
        "VELOCAST_OPENDATA_BASE_URL": settings.opendata_base_url,
        "VELOCAST_STATE_DIR": str(settings.state_dir),
        "GOOGLE_CLOUD_PROJECT": settings.gcp_project,
        # Anonymous credentials: the emulators accept any caller.
        f"AIRFLOW_CONN_{settings.gcp_conn_id.upper()}": json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "project": settings.gcp_project},
            }
        ),
    }
    if settings.storage_emulator_host:
        env["STORAGE_EMULATOR_HOST"] = settings.storage_emulator_host
    if settings.bigquery_emulator_host:
        env["BIGQUERY_EMULATOR_HOST"] = settings.bigquery_emulator_host
    return env


class ProcessGroup:
    """Long-running local services: started in their own process groups, tracked by pid files."""

    def __init__(self, settings: VelocastSettings) -> None:
        self.settings = settings
        self.run_dir = settings.state_dir / "run"
        self.log_dir = settings.state_dir / "logs"

    def services(self) -> list[Service]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return stack_environment(self.settings)

    def prepare(self) -> None:
        """Hook run before any service starts."""

    def up(self) -> list[str]:
        """Start every service that is not answering yet; return the names started."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        started = []
        for service in self.services():
            if self._is_healthy(service):
                log.info("%s already running", service.name)
                continue
            self._spawn(service)
            started.append(service.name)
        for service in self.services():
            self._wait_healthy(service)
        return started

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop the services this module started (their whole process groups), or only ``names``."""
        stopped = []
        for service in self.services():
            if names is not None and service.name not in names:
                continue
            pid_file = self._pid_file(service)
            if not pid_file.exists():
                continue
            pid = int(pid_file.read_text())
            if _stop_group(pid):
                stopped.append(service.name)
            pid_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, bool]:
        return {service.name: self._is_healthy(service) for service in self.services()}

    def _is_healthy(self, service: Service) -> bool:
        if service.health_url is not None:
            return _healthy(service.health_url)
        pid_file = self._pid_file(service)
        return pid_file.exists() and _alive(int(pid_file.read_text()))

    def _pid_file(self, service: Service) -> Path:
        return self.run_dir / f"{service.name}.pid"

    def _spawn(self, service: Service) -> None:
        log_path = self.log_dir / f"{service.name}.log"
        env = {**os.environ, **self.env(), **service.env}
        with log_path.open("ab") as log_file:
            # Own process group: stopping the group also stops the children a server forks.
            process = subprocess.Popen(
                service.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=self.settings.state_dir,
            )
        self._pid_file(service).write_text(str(process.pid))
        log.info("started %s (pid %s), log %s", service.name, process.pid, log_path)

    def _wait_healthy(self, service: Service) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        pid_file = self._pid_file(service)
        while time.monotonic() < deadline:
            if self._is_healthy(service):
                return
            if pid_file.exists() and not _alive(int(pid_file.read_text())):
                break
            time.sleep(0.25)
        log_path = self.log_dir / f"{service.name}.log"
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise StackError(f"{service.name} did not become healthy ({service.health_url}); log tail:\n{tail}")


class LocalStack(ProcessGroup):
    def __init__(self, settings: VelocastSettings) -> None:
        super().__init__(settings)
        self.gcs_root = settings.state_dir / "gcs"

    # --- service definitions -----------------------------------------------------------
    def services(self) -> list[Service]:
        s = self.settings
        host = s.local_host
        bq_python = s.bqemulator_bin.parent / "python"
        replay_args = [sys.executable, "-m", "velocast.local.replay", "--host", host]
        replay_args += ["--port", str(s.replay_port)]
        if s.replay_shift_weeks is not None:
            replay_args += ["--shift-weeks", str(s.replay_shift_weeks)]
        discord_args = [sys.executable, "-m", "velocast.local.discord", "--host", host]
        discord_args += ["--port", str(s.discord_port)]
        return [
            Service(
                name="gcs",
                argv=[
                    venv_executable("gcp-storage-emulator"),
                    "start",
                    "--host",
                    host,
                    "--port",
                    str(s.gcs_emulator_port),
                    "--default-bucket",
                    s.bucket,
                    "-q",
                ],
                health_url=f"http://{host}:{s.gcs_emulator_port}/storage/v1/b/{s.bucket}",
                env={"STORAGE_BASE": str(self.gcs_root)},
            ),
            Service(
                name="bigquery",
                argv=[
                    str(bq_python),
                    str(LAUNCHER),
                    "start",
                    "--rest-host",
                    host,
                    "--rest-port",
                    str(s.bigquery_emulator_port),
                    "--grpc-host",
                    host,
                    "--grpc-port",
                    str(s.bigquery_emulator_grpc_port),
                    "--project",
                    s.gcp_project,
                    "--log-level",
                    "warning",
                ],
                health_url=f"http://{host}:{s.bigquery_emulator_port}/bigquery/v2/projects/{s.gcp_project}/datasets",
                env={"BQEMU_GCS_LOCAL_ROOT": str(self.gcs_root / ".cloudstorage")},
            ),
            Service(
                name="replay",
                argv=replay_args,
                health_url=f"http://{host}:{s.replay_port}/health",
            ),
            Service(
                name="discord",
                argv=discord_args,
                health_url=f"http://{host}:{s.discord_port}/health",
            ),
        ]

    def prepare(self) -> None:
        if not self.settings.bqemulator_bin.exists():
            raise StackError(
                f"BigQuery emulator not installed at {self.settings.bqemulator_bin}; run `make venv`"
            )
        self.gcs_root.mkdir(parents=True, exist_ok=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of this process still "exists"; reap it if so.
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    return True


def _stop_group(pid: int, timeout: float = 10.0) -> bool:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


@contextlib.contextmanager
def running(group: ProcessGroup) -> Iterator[ProcessGroup]:
    """Run a group of services for the duration of a block; stop only what this block started."""
    started = group.up()
    try:
        yield group
    finally:
        if started:
            group.down(started)


@contextlib.contextmanager
def running_stack(settings: VelocastSettings) -> Iterator[LocalStack]:
    """Start the local stack for the duration of a block; stop only what this block started."""
    stack = LocalStack(settings)
    with running(stack):
        yield stack
