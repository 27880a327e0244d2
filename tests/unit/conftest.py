"""Fixtures of the unit tests: a real replay server (uvicorn process) on a free local port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from velocast.localstack.replay import default_data_path


@dataclass(frozen=True)
class ReplayServer:
    url: str
    shift_weeks: int

    def admin(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        response = httpx.request(method, f"{self.url}{path}", json=json, timeout=10)
        response.raise_for_status()
        return response

    def fault(self, **body: object) -> None:
        self.admin("POST", "/__admin/faults", json=body)

    def stats(self) -> dict[str, int]:
        requests: dict[str, int] = self.admin("GET", "/__admin/stats").json()["requests"]
        return requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def replay_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("replay") / "replay.log"
    argv = [sys.executable, "-m", "velocast.localstack.replay", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen([*argv, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"replay server exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                health = httpx.get(f"{url}/health", timeout=1).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"replay server did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield ReplayServer(url, health["shift_weeks"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def replay(replay_server_session: ReplayServer) -> Iterator[ReplayServer]:
    """The shared server with no fault active and zeroed stats."""
    replay_server_session.admin("DELETE", "/__admin/faults")
    replay_server_session.admin("DELETE", "/__admin/stats")
    yield replay_server_session
    replay_server_session.admin("DELETE", "/__admin/faults")


@pytest.fixture(scope="session")
def counts_frame(replay_server_session: ReplayServer) -> pd.DataFrame:
    """The packaged parquet with dates shifted like the server's, to compute expected answers."""
    frame = pd.read_parquet(Path(default_data_path()), columns=["id_compteur", "date", "sum_counts"])
    frame["date"] = frame["date"] + pd.Timedelta(weeks=replay_server_session.shift_weeks)
    return frame


@pytest.fixture(scope="session")
def base_day(replay_server_session: ReplayServer) -> datetime:
    """Midnight UTC, two weeks into the replayed data: a safe place for test windows."""
    first = datetime.fromisoformat(replay_server_session.admin("GET", "/health").json()["first_date"])
    return datetime(first.year, first.month, first.day, tzinfo=UTC) + timedelta(days=14)
