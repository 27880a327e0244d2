"""Waiting for a sidecar training job without holding a worker slot: a deferrable operator and its trigger.

``WaitForTrainingJobOperator`` asks the sidecar once (``GET /train/{job_id}``: a job that already
finished, e.g. when the task is retried, needs no wait), then defers to ``TrainingJobTrigger``,
which polls the job from the triggerer's event loop every ``monitor_poll_seconds``. The worker slot
is free while the model trains; the task resumes on a worker only to read the finished job
(``velocast.monitor.retraining.training_outcome``).

Cancellation: the trigger has a deadline (``monitor_training_timeout_seconds``): past it, it
cancels the job (``DELETE /train/{job_id}``) and the task fails with ``TrainingJobTimeoutError``.
A user who clears or marks the deferred task has Airflow call the trigger's ``on_kill``, which
cancels the job too. A triggerer restart re-creates the trigger, which keeps polling the same job.

The connection is the sidecar's (``velocast_sidecar``: base URL and, as its password, the API key).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook, BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from velocast.orchestration.sidecar import API_KEY_HEADER, SidecarHook
from velocast.orchestration.sidecar_errors import SidecarUnavailableError
from velocast.orchestration.sidecar_results import FINISHED_JOB_STATUSES
from velocast.orchestration.taskflow import record_failure
from velocast.settings import get_settings

if TYPE_CHECKING:
    from airflow.sdk import Context

    from velocast.monitor.run import TrainingOutcome

log = logging.getLogger(__name__)

CLASSPATH: Final = "velocast.orchestration.training_wait.TrainingJobTrigger"
# Consecutive failed polls (sidecar unreachable, 5xx) before the wait gives up.
MAX_POLL_ERRORS: Final = 20
REQUEST_TIMEOUT_SECONDS: Final = 30.0


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]  # Airflow's class is untyped


class TrainingJobTrigger(BaseTrigger):
    """Polls ``GET /train/{job_id}`` until the job finishes, its deadline passes or polls keep failing.

    Events: ``{"status": "finished", "job": {...}}``, ``{"status": "timeout", ...}`` (the job was
    cancelled), ``{"status": "error", "message": ...}``.
    """

    def __init__(self, job_id: str, conn_id: str, poll_seconds: float, deadline: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_id = job_id
        self.conn_id = conn_id
        self.poll_seconds = poll_seconds
        self.deadline = deadline  # epoch seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "job_id": self.job_id,
            "conn_id": self.conn_id,
            "poll_seconds": self.poll_seconds,
            "deadline": self.deadline,
        }

    @property
    def _endpoint(self) -> str:
        return f"/train/{quote(self.job_id, safe='')}"

    async def _client(self) -> httpx.AsyncClient:
        connection = await BaseHook.aget_connection(self.conn_id)
        headers = {"Accept": "application/json"}
        if connection.password:
            headers[API_KEY_HEADER] = connection.password
        # The same base URL the hook builds from the connection (HttpHook's rule).
        url = SidecarHook(self.conn_id).url_of(connection)
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        last_error = ""
        async with await self._client() as client:
            while True:
                try:
                    response = await client.get(self._endpoint)
                except httpx.HTTPError as error:
                    errors, last_error = errors + 1, f"{type(error).__name__}: {error}"
                else:
                    if response.status_code == 200:
                        errors = 0
                        job = response.json()
                        if job.get("status") in FINISHED_JOB_STATUSES:
                            yield _event({"status": "finished", "job": job})
                            return
                    elif response.status_code in (401, 403, 404):
                        yield _event(
                            {
                                "status": "error",
                                "message": f"GET {self._endpoint} answered {response.status_code}: "
                                f"{response.text[:500]}",
                            }
                        )
                        return
                    else:
                        errors, last_error = errors + 1, f"{response.status_code} {response.text[:300]}"
                if errors >= MAX_POLL_ERRORS:
                    yield _event(
                        {
                            "status": "error",
                            "message": f"{errors} polls of training job {self.job_id} failed in a row; "
                            f"last: {last_error}",
                        }
                    )
                    return
                if time.time() >= self.deadline:
                    cancelled = await self._cancel(client)
                    yield _event({"status": "timeout", "job_id": self.job_id, "cancelled": cancelled})
                    return
                await asyncio.sleep(self.poll_seconds)

    async def _cancel(self, client: httpx.AsyncClient) -> bool:
        try:
            response = await client.delete(self._endpoint)
        except httpx.HTTPError as error:
            self.log.warning("could not cancel training job %s: %s", self.job_id, error)
            return False
        self.log.info("cancelled training job %s: %s", self.job_id, response.status_code)
        return response.status_code == 200

    async def on_kill(self) -> None:
        """The task was cleared or marked by a user: stop the training it waits for."""
        async with await self._client() as client:
            await self._cancel(client)


class WaitForTrainingJobOperator(BaseOperator):
    """Wait for a sidecar training job on the triggerer; return its ``TrainingOutcome``.

    Fails when the job failed (its error; the champion is untouched), was cancelled, or ran past
    ``timeout_seconds`` (then it is cancelled first).
    """

    template_fields = ("job_id",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        job_id: str,
        conn_id: str | None = None,
        poll_seconds: float | None = None,
        timeout_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        settings = get_settings()
        self.job_id = job_id
        self.conn_id = conn_id or settings.sidecar_conn_id
        self.poll_seconds = poll_seconds if poll_seconds is not None else settings.monitor_poll_seconds
        self.timeout_seconds = (
            timeout_seconds if timeout_seconds is not None else settings.monitor_training_timeout_seconds
        )

    def execute(self, context: Context) -> TrainingOutcome | None:
        try:
            job = SidecarHook(self.conn_id).job_status(self.job_id)
            if job.finished:
                return self._outcome(job.model_dump(mode="json"))
            log.info(
                "training job %s is %s (%s): waiting on the triggerer", self.job_id, job.status, job.step
            )
            self.defer(
                trigger=TrainingJobTrigger(
                    job_id=self.job_id,
                    conn_id=self.conn_id,
                    poll_seconds=self.poll_seconds,
                    deadline=time.time() + self.timeout_seconds,
                ),
                method_name="execute_complete",
                # A backstop: the trigger's own deadline (which cancels the job) comes first.
                timeout=timedelta(seconds=self.timeout_seconds + 10 * self.poll_seconds + 60),
            )
        except Exception as error:
            record_failure(error)
            raise
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> TrainingOutcome:
        from velocast.monitor.retraining import TrainingJobTimeoutError

        try:
            status = event.get("status")
            if status == "finished":
                return self._outcome(event["job"])
            if status == "timeout":
                raise TrainingJobTimeoutError(
                    f"training job {self.job_id} ran longer than {self.timeout_seconds:.0f} s and was "
                    f"{'cancelled' if event.get('cancelled') else 'asked to stop'}; the champion is unchanged"
                )
            raise SidecarUnavailableError(str(event.get("message") or event))
        except Exception as error:
            record_failure(error)
            raise

    def _outcome(self, job: dict[str, Any]) -> TrainingOutcome:
        from velocast.monitor.retraining import training_outcome

        outcome = training_outcome(job)
        log.info("training job %s: %s, decision %s", outcome.job_id, outcome.status, outcome.decision)
        return outcome


__all__ = ["TrainingJobTrigger", "WaitForTrainingJobOperator"]
