"""``velocast.local.serving``: how the sidecar process is started (no process is started here)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from velocast.local.airflow_env import local_sidecar_admin_key
from velocast.local.serving import ServingSidecar
from velocast.local.stack import StackError
from velocast.settings import VelocastSettings


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def local_settings(tmp_path: Path) -> VelocastSettings:
    return VelocastSettings(
        env="local",
        state_dir=tmp_path,
        serving_port=unused_port(),
        serving_admin_api_key=None,
        registry_object="tests/elsewhere/summary.json",
    )


def test_the_sidecar_runs_the_app_factory_under_uvicorn_on_the_settings_port(
    local_settings: VelocastSettings,
) -> None:
    [service] = ServingSidecar(local_settings).services()
    assert service.name == "serving"
    assert Path(service.argv[0]).name == "uvicorn"
    assert service.argv[1:3] == ["velocast_serving.main:create_app", "--factory"]
    port = str(local_settings.serving_port)
    assert service.argv[service.argv.index("--host") + 1] == "127.0.0.1"
    assert service.argv[service.argv.index("--port") + 1] == port
    assert service.health_url == f"http://127.0.0.1:{port}/health"


def test_a_second_sidecar_gets_its_own_name_for_its_pid_and_log_files(
    local_settings: VelocastSettings,
) -> None:
    [service] = ServingSidecar(local_settings, name="serving-other").services()
    assert service.name == "serving-other"


def test_the_sidecar_gets_the_stack_the_settings_and_the_connection_admin_key(
    local_settings: VelocastSettings,
) -> None:
    env = ServingSidecar(local_settings).env()
    # The key Airflow's velocast_sidecar connection sends (generated once per state directory).
    assert env["VELOCAST_SERVING_ADMIN_API_KEY"] == local_sidecar_admin_key(local_settings)
    assert env["STORAGE_EMULATOR_HOST"] == local_settings.storage_emulator_host
    assert env["VELOCAST_BUCKET"] == local_settings.bucket
    # Settings changed in code reach the process: it serves the registry these settings name.
    assert env["VELOCAST_REGISTRY_OBJECT"] == "tests/elsewhere/summary.json"
    assert env["VELOCAST_SERVING_PORT"] == str(local_settings.serving_port)
    assert env["VELOCAST_SERVING_ENV"] == local_settings.serving_env


def test_a_sidecar_that_does_not_answer_is_down_and_never_ready(local_settings: VelocastSettings) -> None:
    sidecar = ServingSidecar(local_settings)
    assert sidecar.status() == {"serving": False}
    assert sidecar.readiness() is None
    started = time.perf_counter()
    with pytest.raises(StackError, match="serves no champion after 1 s: no answer"):
        sidecar.wait_ready(timeout=0.6)
    assert time.perf_counter() - started < 5
