"""``SidecarHook`` against a real HTTP server on 127.0.0.1: retries, timeouts, errors, batches, the key.

The server is a ``ThreadingHTTPServer`` run by the test: each route answers from a script (a list
of replies, the last one repeated) or from a function of the request, and records what it got.
The hook finds it through an ``AIRFLOW_CONN_*`` variable, as in a task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from velocast.errors import ConflictError, NotFoundError, RequestError, UnavailableError, VelocastError
from velocast.local.airflow_env import airflow_environment, local_sidecar_admin_key, sidecar_connection_json
from velocast.ml.training_request import TrainingRequest
from velocast.orchestration.sidecar import NO_CHAMPION_MESSAGE, SidecarHook
from velocast.orchestration.sidecar_errors import (
    ChampionChangedError,
    SidecarAnswerError,
    SidecarConflictError,
    SidecarNotFoundError,
    SidecarNotReadyError,
    SidecarRequestError,
    SidecarUnavailableError,
)
from velocast.settings import VelocastSettings

API_KEY = "hook-test-key-3c9e1f7a2b5d4e60"
LOADED_AT = "2024-03-01T00:00:00Z"


def champion(run_id: str = "run-a") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "model_type": "hgb",
        "model_uri": f"gs://bucket/{run_id}.joblib",
        "metrics": {"test_baseline": {"r2": 0.8}},
        "is_champion": True,
        "loaded_at": LOADED_AT,
        "env": "dev",
    }


READY = {"status": "ready", "env": "dev", "champions": {"hgb": "run-a"}, "errors": {}}


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[Received], Reply]


class FakeSidecar:
    """Scripted routes on a real socket; ``received`` lists every request in order."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.routes: dict[tuple[str, str], Responder] = {}
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def script(self, method: str, path: str, *replies: Reply) -> None:
        queue = list(replies)

        def respond(_: Received) -> Reply:
            with self._lock:
                return queue.pop(0) if len(queue) > 1 else queue[0]

        self.routes[(method, path)] = respond

    def route(self, method: str, path: str, responder: Responder) -> None:
        self.routes[(method, path)] = responder

    def calls(self, method: str, path: str) -> list[Received]:
        return [r for r in self.received if (r.method, r.path) == (method, path)]

    def start(self, port: int = 0) -> int:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(self.command, self.path, dict(self.headers), self.rfile.read(length))
                with fake._lock:
                    fake.received.append(received)
                responder = fake.routes.get((self.command, self.path))
                reply = responder(received) if responder else Reply(404, {"detail": "Not Found"})
                time.sleep(reply.delay)
                payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out
                    self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., SidecarHook]:
    """A hook on a connection of its own to ``port`` (fast backoff unless told otherwise)."""

    def build(port: int, *, password: str | None = API_KEY, **overrides: Any) -> SidecarHook:
        conn_id = f"sidecar_test_{uuid.uuid4().hex[:8]}"
        connection: dict[str, Any] = {
            "conn_type": "http",
            "host": "127.0.0.1",
            "schema": "http",
            "port": port,
        }
        if password is not None:
            connection["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
        knobs: dict[str, Any] = {
            "max_attempts": 4,
            "backoff_seconds": 0.01,
            "max_backoff_seconds": 2.0,
            "timeout_seconds": 5.0,
        }
        return SidecarHook(conn_id, **(knobs | overrides))

    return build


@pytest.fixture
def sidecar() -> Iterator[FakeSidecar]:
    fake = FakeSidecar()
    fake.start()
    yield fake
    fake.stop()


def port_of(fake: FakeSidecar) -> int:
    assert fake.server is not None
    return int(fake.server.server_address[1])


# --- the key ------------------------------------------------------------------------------------


def test_the_key_is_sent_as_x_api_key(sidecar: FakeSidecar, connect: Callable[..., SidecarHook]) -> None:
    sidecar.script("GET", "/ready", Reply(body=READY))
    readiness = connect(port_of(sidecar)).ready()
    assert readiness.ready and readiness.champions == {"hgb": "run-a"}
    (call,) = sidecar.received
    assert call.headers["X-API-Key"] == API_KEY
    assert "Authorization" not in call.headers


def test_the_key_never_reaches_the_logs(
    sidecar: FakeSidecar,
    connect: Callable[..., SidecarHook],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sidecar.script(
        "GET", "/model_summary", Reply(503, {"detail": "registry unavailable"}), Reply(body=_summary())
    )
    sidecar.script("POST", "/train", Reply(401, {"detail": "invalid API key"}))
    with caplog.at_level(logging.DEBUG):
        hook = connect(port_of(sidecar))
        hook.model_summary()
        with pytest.raises(SidecarRequestError) as raised:
            hook.train({"model_type": "hgb"})
        with pytest.raises(SidecarUnavailableError):
            connect(free_port(), max_attempts=2).ready()
    # Airflow's loggers write through structlog to the process's output; the others reach caplog.
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "sidecar call failed (attempt 1 of 4), retrying" in logged  # the hook's logs were captured
    assert "GET /model_summary" in caplog.text  # so were urllib3's
    assert API_KEY not in logged
    assert API_KEY not in str(raised.value) and API_KEY not in repr(hook.get_conn().auth)
    assert "password of the sidecar's Airflow connection" in str(raised.value)


def test_without_a_password_no_key_is_sent(sidecar: FakeSidecar, connect: Callable[..., SidecarHook]) -> None:
    sidecar.script("GET", "/ready", Reply(body=READY))
    connect(port_of(sidecar), password=None).ready()
    assert "X-API-Key" not in sidecar.received[0].headers


# --- retries ------------------------------------------------------------------------------------


def test_connection_refused_is_retried_until_the_sidecar_is_up(connect: Callable[..., SidecarHook]) -> None:
    port = free_port()
    late = FakeSidecar()
    late.script("GET", "/ready", Reply(body=READY))
    timer = threading.Timer(0.5, late.start, kwargs={"port": port})
    timer.start()
    try:
        hook = connect(port, max_attempts=8, backoff_seconds=0.1, max_backoff_seconds=0.4)
        assert hook.ready().ready
    finally:
        timer.join()
        late.stop()


def test_connection_refused_for_good_is_unavailable_after_every_attempt(
    connect: Callable[..., SidecarHook],
) -> None:
    port = free_port()
    with pytest.raises(
        SidecarUnavailableError, match=f"cannot reach the serving sidecar at http://127.0.0.1:{port}"
    ) as raised:
        connect(port, max_attempts=3).model_summary()
    assert isinstance(raised.value, UnavailableError)
    assert raised.value.__notes__ == ["the hook gave up after 3 attempts"]


def test_429_waits_for_retry_after_then_succeeds(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    sidecar.script(
        "GET",
        "/model_summary",
        Reply(429, {"detail": "slow down"}, {"Retry-After": "1"}),
        Reply(body=_summary()),
    )
    started = time.monotonic()
    summary = connect(port_of(sidecar), backoff_seconds=0.01).model_summary()
    assert time.monotonic() - started >= 1.0  # Retry-After, not the 10 ms backoff
    assert summary.generation == 3
    assert len(sidecar.received) == 2


def test_a_retry_after_longer_than_the_backoff_cap_is_left_to_the_task(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    sidecar.script("GET", "/model_summary", Reply(503, {"detail": "maintenance"}, {"Retry-After": "120"}))
    started = time.monotonic()
    with pytest.raises(SidecarUnavailableError, match="maintenance") as raised:
        connect(port_of(sidecar), max_backoff_seconds=2.0).model_summary()
    assert time.monotonic() - started < 1.0
    assert raised.value.retry_after_seconds == 120
    assert len(sidecar.received) == 1


def test_5xx_are_retried_then_succeed(sidecar: FakeSidecar, connect: Callable[..., SidecarHook]) -> None:
    sidecar.script(
        "GET",
        "/model_summary",
        Reply(503, {"detail": "registry unavailable: OSError"}),
        Reply(502, None),
        Reply(body=_summary()),
    )
    assert connect(port_of(sidecar)).model_summary().env == "dev"
    assert len(sidecar.received) == 3


def test_5xx_for_good_is_unavailable_with_the_sidecars_detail(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    sidecar.script("GET", "/model_summary", Reply(500, {"detail": "internal error"}))
    with pytest.raises(
        SidecarUnavailableError, match="answered 500 to GET /model_summary: internal error"
    ) as raised:
        connect(port_of(sidecar), max_attempts=3).model_summary()
    assert raised.value.status == 500 and raised.value.detail == "internal error"
    assert len(sidecar.received) == 3


def test_train_is_repeated_only_when_the_sidecar_did_not_act(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    accepted = {
        "job_id": "a" * 32,
        "status": "queued",
        "status_url": "/train/" + "a" * 32,
        "submitted_at": LOADED_AT,
        "request": {"model_type": "hgb"},
    }
    sidecar.script("POST", "/train", Reply(503, {"detail": "dependency unavailable"}), Reply(202, accepted))
    hook = connect(port_of(sidecar))
    assert hook.train({"model_type": "hgb"}).job_id == "a" * 32
    assert len(sidecar.calls("POST", "/train")) == 2
    # A 500 may have started the job: not repeated (the task's retry policy decides).
    sidecar.script("POST", "/train", Reply(500, {"detail": "internal error"}), Reply(202, accepted))
    with pytest.raises(SidecarUnavailableError):
        hook.train({"model_type": "hgb"})
    assert len(sidecar.calls("POST", "/train")) == 3


# --- timeouts -----------------------------------------------------------------------------------


def test_a_slow_answer_times_out_and_is_retried(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    sidecar.script("GET", "/ready", Reply(body=READY, delay=1.0))
    started = time.monotonic()
    with pytest.raises(SidecarUnavailableError, match="did not answer to GET /ready") as raised:
        connect(port_of(sidecar), timeout_seconds=0.2, max_attempts=2).ready()
    assert time.monotonic() - started < 1.5
    assert isinstance(raised.value, UnavailableError)
    assert len(sidecar.received) == 2


def test_a_slow_train_is_not_repeated(sidecar: FakeSidecar, connect: Callable[..., SidecarHook]) -> None:
    sidecar.script("POST", "/train", Reply(202, {}, delay=1.0))
    with pytest.raises(SidecarUnavailableError, match="did not answer"):
        connect(port_of(sidecar), timeout_seconds=0.2).train({"model_type": "hgb"})
    assert len(sidecar.received) == 1


# --- 4xx ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "family", "message"),
    [
        (
            404,
            {"detail": "no entry run-x in dev"},
            SidecarNotFoundError,
            NotFoundError,
            "no entry run-x in dev",
        ),
        (
            409,
            {"detail": "a training job is running"},
            SidecarConflictError,
            ConflictError,
            "a training job is running",
        ),
        (
            422,
            {"detail": [{"type": "missing", "loc": ["body", "run_id"], "msg": "Field required"}]},
            SidecarRequestError,
            RequestError,
            "body.run_id: Field required",
        ),
        (403, {"detail": "this route needs the admin role"}, SidecarRequestError, RequestError, "admin role"),
        (
            413,
            {"detail": "request body larger than 1024 bytes"},
            SidecarRequestError,
            RequestError,
            "larger than",
        ),
    ],
)
def test_4xx_raise_at_once_with_the_detail_and_family(
    sidecar: FakeSidecar,
    connect: Callable[..., SidecarHook],
    status: int,
    body: dict[str, Any],
    kind: type[Exception],
    family: type[Exception],
    message: str,
) -> None:
    sidecar.script(
        "POST", "/promote_champion", Reply(status, body, {"Retry-After": "60"} if status == 409 else {})
    )
    with pytest.raises(kind, match=message) as raised:
        connect(port_of(sidecar)).promote("hgb", "run-x")
    assert isinstance(raised.value, family)
    assert not isinstance(raised.value, UnavailableError)
    assert f"answered {status} to POST /promote_champion" in str(raised.value)
    assert len(sidecar.received) == 1
    if status == 409:
        assert raised.value.retry_after_seconds == 60  # type: ignore[attr-defined]


def test_an_answer_of_another_shape_is_an_answer_error(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    sidecar.script("GET", "/model_summary", Reply(body={"env": "dev"}))
    with pytest.raises(SidecarAnswerError, match="not a ModelSummary") as raised:
        connect(port_of(sidecar)).model_summary()
    assert isinstance(raised.value, VelocastError)
    assert not isinstance(raised.value, RequestError | UnavailableError)


# --- no champion --------------------------------------------------------------------------------


def test_not_ready_is_an_answer_and_require_champion_says_what_to_do(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    reason = "no model in the dev registry (registry/summary.json)"
    body = {"status": "not_ready", "env": "dev", "champions": {}, "errors": {}, "reason": reason}
    sidecar.script("GET", "/ready", Reply(503, body))
    hook = connect(port_of(sidecar))
    readiness = hook.ready()
    assert not readiness.ready and readiness.reason == reason
    assert len(sidecar.received) == 1  # a not-ready answer is not retried
    with pytest.raises(SidecarNotReadyError) as raised:
        hook.require_champion()
    assert str(raised.value) == f"{NO_CHAMPION_MESSAGE} (the serving sidecar says: {reason})"
    assert isinstance(raised.value, UnavailableError)


def test_predict_without_champion_says_no_champion(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    sidecar.script(
        "POST", "/predict", Reply(503, {"detail": "no champion is loaded: no model in the dev registry"})
    )
    with pytest.raises(SidecarNotReadyError, match=f"^{NO_CHAMPION_MESSAGE}"):
        connect(port_of(sidecar), max_attempts=2).predict(_records(3))


# --- predictions in batches ----------------------------------------------------------------------


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {"counter_id": f"C{i:03d}", "counted_at": f"2024-03-01T{i % 24:02d}:00:00+00:00"}
        for i in range(count)
    ]


def echo_predictions(run_ids: Iterator[str] | None = None, max_body_bytes: int | None = None) -> Responder:
    """Predicts the record's position in the counter id, so that order can be checked."""

    def respond(received: Received) -> Reply:
        if max_body_bytes is not None and len(received.body) > max_body_bytes:
            return Reply(413, {"detail": f"request body larger than {max_body_bytes} bytes"})
        records = received.json()["records"]
        return Reply(
            body={
                "predictions": [
                    {
                        "counter_id": r["counter_id"],
                        "counted_at": r["counted_at"],
                        "predicted_count": float(r["counter_id"][1:]),
                    }
                    for r in records
                ],
                "champion": champion(next(run_ids) if run_ids else "run-a"),
                "unseen_counters": [records[0]["counter_id"]],
                "unseen_counter_rows": 1,
                "school_holiday_unknown_rows": 0,
            }
        )

    return respond


@pytest.mark.parametrize(("count", "limit", "requests"), [(20, 10, 2), (21, 10, 3), (10, 10, 1), (25, 7, 4)])
def test_predict_sends_ceil_n_over_l_requests_and_keeps_the_order(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook], count: int, limit: int, requests: int
) -> None:
    sidecar.route("POST", "/predict", echo_predictions())
    result = connect(port_of(sidecar), max_records=limit).predict(_records(count), model_type="hgb")
    calls = sidecar.calls("POST", "/predict")
    assert len(calls) == requests == result.batches
    assert all(len(call.json()["records"]) <= limit and call.json()["model_type"] == "hgb" for call in calls)
    assert [p.counter_id for p in result.predictions] == [r["counter_id"] for r in _records(count)]
    assert [p.predicted_count for p in result.predictions] == [float(i) for i in range(count)]
    assert result.champion.run_id == "run-a"
    assert result.unseen_counters == [f"C{i * limit:03d}" for i in range(requests)]
    assert result.unseen_counter_rows == requests


def test_predict_respects_the_body_limit(sidecar: FakeSidecar, connect: Callable[..., SidecarHook]) -> None:
    limit = 2048
    sidecar.route("POST", "/predict", echo_predictions(max_body_bytes=limit))
    records = _records(100)
    result = connect(port_of(sidecar), max_records=10_000, max_body_bytes=limit).predict(records)
    calls = sidecar.calls("POST", "/predict")
    assert all(len(call.body) <= limit for call in calls)
    assert all(call.headers["Content-Length"] == str(len(call.body)) for call in calls)
    # Records of one length: as many per body as fit with their commas, the body at most at the limit.
    per_body = (limit - len('{"records":[]}') + 1) // (len(json.dumps(records[0], separators=(",", ":"))) + 1)
    assert len(calls) == -(-len(records) // per_body)
    assert len(result.predictions) == 100


def test_a_champion_change_between_batches_fails_the_prediction(
    sidecar: FakeSidecar, connect: Callable[..., SidecarHook]
) -> None:
    sidecar.route("POST", "/predict", echo_predictions(run_ids=iter(["run-a", "run-a", "run-b"])))
    with pytest.raises(ChampionChangedError, match="from run run-a to run-b") as raised:
        connect(port_of(sidecar), max_records=5).predict(_records(15))
    assert isinstance(raised.value, UnavailableError)


# --- the other calls ---------------------------------------------------------------------------


def test_jobs_evaluation_and_promotion(sidecar: FakeSidecar, connect: Callable[..., SidecarHook]) -> None:
    job_id = "b" * 32
    job = {
        "job_id": job_id,
        "status": "succeeded",
        "step": "done",
        "progress": 1.0,
        "submitted_at": LOADED_AT,
        "started_at": LOADED_AT,
        "finished_at": LOADED_AT,
        "request": {},
        "run_id": "run-c",
        "deployment_decision": {"decision": "DEPLOY"},
    }
    accepted = {
        "job_id": job_id,
        "status": "queued",
        "status_url": f"/train/{job_id}",
        "submitted_at": LOADED_AT,
    }
    evaluation = {
        "env": "dev",
        "model_type": "hgb",
        "run_id": "run-a",
        "model_uri": "gs://b/a",
        "is_champion": True,
        "data_source": "gs://b/data",
        "metrics": {"test_baseline": {"r2": 0.8}},
    }
    promotion = {
        "status": "promoted",
        "message": "run-c is the dev champion",
        "env": "dev",
        "champion": {"run_id": "run-c"},
        "previous_champion": {"run_id": "run-a"},
        "serving": {"model_type": "hgb", "run_id": "run-c", "error": None},
    }
    sidecar.script("POST", "/train", Reply(202, accepted))
    sidecar.script("GET", f"/train/{job_id}", Reply(body=job))
    sidecar.script("DELETE", f"/train/{job_id}", Reply(body=job | {"status": "cancelled"}))
    sidecar.script("POST", "/evaluate", Reply(body=evaluation))
    sidecar.script("POST", "/promote_champion", Reply(body=promotion))
    hook = connect(port_of(sidecar))

    assert hook.train(TrainingRequest(model_type="hgb", test_mode=True)).job_id == job_id
    # Only the fields set are sent: the sidecar's own defaults (its environment) apply.
    assert sidecar.calls("POST", "/train")[0].json() == {"model_type": "hgb", "test_mode": True}
    status = hook.job_status(job_id)
    assert (
        status.finished and status.run_id == "run-c" and status.deployment_decision == {"decision": "DEPLOY"}
    )
    assert hook.cancel_job(job_id).status == "cancelled"
    assert hook.evaluate({"run_id": "run-a"}).metrics["test_baseline"]["r2"] == 0.8
    assert sidecar.calls("POST", "/evaluate")[0].json() == {"run_id": "run-a"}
    promoted = hook.promote("hgb", "run-c")
    assert (
        promoted.status == "promoted" and promoted.serving is not None and promoted.serving.run_id == "run-c"
    )
    assert sidecar.calls("POST", "/promote_champion")[0].json() == {
        "model_type": "hgb",
        "run_id": "run-c",
        "env": None,
    }


def test_an_unknown_job_is_not_found(sidecar: FakeSidecar, connect: Callable[..., SidecarHook]) -> None:
    with pytest.raises(SidecarNotFoundError, match="answered 404 to GET /train/nope%2F1"):
        connect(port_of(sidecar)).job_status("nope/1")


def _summary() -> dict[str, Any]:
    return {
        "env": "dev",
        "registry": "gs://bucket/registry/summary.json",
        "generation": 3,
        "entries": [{"run_id": "run-a"}],
        "loaded": {"hgb": champion()},
        "default_model_type": "hgb",
        "errors": {},
        "checked_at": LOADED_AT,
    }


# --- the local stack's connection ------------------------------------------------------------------


def test_the_local_stack_registers_the_connection_with_a_generated_admin_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = VelocastSettings(state_dir=tmp_path, serving_port=8123, serving_admin_api_key=None)
    env = airflow_environment(settings)
    variable = f"AIRFLOW_CONN_{settings.sidecar_conn_id.upper()}"
    assert variable == "AIRFLOW_CONN_VELOCAST_SIDECAR"
    key = local_sidecar_admin_key(settings)
    assert len(key) >= 32 and local_sidecar_admin_key(settings) == key  # generated once, then kept
    key_file = tmp_path / "serving" / "admin_api_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv(variable, env[variable])
    hook = SidecarHook(settings=settings)
    assert hook.url_from_endpoint("/ready") == "http://127.0.0.1:8123/ready"
    assert hook.get_conn().auth is not None
    assert hook.get_connection(hook.http_conn_id).password == key
    # A configured key wins over the generated one.
    configured = settings.model_copy(update={"serving_admin_api_key": SecretStr("configured-key-0123456789")})
    assert json.loads(sidecar_connection_json(configured))["password"] == "configured-key-0123456789"
