"""The serving sidecar as a process of the local stack: ``uvicorn velocast_serving.main:create_app``.

Started the way ``serving/Dockerfile`` starts it (the app factory under uvicorn), on
``settings.local_host:settings.serving_port`` with ``serving_workers`` workers (default one: the
local machine has few cores); several share a fresh ``PROMETHEUS_MULTIPROC_DIR`` under the state
directory, emptied at each start as the image's command does. Its environment is the stack's (emulator
hosts, bucket, project), every ``VELOCAST_*`` value of the settings it was built with (so a
``model_copy`` with another registry object or port reaches the process) and the admin key of
``local_sidecar_admin_key``: the key Airflow's ``velocast_sidecar`` connection carries as password.

What it serves is the registry's champion of ``settings.serving_env``; ``velocast.local.champion``
puts a real one there. ``velocast serving up``, the DAG tests and ``make demo`` use this module.
"""

from __future__ import annotations

import shutil
import time
from typing import Final

import httpx

from velocast.local.airflow_env import local_sidecar_admin_key
from velocast.local.stack import ProcessGroup, Service, StackError, stack_environment, venv_executable
from velocast.settings import VelocastSettings

SERVICE_NAME: Final = "serving"
READY_TIMEOUT_SECONDS: Final = 60.0


class ServingSidecar(ProcessGroup):
    """The sidecar process; ``name`` names its pid and log files (a second sidecar of the same state
    directory, on another port, needs another name)."""

    def __init__(self, settings: VelocastSettings, *, name: str = SERVICE_NAME) -> None:
        super().__init__(settings)
        self.name = name

    @property
    def url(self) -> str:
        return f"http://{self.settings.local_host}:{self.settings.serving_port}"

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {
            **stack_environment(s),
            **s.to_environment(),
            "VELOCAST_SERVING_ADMIN_API_KEY": local_sidecar_admin_key(s),
        }
        if s.serving_workers > 1:
            metrics_dir = s.state_dir / f"{self.name}-prometheus"
            shutil.rmtree(metrics_dir, ignore_errors=True)  # stale files would be summed in
            metrics_dir.mkdir(parents=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        return env

    def services(self) -> list[Service]:
        s = self.settings
        argv = [venv_executable("uvicorn"), "velocast_serving.main:create_app", "--factory"]
        argv += ["--host", s.local_host, "--port", str(s.serving_port), "--workers", str(s.serving_workers)]
        argv += ["--log-level", "warning"]
        return [Service(name=self.name, argv=argv, health_url=f"{self.url}/health")]

    def readiness(self) -> httpx.Response | None:
        """The sidecar's ``GET /ready`` answer (200: a champion is loaded, 503: not yet), None if it
        does not answer."""
        try:
            return httpx.get(f"{self.url}/ready", timeout=5.0)
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> dict[str, str]:
        """Wait until the sidecar serves a champion (it polls the registry every
        ``serving_reload_interval_seconds``); returns ``{model_type: run_id}`` of what it serves."""
        deadline = time.monotonic() + timeout
        answer = None
        while time.monotonic() < deadline:
            answer = self.readiness()
            if answer is not None and answer.status_code == 200:
                champions: dict[str, str] = answer.json().get("champions", {})
                return champions
            time.sleep(0.25)
        said = "no answer" if answer is None else f"{answer.status_code} {answer.text[:500]}"
        raise StackError(
            f"the serving sidecar at {self.url} serves no champion after {timeout:.0f} s: {said}"
        )


__all__ = ["READY_TIMEOUT_SECONDS", "SERVICE_NAME", "ServingSidecar"]
