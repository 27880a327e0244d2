"""``SidecarHook`` against the real sidecar app (``velocast_serving.main.create_app``) under uvicorn.

The app runs in a thread on 127.0.0.1 with an empty registry held in memory (no GCS needed): no
champion. It checks that the hook reads the sidecar's real answers (``/ready``, ``/model_summary``),
that the sidecar accepts its key, and that the sidecar's own errors (503 no champion, 401, 413)
come out as the hook's exceptions with the sidecar's message.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from pydantic import SecretStr
from velocast_serving.main import create_app
from velocast_serving.model_store import ModelStore

from velocast.errors import RequestError, UnavailableError
from velocast.ml.registry import Registry, empty_summary
from velocast.orchestration.sidecar import NO_CHAMPION_MESSAGE, SidecarHook
from velocast.orchestration.sidecar_errors import SidecarNotReadyError, SidecarRequestError
from velocast.settings import VelocastSettings

ADMIN_KEY = "app-test-admin-key-8d2f6b1c9e4a7305"
MAX_BODY_BYTES = 4096


class EmptyRegistry(Registry):
    """A registry with no entry, read from memory: the sidecar starts with no champion."""

    def generation(self) -> int:
        return 0

    def summary(self) -> dict[str, Any]:
        return empty_summary()


@pytest.fixture(scope="module")
def sidecar_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = VelocastSettings(
        serving_local_dev=True,
        serving_admin_api_key=SecretStr(ADMIN_KEY),
        serving_jobs_dir=Path(tmp_path_factory.mktemp("jobs")),
        serving_max_body_bytes=MAX_BODY_BYTES,
        serving_reload_interval_seconds=0.2,
    )
    client = storage.Client(project=settings.gcp_project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    store = ModelStore(settings, registry=EmptyRegistry(settings, client))
    app = create_app(settings, model_store=store)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the sidecar did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch, sidecar_port: int) -> Callable[..., SidecarHook]:
    def build(*, password: str = ADMIN_KEY, **overrides: Any) -> SidecarHook:
        conn_id = f"sidecar_app_{uuid.uuid4().hex[:8]}"
        connection = {"conn_type": "http", "host": "127.0.0.1", "port": sidecar_port, "password": password}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
        knobs: dict[str, Any] = {"max_attempts": 2, "backoff_seconds": 0.01, "timeout_seconds": 10.0}
        return SidecarHook(conn_id, **(knobs | overrides))

    return build


def test_ready_without_champion_reads_the_sidecars_reason(connect: Callable[..., SidecarHook]) -> None:
    hook = connect()
    readiness = hook.ready()
    assert not readiness.ready
    assert readiness.env == "dev" and readiness.champions == {}
    assert readiness.reason == "no_model"  # a code: the open route shows no internal detail
    with pytest.raises(SidecarNotReadyError) as raised:
        hook.require_champion()
    assert str(raised.value).startswith(NO_CHAMPION_MESSAGE)
    assert readiness.reason in str(raised.value)
    assert isinstance(raised.value, UnavailableError)


def test_model_summary_without_champion(connect: Callable[..., SidecarHook]) -> None:
    summary = connect().model_summary()
    assert summary.env == "dev"
    assert summary.generation == 0 and summary.entries == [] and summary.loaded == {}
    assert summary.champion is None
    assert summary.registry.startswith("gs://")


def test_predict_without_champion_says_so(connect: Callable[..., SidecarHook]) -> None:
    records = [{"counter_id": "C1", "counted_at": "2024-03-01T08:00:00"}]
    with pytest.raises(SidecarNotReadyError, match=f"^{NO_CHAMPION_MESSAGE}.*no champion is loaded"):
        connect().predict(records)


def test_the_sidecar_refuses_a_wrong_key_with_its_message(connect: Callable[..., SidecarHook]) -> None:
    with pytest.raises(
        SidecarRequestError, match="answered 401 to GET /model_summary: invalid API key"
    ) as raised:
        connect(password="not-the-key-0123456789").model_summary()
    assert isinstance(raised.value, RequestError)


def test_a_body_over_the_sidecars_limit_is_its_413(connect: Callable[..., SidecarHook]) -> None:
    """A hook configured with a larger limit than the sidecar's gets the sidecar's 413 and message."""
    records = [{"counter_id": f"C{i}", "counted_at": "2024-03-01T08:00:00"} for i in range(200)]
    with pytest.raises(SidecarRequestError, match=r"413 .*larger than 4096 bytes") as raised:
        connect(max_body_bytes=10 * MAX_BODY_BYTES).predict(records)
    assert raised.value.status == 413
