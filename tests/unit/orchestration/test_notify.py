"""Discord notifications: the messages built from Airflow callback contexts, and posting them to the
local Discord stand-in (a real server process), including a failing and a stalling webhook."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from velocast.errors import NotFoundError, RequestError, UnavailableError
from velocast.local.stack import LocalStack, ProcessGroup, Service, running
from velocast.orchestration.notify import (
    DEFAULT_NEXT_STEP,
    MAX_ERROR_CHARS,
    DiscordFailureNotifier,
    DiscordSuccessNotifier,
    airflow_ui_url,
    failure_message,
    next_step,
    run_facts,
    success_message,
)
from velocast.settings import VelocastSettings

DAG_ID = "predict_bike_counts"
RUN_ID = "scheduled__2025-03-30T02:00:00+00:00"
UI = "http://airflow.example:8081"
NO_CHAMPION = "no champion yet: trigger monitor_and_train"


def task_context(error: BaseException | str | None, *, task_id: str = "forecast") -> dict[str, Any]:
    """What Airflow's task runner passes an ``on_failure_callback`` (the keys we read)."""
    ti = SimpleNamespace(dag_id=DAG_ID, task_id=task_id, run_id=RUN_ID, try_number=2, map_index=-1)
    return {
        "dag": SimpleNamespace(dag_id=DAG_ID),
        "dag_run": SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID),
        "ti": ti,
        "task_instance": ti,
        "run_id": RUN_ID,
        "exception": error,
    }


def dag_context(reason: str, *, task_id: str | None = "forecast") -> dict[str, Any]:
    """What the DAG processor passes a DAG callback: the reason and the task that caused it."""
    context: dict[str, Any] = {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": RUN_ID, "reason": reason}
    if task_id is not None:
        context["ti"] = SimpleNamespace(dag_id=DAG_ID, task_id=task_id, run_id=RUN_ID, try_number=1)
    return context


# --- messages, from context dicts ----------------------------------------------------------------


def test_a_task_failure_says_what_failed_why_where_and_what_to_do() -> None:
    message = failure_message(task_context(NotFoundError(NO_CHAMPION)), env="local", ui_url=UI)
    assert f"`{DAG_ID}` failed" in message
    assert "task `forecast` (try 2)" in message
    assert f"Run: `{RUN_ID}`" in message
    assert f"NotFoundError: {NO_CHAMPION}" in message
    assert "trigger the `monitor_and_train` DAG" in message
    link = f"{UI}/dags/{DAG_ID}/runs/scheduled__2025-03-30T02%3A00%3A00%2B00%3A00/tasks/forecast"
    assert f"<{link}>" in message
    assert "[local]" in message


def test_a_dag_failure_names_the_failed_task_and_the_reason() -> None:
    message = failure_message(dag_context("task_failure"), env="prod", ui_url=UI + "/")
    assert "task `forecast`" in message
    assert "(try" not in message
    assert "Reason: `task_failure`" in message
    assert f"Next step: {DEFAULT_NEXT_STEP}" in message
    assert f"<{UI}/dags/{DAG_ID}/runs/" in message


def test_a_dag_failure_without_a_task_links_the_run() -> None:
    message = failure_message(dag_context("timed_out", task_id=None), env="local", ui_url=UI)
    assert "at task" not in message
    assert message.rstrip(">").endswith("%2B00%3A00")


def test_a_long_error_is_trimmed_and_the_message_fits_discord() -> None:
    error = RuntimeError("x" * 5000 + "```")
    message = failure_message(task_context(error), env="local", ui_url=UI)
    assert len(message) <= 2000
    assert "x" * (MAX_ERROR_CHARS - 20) in message
    assert "x" * (MAX_ERROR_CHARS + 1) not in message
    assert message.count("```") == 2  # the code block stays closed


def test_a_string_error_is_kept_as_is() -> None:
    assert "Error: ```Task killed externally```" in failure_message(
        task_context("Task killed externally"), env="local", ui_url=UI
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NotFoundError(NO_CHAMPION), "monitor_and_train"),
        (RuntimeError("503: No Champion yet"), "monitor_and_train"),  # by text, whatever the type
        (RequestError("too many rejected rows: 12%"), "quarantine"),
        (UnavailableError("sidecar down"), "velocast stack status"),
        (RequestError("bad window"), "fix it"),
        (NotFoundError("no such run"), "fix it"),  # a family's subclass
        (ValueError("boom"), DEFAULT_NEXT_STEP),
        (None, DEFAULT_NEXT_STEP),
    ],
)
def test_next_step_by_text_then_family(error: BaseException | None, expected: str) -> None:
    assert expected in next_step(error)


def test_success_messages_link_the_run_or_the_task() -> None:
    dag_message = success_message(dag_context("success", task_id="score"), env="local", ui_url=UI)
    assert f"`{DAG_ID}` succeeded" in dag_message
    assert "at task" not in dag_message
    assert "/tasks/" not in dag_message
    task_message = success_message(task_context(None, task_id="score"), env="local", ui_url=UI)
    assert "at task `score`" in task_message
    assert task_message.endswith("/tasks/score>")


def test_facts_survive_a_minimal_context() -> None:
    facts = run_facts({})
    assert (facts.dag_id, facts.run_id, facts.task_id, facts.error) == (
        "unknown DAG",
        "unknown run",
        None,
        None,
    )
    assert "failed" in failure_message({}, env="local", ui_url=UI)


def test_the_ui_url_comes_from_the_settings(settings: VelocastSettings) -> None:
    assert airflow_ui_url(settings) == f"http://{settings.local_host}:{settings.airflow_api_port}"
    assert airflow_ui_url(settings.model_copy(update={"airflow_ui_url": UI})) == UI


def test_outside_local_the_ui_url_falls_back_to_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.velocast.example")
    assert airflow_ui_url(VelocastSettings(env="prod")) == "https://airflow.velocast.example"


# --- posting to the real stand-in ------------------------------------------------------------------


class DiscordStandIn(ProcessGroup):
    """Only the stand-in of the local stack, started as ``velocast stack up`` starts it."""

    def services(self) -> list[Service]:
        return [service for service in LocalStack(self.settings).services() if service.name == "discord"]


@pytest.fixture(scope="module")
def standin_url(settings: VelocastSettings) -> Iterator[str]:
    with running(DiscordStandIn(settings)):
        yield f"http://{settings.local_host}:{settings.discord_port}"


@pytest.fixture
def standin(standin_url: str) -> Iterator[str]:
    """The stand-in, normal mode and empty; left in normal mode."""
    httpx.delete(f"{standin_url}/__admin/mode", timeout=5).raise_for_status()
    httpx.delete(f"{standin_url}/__admin/messages", timeout=5).raise_for_status()
    yield standin_url
    httpx.delete(f"{standin_url}/__admin/mode", timeout=5).raise_for_status()


def received(url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = httpx.get(f"{url}/__admin/messages", timeout=5).json()["messages"]
    return messages


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """A real UDP listener as the statsd server; Airflow's stats client initialised to send to it."""
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(0.3)
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(server.getsockname()[1]))
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
        stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)

        def lines() -> list[str]:
            packets = []
            try:
                while True:
                    packets.append(server.recv(65535).decode())
            except TimeoutError:
                pass
            return "\n".join(packets).splitlines()

        try:
            yield lines
        finally:
            stats.initialize(factory=stats_utils.NoStatsLogger, export_legacy_names=False)


def with_real_dag(context: dict[str, Any]) -> dict[str, Any]:
    """The context around a real ``airflow.sdk.DAG``, as Airflow passes it (templates render with it)."""
    from airflow.sdk import DAG

    return {**context, "dag": DAG(DAG_ID, schedule=None)}


def test_a_failure_reaches_the_webhook_with_everything_a_reader_needs(
    standin: str, statsd: Callable[[], list[str]], settings: VelocastSettings
) -> None:
    DiscordFailureNotifier()(with_real_dag(task_context(NotFoundError(NO_CHAMPION))))

    [message] = received(standin)
    payload = message["payload"]
    assert payload["username"] == "velocast"
    content = payload["content"]
    for expected in (DAG_ID, RUN_ID, "task `forecast`", NO_CHAMPION, "`monitor_and_train` DAG"):
        assert expected in content, expected
    link = f"{settings.airflow_ui_url}/dags/{DAG_ID}/runs/"
    assert link in content and "/tasks/forecast>" in content
    assert "airflow.velocast.notify.discord.sent:1|c" in statsd()


def test_a_success_reaches_the_webhook(standin: str, statsd: Callable[[], list[str]]) -> None:
    DiscordSuccessNotifier()(with_real_dag(dag_context("success")))
    [message] = received(standin)
    assert f"`{DAG_ID}` succeeded" in message["payload"]["content"]
    assert "airflow.velocast.notify.discord.sent:1|c" in statsd()


def test_a_dag_callback_with_a_serialized_dag_still_posts(
    standin: str, statsd: Callable[[], list[str]]
) -> None:
    """DAG-level callbacks get the serialized DAG, which has no Jinja environment of its own."""
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(DAG(DAG_ID, schedule=None)))
    assert not hasattr(serialized, "get_template_env")
    DiscordSuccessNotifier()({**dag_context("success"), "dag": serialized})
    [message] = received(standin)
    assert f"`{DAG_ID}` succeeded" in message["payload"]["content"]
    assert "airflow.velocast.notify.discord.sent:1|c" in statsd()


def test_a_failing_webhook_is_logged_and_counted_never_raised(
    standin: str, statsd: Callable[[], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    httpx.post(f"{standin}/__admin/mode", json={"status": 500}, timeout=5).raise_for_status()
    started = time.monotonic()
    DiscordFailureNotifier()(with_real_dag(task_context(UnavailableError("sidecar down"))))
    assert time.monotonic() - started < 5
    assert received(standin) == []
    assert httpx.get(f"{standin}/__admin/messages", timeout=5).json()["refused"] == 1  # one attempt
    assert "airflow.velocast.notify.discord.failed:1|c" in statsd()
    assert "Discord failure not sent" in caplog.text


def test_a_slow_webhook_is_given_up_after_the_timeout(standin: str, statsd: Callable[[], list[str]]) -> None:
    httpx.post(f"{standin}/__admin/mode", json={"delay_seconds": 30}, timeout=5).raise_for_status()
    started = time.monotonic()
    DiscordFailureNotifier(timeout_seconds=0.5)(with_real_dag(task_context(UnavailableError("sidecar down"))))
    assert time.monotonic() - started < 5
    assert "airflow.velocast.notify.discord.failed:1|c" in statsd()


def test_the_timeout_comes_from_the_settings(
    standin: str, statsd: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch, settings: VelocastSettings
) -> None:
    from velocast.orchestration import notify

    quick = settings.model_copy(update={"notify_timeout_seconds": 0.3})
    monkeypatch.setattr(notify, "get_settings", lambda: quick)
    httpx.post(f"{standin}/__admin/mode", json={"delay_seconds": 30}, timeout=5).raise_for_status()
    started = time.monotonic()
    DiscordSuccessNotifier()(with_real_dag(dag_context("success")))
    assert time.monotonic() - started < 5
    assert "airflow.velocast.notify.discord.failed:1|c" in statsd()


def test_a_missing_connection_is_counted_not_raised(statsd: Callable[[], list[str]]) -> None:
    DiscordFailureNotifier(discord_conn_id="velocast_discord_nowhere")(
        with_real_dag(task_context(ValueError("boom")))
    )
    assert "airflow.velocast.notify.discord.failed:1|c" in statsd()


def test_an_unreachable_webhook_is_counted_not_raised(
    statsd: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection = f'{{"conn_type": "http", "host": "http://127.0.0.1:{port}/api/", '
    connection += '"extra": {"webhook_endpoint": "webhooks/1/closed"}}'
    monkeypatch.setenv("AIRFLOW_CONN_VELOCAST_DISCORD_CLOSED", connection)
    DiscordFailureNotifier(discord_conn_id="velocast_discord_closed")(
        with_real_dag(task_context(ValueError("boom")))
    )
    assert "airflow.velocast.notify.discord.failed:1|c" in statsd()


def test_a_notifier_that_breaks_before_posting_is_counted_not_raised(
    statsd: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = DiscordFailureNotifier()

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("template engine exploded")

    monkeypatch.setattr(notifier, "render_template_fields", broken)
    notifier(task_context(ValueError("boom")))
    assert "airflow.velocast.notify.discord.failed:1|c" in statsd()


def test_async_notify_posts_too(standin: str) -> None:
    import asyncio

    asyncio.run(DiscordFailureNotifier().async_notify(with_real_dag(task_context(ValueError("boom")))))  # type: ignore[arg-type]
    assert len(received(standin)) == 1
