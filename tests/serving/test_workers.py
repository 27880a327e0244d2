"""Hot reload across two real uvicorn worker processes (the production command line).

The server runs as a subprocess with ``--workers 2`` and ``PROMETHEUS_MULTIPROC_DIR``, configured
by ``VELOCAST_*`` variables only. ``model_info`` then carries one series per live worker (``pid``),
which shows what *each* worker serves; the predictions show the same from the client's side.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from velocast.ml.registry import Registry

pytestmark = [pytest.mark.stack]

WORKERS = 2
RELOAD_SECONDS = 0.5


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def workers_setup(module_settings, artifacts, kit) -> Registry:
    registry: Registry = kit.champion_registry(module_settings, artifacts)
    return registry


@pytest.fixture(scope="module")
def server(workers_setup, module_settings, kit, tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("uvicorn")
    metrics_dir = folder / "prometheus"
    metrics_dir.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "VELOCAST_REGISTRY_OBJECT": module_settings.registry_object,
        "VELOCAST_SERVING_ENV": "dev",
        "VELOCAST_SERVING_ADMIN_API_KEY": kit.admin_key,
        "VELOCAST_SERVING_PREDICT_API_KEYS": json.dumps([kit.predict_key]),
        "VELOCAST_SERVING_RELOAD_INTERVAL_SECONDS": str(RELOAD_SECONDS),
        "VELOCAST_SERVING_WORKERS": str(WORKERS),
        "VELOCAST_SERVING_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = folder / "uvicorn.log"
    argv = [sys.executable, "-m", "uvicorn", "velocast_serving.main:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        yield server
    finally:
        # The group this test started (uvicorn's supervisor and its workers), and only it.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _served_by_worker(server: Server) -> dict[str, str]:
    """pid → run id with model_info 1 (from any worker: the directory is shared)."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    return {
        sample.labels["pid"]: sample.labels["run_id"]
        for family in text_string_to_metric_families(text)
        if family.name == "velocast_serving_model_info"
        for sample in family.samples
        if sample.value == 1
    }


def _wait_for_workers(server: Server, run_id: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert server.process.poll() is None, f"uvicorn exited:\n{server.log_tail()}"
        try:
            served = _served_by_worker(server)
        except httpx.HTTPError:
            served = {}
        if len(served) == WORKERS and set(served.values()) == {run_id}:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(
        f"workers did not all serve {run_id} within {timeout}s: {served}\n{server.log_tail()}"
    )


def _predict_many(server: Server, kit, counter: str, n: int) -> list[str]:
    """``n`` requests, each on a new connection so that the kernel spreads them over workers."""
    record = {"counter_id": counter, "counted_at": "2024-02-26T08:00:00Z"}
    runs = []
    for _ in range(n):
        with httpx.Client(timeout=10) as client:
            response = client.post(f"{server.url}/predict", json={"records": [record]}, headers=kit.predict)
        assert response.status_code == 200, response.text
        runs.append(response.json()["champion"]["run_id"])
    return runs


def test_every_worker_picks_up_a_promotion(server, workers_setup, artifacts, kit):
    _wait_for_workers(server, "run-a", timeout=60)
    counter = artifacts.counters[0]
    assert set(_predict_many(server, kit, counter, 20)) == {"run-a"}

    workers_setup.promote("dev", "hgb", "run-b")  # through the registry, as DAG 3 does
    elapsed = _wait_for_workers(server, "run-b", timeout=10)
    assert elapsed < 10
    assert set(_predict_many(server, kit, counter, 40)) == {"run-b"}

    # Whichever worker answers, /model_summary lists what every live worker serves (the board DAG 3
    # confirms promotions with), the same workers as the metrics.
    summary = httpx.get(f"{server.url}/model_summary", headers=kit.predict, timeout=5).json()
    board = {str(line["pid"]): line["served"]["hgb"] for line in summary["workers_serving"]}
    assert summary["workers"] == WORKERS and board == _served_by_worker(server)

    # Counters are summed over the workers' files: every predicted row is there.
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    predicted = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "velocast_serving_predictions"
        for sample in family.samples
        if sample.name == "velocast_serving_predictions_total"
    )
    assert predicted == 60
