"""Fixtures of the client and replay tests: the local stack's replay server, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from velocast.local.replay.data import default_data_path
from velocast.local.stack import LocalStack


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


@pytest.fixture(scope="session")
def replay_server_session(local_stack: LocalStack) -> ReplayServer:
    """The replay of the local stack, started by the same starter a user runs."""
    settings = local_stack.settings
    url = f"http://{settings.local_host}:{settings.replay_port}"
    health = httpx.get(f"{url}/health", timeout=10).json()
    return ReplayServer(url, health["shift_weeks"])


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
