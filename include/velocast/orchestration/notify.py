"""Discord notifications of the DAGs: what happened, and what to do next.

``DiscordFailureNotifier`` and ``DiscordSuccessNotifier`` are Airflow notifiers (Airflow's Discord
provider), set as ``on_failure_callback`` / ``on_success_callback`` of a DAG or of its tasks
(``default_args``). The webhook comes from an Airflow connection (``settings.discord_conn_id``,
``velocast_discord``: an HTTP connection whose host is the webhook base, e.g.
``https://discord.com/api/``, and whose extra holds ``{"webhook_endpoint": "webhooks/<id>/<token>"}``).

A message names the DAG, the run, the failed task, the error (trimmed), a link to the run in the
Airflow UI and a next step. Airflow passes a task callback the exception (``context["exception"]``);
a DAG callback gets only a reason (``"task_failure"``) and the task that caused it, so the failure
notifier belongs on the tasks when the error text matters, the success notifier on the DAG.

Posting never fails nor holds a pipeline: one attempt, bounded by ``settings.notify_timeout_seconds``
(connect and read), every exception caught and logged, and the outcome counted through Airflow's
statsd client as ``<metrics_prefix>.notify.discord.sent`` / ``.failed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.providers.discord.notifications.discord import DiscordNotifier

from velocast.errors import RequestError, UnavailableError
from velocast.settings import VelocastSettings, get_settings

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 600
# Discord refuses longer messages; the provider raises before posting.
MAX_MESSAGE_CHARS = 2000
FALLBACK_UI_URL = "http://localhost:8080"

# Next steps by what the error says (lower-case fragments, first match wins), then by error family.
NEXT_STEP_BY_TEXT: tuple[tuple[str, str], ...] = (
    ("no champion", "no model is serving yet: trigger the `monitor_and_train` DAG, then clear this run."),
    (
        "too many rejected rows",
        "the source sent bad rows: read the quarantine table, then clear the run once the source is fixed.",
    ),
)
NEXT_STEP_BY_FAMILY: tuple[tuple[type[BaseException], str], ...] = (
    (
        UnavailableError,
        "a dependency could not be reached (retries are spent): check it (`velocast stack status` "
        "locally), then clear the failed task.",
    ),
    (
        RequestError,
        "the request or its data is wrong (a retry fails the same way): fix it, then clear the task.",
    ),
)
DEFAULT_NEXT_STEP = "read the failed task's log (link above), fix the cause, then clear the task."


@dataclass(frozen=True)
class RunFacts:
    """What a callback context says about the run, in plain values."""

    dag_id: str
    run_id: str
    task_id: str | None
    try_number: int | None
    error: BaseException | str | None
    # Only DAG callbacks get a reason ("task_failure", "success", …).
    reason: str | None

    @property
    def is_dag_callback(self) -> bool:
        return self.reason is not None


def run_facts(context: Mapping[str, Any]) -> RunFacts:
    """The run's facts from an Airflow callback context (task or DAG), tolerant of missing keys."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    dag_id = _first_text(
        getattr(dag, "dag_id", None), getattr(ti, "dag_id", None), getattr(dag_run, "dag_id", None)
    )
    run_id = _first_text(context.get("run_id"), getattr(dag_run, "run_id", None), getattr(ti, "run_id", None))
    try_number = getattr(ti, "try_number", None)
    reason = context.get("reason")
    return RunFacts(
        dag_id=dag_id or "unknown DAG",
        run_id=run_id or "unknown run",
        task_id=_first_text(getattr(ti, "task_id", None)),
        try_number=try_number if isinstance(try_number, int) else None,
        error=context.get("exception"),
        reason=str(reason) if reason is not None else None,
    )


def run_link(facts: RunFacts, ui_url: str, *, task: bool) -> str:
    """The run (or its task) in the Airflow 3 UI."""
    link = f"{ui_url.rstrip('/')}/dags/{quote(facts.dag_id, safe='')}/runs/{quote(facts.run_id, safe='')}"
    if task and facts.task_id:
        link += f"/tasks/{quote(facts.task_id, safe='')}"
    return link


def error_text(error: BaseException | str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """``Type: message`` of an exception (or the text), trimmed to ``limit`` characters."""
    if error is None:
        return None
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def next_step(error: BaseException | str | None) -> str:
    """What to do about ``error``: by what it says first, then by its family."""
    text = (error_text(error, limit=10_000) or "").lower()
    for fragment, step in NEXT_STEP_BY_TEXT:
        if fragment in text:
            return step
    for family, step in NEXT_STEP_BY_FAMILY:
        if isinstance(error, family):
            return step
    return DEFAULT_NEXT_STEP


def failure_message(context: Mapping[str, Any], *, env: str, ui_url: str) -> str:
    """The failure message: DAG, run, failed task, error, link, next step (Discord markdown)."""
    facts = run_facts(context)
    headline = f"**velocast [{env}]: `{facts.dag_id}` failed**"
    if facts.task_id:
        attempt = f" (try {facts.try_number})" if facts.try_number and not facts.is_dag_callback else ""
        headline += f" at task `{facts.task_id}`{attempt}"
    lines = [headline, f"Run: `{facts.run_id}`"]
    error = error_text(facts.error)
    if error:
        fenced = error.replace("```", "'''")  # keep the code block closed
        lines.append(f"Error: ```{fenced}```")
    elif facts.reason:
        lines.append(f"Reason: `{facts.reason}` (the error is in the task's log)")
    lines.append(f"Next step: {next_step(facts.error)}")
    lines.append(f"Run in Airflow: <{run_link(facts, ui_url, task=True)}>")
    return _fit("\n".join(lines))


def success_message(context: Mapping[str, Any], *, env: str, ui_url: str) -> str:
    """The success message: DAG, run (and the task, for a task callback), link."""
    facts = run_facts(context)
    headline = f"**velocast [{env}]: `{facts.dag_id}` succeeded**"
    task_level = not facts.is_dag_callback and facts.task_id is not None
    if task_level:
        headline += f" at task `{facts.task_id}`"
    lines = [
        headline,
        f"Run: `{facts.run_id}`",
        f"Run in Airflow: <{run_link(facts, ui_url, task=task_level)}>",
    ]
    return _fit("\n".join(lines))


def airflow_ui_url(settings: VelocastSettings) -> str:
    """The UI's base URL: the settings', else Airflow's ``[api] base_url``, else Airflow's default."""
    if settings.airflow_ui_url:
        return settings.airflow_ui_url
    try:
        from airflow.sdk.configuration import conf

        configured = conf.get("api", "base_url", fallback=None)
    except Exception:  # a link is a convenience: never fail a notification for it
        log.warning("could not read Airflow's [api] base_url", exc_info=True)
        configured = None
    return str(configured) if configured else FALLBACK_UI_URL


class VelocastDiscordNotifier(DiscordNotifier):
    """Posts ``message(context)`` to the Discord webhook once, within a timeout; never raises."""

    event: ClassVar[str] = "notification"

    def __init__(
        self,
        *,
        discord_conn_id: str | None = None,
        timeout_seconds: float | None = None,
        username: str = "velocast",
    ) -> None:
        super().__init__(discord_conn_id=discord_conn_id or get_settings().discord_conn_id, username=username)
        self.timeout_seconds = timeout_seconds

    def message(self, context: Mapping[str, Any], settings: VelocastSettings) -> str:
        raise NotImplementedError

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        # DAG-level callbacks get the serialized DAG, which has no template environment (Airflow's
        # BaseNotifier then fails before posting); the message is built in notify() from the context
        # and needs no DAG macros, so a plain sandboxed environment does.
        if jinja_env is None and not hasattr(context.get("dag"), "get_template_env"):
            jinja_env = self.get_template_env(dag=None)
        super().render_template_fields(context, jinja_env)

    def __call__(self, *args: Any) -> None:
        # BaseNotifier renders templates before notify() and re-raises what fails: guard it all.
        try:
            super().__call__(*args)
        except Exception:
            log.exception("Discord %s not sent: the notifier failed before posting", self.event)
            _count(get_settings(), "failed")

    def notify(self, context: Context) -> None:
        settings = get_settings()
        try:
            text = self.message(context, settings)
        except Exception as error:  # a notification must never fail the pipeline
            log.warning("Discord %s not sent: the message failed: %s", self.event, error_text(error))
            _count(settings, "failed")
            return
        self.post(text, settings)

    def post(self, text: str, settings: VelocastSettings | None = None) -> bool:
        """Post ``text`` once, within the timeout; True when Discord accepted it. Never raises."""
        settings = settings or get_settings()
        timeout = self.timeout_seconds or settings.notify_timeout_seconds
        try:
            hook = self.hook
            payload = hook.handler.build_discord_payload(
                tts=self.tts, message=text, username=self.username, avatar_url=self.avatar_url
            )
            # One attempt (HttpHook.run does not retry), bounded on connect and on read.
            hook.run(
                endpoint=hook.webhook_endpoint,
                data=payload,
                headers={"Content-type": "application/json"},
                extra_options={"timeout": (timeout, timeout)},
            )
        except Exception as error:  # a notification must never fail the pipeline
            log.warning(
                "Discord %s not sent (connection %s): %s", self.event, self.discord_conn_id, error_text(error)
            )
            _count(settings, "failed")
            return False
        log.info("Discord %s sent", self.event)
        _count(settings, "sent")
        return True

    async def async_notify(self, context: Context) -> None:
        """The same post, off the event loop (e.g. a deadline alert run by the triggerer)."""
        await asyncio.to_thread(self.notify, context)


class DiscordFailureNotifier(VelocastDiscordNotifier):
    """``on_failure_callback``: what failed, the error, the link and the next step."""

    event = "failure"

    def message(self, context: Mapping[str, Any], settings: VelocastSettings) -> str:
        return failure_message(context, env=settings.env, ui_url=airflow_ui_url(settings))


class DiscordSuccessNotifier(VelocastDiscordNotifier):
    """``on_success_callback``: the run that succeeded and its link."""

    event = "success"

    def message(self, context: Mapping[str, Any], settings: VelocastSettings) -> str:
        return success_message(context, env=settings.env, ui_url=airflow_ui_url(settings))


class DiscordMessage(VelocastDiscordNotifier):
    """A message written by the caller (e.g. the weekly run's report): ``post(text)`` says if it went."""

    event = "message"

    def message(self, context: Mapping[str, Any], settings: VelocastSettings) -> str:
        raise NotImplementedError("DiscordMessage posts a given text: call post(text)")


def post_message(text: str, *, discord_conn_id: str | None = None) -> bool:
    """Post ``text`` to the Discord webhook once; True when delivered. Never raises."""
    try:
        return DiscordMessage(discord_conn_id=discord_conn_id).post(_fit(text))
    except Exception as error:  # building the notifier itself failed (e.g. no provider connection)
        log.warning("Discord message not sent: %s", error_text(error))
        return False


def _count(settings: VelocastSettings, outcome: str) -> None:
    """``<prefix>.notify.discord.<outcome>`` through Airflow's statsd client (a no-op when off)."""
    try:
        from airflow.sdk.observability import stats

        stats.incr(f"{settings.metrics_prefix}.notify.discord.{outcome}")
    except Exception:  # metrics are best effort too
        log.warning("could not count the Discord %s", outcome, exc_info=True)


def _first_text(*values: object) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def _fit(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


__all__ = [
    "DiscordFailureNotifier",
    "DiscordMessage",
    "DiscordSuccessNotifier",
    "RunFacts",
    "VelocastDiscordNotifier",
    "airflow_ui_url",
    "failure_message",
    "next_step",
    "post_message",
    "run_facts",
    "run_link",
    "success_message",
]
