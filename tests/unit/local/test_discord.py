"""The Discord stand-in: receives webhook posts like Discord, fails or stalls on demand, tells what it got."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from velocast.local.airflow_env import airflow_environment
from velocast.local.discord import LOCAL_WEBHOOK_ENDPOINT, WebhookServer
from velocast.local.stack import LocalStack
from velocast.settings import VelocastSettings

WEBHOOK = "/api/webhooks/123/a-token_1"


@pytest.fixture
def standin() -> Iterator[str]:
    """The stand-in served from a thread on a free port; its base URL."""
    server = WebhookServer(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def messages(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/__admin/messages", timeout=5).json()
    return body


def test_a_webhook_post_is_answered_204_and_kept(standin: str) -> None:
    payload = {"content": "hello", "username": "velocast", "tts": False}
    response = httpx.post(f"{standin}{WEBHOOK}", json=payload, timeout=5)
    assert response.status_code == 204
    assert response.content == b""
    received = messages(standin)
    assert received["refused"] == 0
    [message] = received["messages"]
    assert message["webhook_id"] == "123"
    assert message["token"] == "a-token_1"
    assert message["payload"] == payload
    assert message["received_at"]


def test_messages_are_kept_in_order_and_cleared(standin: str) -> None:
    for text in ("one", "two"):
        httpx.post(f"{standin}{WEBHOOK}", json={"content": text}, timeout=5).raise_for_status()
    assert [m["payload"]["content"] for m in messages(standin)["messages"]] == ["one", "two"]
    assert httpx.delete(f"{standin}/__admin/messages", timeout=5).status_code == 204
    assert messages(standin) == {"messages": [], "refused": 0}


def test_fail_mode_refuses_posts_with_the_status_until_reset(standin: str) -> None:
    mode = httpx.post(f"{standin}/__admin/mode", json={"status": 500}, timeout=5)
    assert mode.json() == {"status": 500, "delay_seconds": 0.0}
    response = httpx.post(f"{standin}{WEBHOOK}", json={"content": "lost"}, timeout=5)
    assert response.status_code == 500
    assert set(response.json()) == {"message", "code"}  # Discord's error shape
    assert messages(standin) == {"messages": [], "refused": 1}

    assert httpx.delete(f"{standin}/__admin/mode", timeout=5).status_code == 204
    assert httpx.get(f"{standin}/__admin/mode", timeout=5).json() == {"status": 204, "delay_seconds": 0.0}
    assert httpx.post(f"{standin}{WEBHOOK}", json={"content": "back"}, timeout=5).status_code == 204


def test_delay_mode_answers_late_and_a_short_timeout_gives_up(standin: str) -> None:
    httpx.post(f"{standin}/__admin/mode", json={"delay_seconds": 0.6}, timeout=5).raise_for_status()
    started = time.monotonic()
    assert httpx.post(f"{standin}{WEBHOOK}", json={"content": "late"}, timeout=5).status_code == 204
    assert time.monotonic() - started >= 0.6

    httpx.post(f"{standin}/__admin/mode", json={"delay_seconds": 30}, timeout=5).raise_for_status()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{standin}{WEBHOOK}", json={"content": "too late"}, timeout=0.3)
    assert time.monotonic() - started < 5
    # The admin endpoints still answer while a post is held.
    assert [m["payload"]["content"] for m in messages(standin)["messages"]] == ["late"]


def test_delay_and_status_combine(standin: str) -> None:
    httpx.post(f"{standin}/__admin/mode", json={"status": 503}, timeout=5).raise_for_status()
    mode = httpx.post(f"{standin}/__admin/mode", json={"delay_seconds": 0.2}, timeout=5).json()
    assert mode == {"status": 503, "delay_seconds": 0.2}
    assert httpx.post(f"{standin}{WEBHOOK}", json={"content": "x"}, timeout=5).status_code == 503


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"not json", 50109), (b"{}", 50006), (json.dumps({"content": "x" * 2001}).encode(), 50006)],
)
def test_payloads_discord_refuses_are_400(standin: str, body: bytes, code: int) -> None:
    response = httpx.post(
        f"{standin}{WEBHOOK}", content=body, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert messages(standin)["messages"] == []


def test_embeds_alone_are_a_message(standin: str) -> None:
    response = httpx.post(f"{standin}{WEBHOOK}", json={"embeds": [{"title": "t"}]}, timeout=5)
    assert response.status_code == 204


@pytest.mark.parametrize("path", ["/api/webhooks/abc/token", "/api/webhooks/1", "/elsewhere"])
def test_other_paths_are_404(standin: str, path: str) -> None:
    assert httpx.post(f"{standin}{path}", json={"content": "x"}, timeout=5).status_code == 404


@pytest.mark.parametrize(
    "mode",
    [{"status": 42}, {"status": "500"}, {"delay_seconds": -1}, {"delay_seconds": 10_000}, {"colour": 1}],
)
def test_an_invalid_mode_is_422_and_changes_nothing(standin: str, mode: dict[str, object]) -> None:
    assert httpx.post(f"{standin}/__admin/mode", json=mode, timeout=5).status_code == 422
    assert httpx.get(f"{standin}/__admin/mode", timeout=5).json() == {"status": 204, "delay_seconds": 0.0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_module_runs_as_a_server_process() -> None:
    """``python -m velocast.local.discord`` is what the local stack starts."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "velocast.local.discord", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else b""
            assert time.monotonic() < deadline, "the stand-in did not answer"
            time.sleep(0.1)
        assert httpx.post(f"{url}{WEBHOOK}", json={"content": "hi"}, timeout=5).status_code == 204
        assert [m["payload"]["content"] for m in messages(url)["messages"]] == ["hi"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_stack_starts_it_and_airflow_is_pointed_at_it(settings: VelocastSettings) -> None:
    [service] = [s for s in LocalStack(settings).services() if s.name == "discord"]
    assert service.argv[1:3] == ["-m", "velocast.local.discord"]
    assert str(settings.discord_port) in service.argv
    assert service.health_url == f"http://{settings.local_host}:{settings.discord_port}/health"

    env = airflow_environment(settings)
    connection = json.loads(env[f"AIRFLOW_CONN_{settings.discord_conn_id.upper()}"])
    assert connection["host"] == f"http://{settings.local_host}:{settings.discord_port}/api/"
    assert connection["extra"]["webhook_endpoint"] == LOCAL_WEBHOOK_ENDPOINT
