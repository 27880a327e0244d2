"""``SidecarHook``: the DAGs' one way to call the serving sidecar (``velocast_serving``) over HTTP.

Configured by an Airflow connection (``settings.sidecar_conn_id``, default ``velocast_sidecar``):
its host, schema and port give the base URL, its **password is the API key**, sent as
``X-API-Key`` (``velocast_serving.auth``) and registered with Airflow's secrets masker; the key is
never put in code, XCom or a log line. Locally ``velocast.local.airflow_env`` defines it as
``AIRFLOW_CONN_VELOCAST_SIDECAR``.

Built on the HTTP provider's ``HttpHook``: its connection handling, session and ``run``; its
``check_response`` is overridden to raise by family (``velocast.orchestration.sidecar_errors``).
Retries are tenacity's, as in ``HttpHook.run_with_advanced_retry``, but around ``run`` *and* the
status check (that method retries ``run`` alone, which raises on no status when ``/ready`` may
answer 503 on purpose):

- connection errors, timeouts, 429 and 5xx are retried with exponential backoff, up to
  ``sidecar_max_attempts``; a ``Retry-After`` is waited for (longer than ``sidecar_max_backoff_seconds``:
  the hook gives up at once and the task's own retry takes over);
- ``POST /train`` starts a job, so it is repeated only when the sidecar surely did not act on it
  (no connection, 429, 503); the other calls are idempotent;
- 4xx raise at once, with the sidecar's ``detail``.

Predictions are sent in batches under the sidecar's limits (``serving_max_records``,
``serving_max_body_bytes``; ``sidecar_batches``) and concatenated in order; a champion change
between batches fails the call rather than mixing two models. The sidecar does not publish its
limits, so the hook reads the same settings the sidecar reads.

Like ``HttpHook``, an instance is not thread-safe (it sets ``method`` per call): one per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

import requests
import tenacity
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk.log import mask_secret
from pydantic import BaseModel
from requests.auth import AuthBase
from urllib3.exceptions import ConnectTimeoutError

from velocast.orchestration.sidecar_batches import predict_bodies, to_json
from velocast.orchestration.sidecar_errors import (
    ChampionChangedError,
    SidecarAnswerError,
    SidecarError,
    SidecarNotReadyError,
    SidecarUnavailableError,
    error_for_response,
)
from velocast.orchestration.sidecar_results import (
    Evaluation,
    ModelSummary,
    Predictions,
    Promotion,
    Readiness,
    TrainingJob,
    TrainingSubmission,
)
from velocast.settings import VelocastSettings, get_settings

if TYPE_CHECKING:
    from airflow.models import Connection
    from airflow.sdk.definitions.connection import Connection as SdkConnection

    # Types only: the request models pull in pandas and the Google clients, which a call does not need.
    from velocast.ml.training_request import EvaluationRequest, TrainingRequest

API_KEY_HEADER: Final = "X-API-Key"
NO_CHAMPION_MESSAGE: Final = "no champion yet: trigger monitor_and_train"

Result = TypeVar("Result", bound=BaseModel)


class ApiKeyAuth(AuthBase):
    """Sends the connection's password as ``X-API-Key``; its ``repr`` hides the key."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[API_KEY_HEADER] = self._key
        return request

    def __repr__(self) -> str:
        return "ApiKeyAuth(<hidden>)"


def _is_connect_failure(error: requests.RequestException) -> bool:
    """Whether the request failed before reaching the sidecar (refused, no route, connect timeout)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    # urllib3's NewConnectionError (refused, DNS) is a ConnectTimeoutError.
    return isinstance(reason, ConnectTimeoutError)


def _may_retry(error: BaseException) -> bool:
    return isinstance(error, SidecarError) and error.retryable


class SidecarHook(HttpHook):
    """Typed calls to the serving sidecar: ``ready``, ``model_summary``, ``predict``, ``train``,
    ``job_status``, ``cancel_job``, ``evaluate``, ``promote``. Settings give the defaults of every
    knob (timeouts, attempts, backoff, limits); keyword arguments override them."""

    hook_name = "velocast serving sidecar"
    default_conn_name = "velocast_sidecar"

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        settings: VelocastSettings | None = None,
        connect_timeout_seconds: float | None = None,
        timeout_seconds: float | None = None,
        max_attempts: int | None = None,
        backoff_seconds: float | None = None,
        max_backoff_seconds: float | None = None,
        max_records: int | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        s = settings if settings is not None else get_settings()
        super().__init__(method="GET", http_conn_id=conn_id or s.sidecar_conn_id)
        self.connect_timeout_seconds = (
            s.sidecar_connect_timeout_seconds if connect_timeout_seconds is None else connect_timeout_seconds
        )
        self.timeout_seconds = s.sidecar_timeout_seconds if timeout_seconds is None else timeout_seconds
        self.max_attempts = max(1, s.sidecar_max_attempts if max_attempts is None else max_attempts)
        self.backoff_seconds = s.sidecar_backoff_seconds if backoff_seconds is None else backoff_seconds
        self.max_backoff_seconds = (
            s.sidecar_max_backoff_seconds if max_backoff_seconds is None else max_backoff_seconds
        )
        self.max_records = s.serving_max_records if max_records is None else max_records
        self.max_body_bytes = s.serving_max_body_bytes if max_body_bytes is None else max_body_bytes
        self._idempotent = True

    # --- what the DAGs call -----------------------------------------------------------------------
    def ready(self) -> Readiness:
        """``GET /ready``: a not-ready sidecar (503 with its reason) is an answer here, not an error."""
        response = self._call("GET", "/ready", accept=frozenset({503}))
        if response.status_code == 503:
            try:
                return Readiness.model_validate(response.json())
            except ValueError:  # a proxy's 503, not the sidecar's answer
                raise error_for_response(response, "GET /ready", idempotent=True) from None
        return self._parse(Readiness, response, "GET /ready")

    def require_champion(self) -> Readiness:
        """``ready()``, or ``SidecarNotReadyError`` with the sidecar's reason if no champion is loaded."""
        readiness = self.ready()
        if not readiness.ready:
            reason = readiness.reason or "not ready"
            raise SidecarNotReadyError(
                f"{NO_CHAMPION_MESSAGE} (the serving sidecar says: {reason})", status=503, detail=reason
            )
        return readiness

    def model_summary(self) -> ModelSummary:
        """``GET /model_summary``: the registry entries of the served environment and the loaded champions."""
        return self._parse(ModelSummary, self._call("GET", "/model_summary"), "GET /model_summary")

    def predict(self, records: Sequence[Mapping[str, Any]], *, model_type: str | None = None) -> Predictions:
        """``POST /predict`` in as many batches as the limits ask; predictions in the order of ``records``."""
        batches: list[Predictions] = []
        bodies = predict_bodies(
            records, max_records=self.max_records, max_body_bytes=self.max_body_bytes, model_type=model_type
        )
        for body in bodies:
            try:
                response = self._call("POST", "/predict", body=body)
            except SidecarUnavailableError as error:
                if error.status == 503 and (error.detail or "").startswith("no champion"):
                    raise SidecarNotReadyError(
                        f"{NO_CHAMPION_MESSAGE} (the serving sidecar says: {error.detail})",
                        status=503,
                        detail=error.detail,
                    ) from error
                raise
            batch = self._parse(Predictions, response, "POST /predict")
            if batches and batch.champion.run_id != batches[0].champion.run_id:
                raise ChampionChangedError(
                    f"the champion changed from run {batches[0].champion.run_id} to {batch.champion.run_id} "
                    f"during a prediction in batches (batch {len(batches) + 1}): predict again"
                )
            batches.append(batch)
        self.log.info("sidecar: %d predictions in %d request(s)", len(records), len(batches))
        return Predictions(
            predictions=[prediction for batch in batches for prediction in batch.predictions],
            champion=batches[0].champion,
            unseen_counters=list(dict.fromkeys(c for batch in batches for c in batch.unseen_counters)),
            unseen_counter_rows=sum(batch.unseen_counter_rows for batch in batches),
            school_holiday_unknown_rows=sum(batch.school_holiday_unknown_rows for batch in batches),
            batches=len(batches),
        )

    def train(self, request: TrainingRequest | Mapping[str, Any]) -> TrainingSubmission:
        """``POST /train``: starts a job (202) and returns its id; ``SidecarConflictError`` while one runs.

        Only the fields set on ``request`` are sent, so the sidecar's defaults (its environment) apply.
        """
        response = self._call("POST", "/train", body=_body(request), idempotent=False)
        return self._parse(TrainingSubmission, response, "POST /train")

    def job_status(self, job_id: str) -> TrainingJob:
        """``GET /train/{job_id}``; ``SidecarNotFoundError`` for an unknown id."""
        endpoint = f"/train/{quote(job_id, safe='')}"
        return self._parse(TrainingJob, self._call("GET", endpoint), f"GET {endpoint}")

    def cancel_job(self, job_id: str) -> TrainingJob:
        """``DELETE /train/{job_id}``: stops a queued or running job; a finished one comes back unchanged."""
        endpoint = f"/train/{quote(job_id, safe='')}"
        return self._parse(TrainingJob, self._call("DELETE", endpoint), f"DELETE {endpoint}")

    def evaluate(
        self,
        request: EvaluationRequest | Mapping[str, Any] | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> Evaluation:
        """``POST /evaluate``: a registered model (default: the champion) scored in the request.

        It reads data and loads a model: give it a ``timeout_seconds`` longer than the default.
        """
        response = self._call("POST", "/evaluate", body=_body(request or {}), timeout_seconds=timeout_seconds)
        return self._parse(Evaluation, response, "POST /evaluate")

    def promote(self, model_type: str, run_id: str, *, env: str | None = None) -> Promotion:
        """``POST /promote_champion`` (repeating it answers ``already_champion``: safe to retry)."""
        body = to_json({"model_type": model_type, "run_id": run_id, "env": env})
        response = self._call("POST", "/promote_champion", body=body)
        return self._parse(Promotion, response, "POST /promote_champion")

    # --- the HttpHook parts it builds on ----------------------------------------------------------
    def url_of(self, connection: Connection | SdkConnection) -> str:
        """The base URL ``HttpHook`` builds from ``connection`` (for callers that hold the connection
        already, e.g. the training-job trigger, which fetches it asynchronously)."""
        self._set_base_url(connection)
        return str(self.base_url).rstrip("/")

    def _extract_auth(self, connection: Connection) -> AuthBase | None:
        key = connection.password
        if not key:
            return None  # /health and /ready need none; the other routes answer 401, which says so
        mask_secret(key)
        return ApiKeyAuth(key)

    def check_response(self, response: requests.Response) -> None:
        """Raise by family for a status of 400 or more (``HttpHook``'s version logs the body and
        raises ``AirflowException``, which says nothing the retry policy can use)."""
        if response.status_code >= 400:
            call = f"{response.request.method} {response.request.path_url}"
            raise error_for_response(response, call, idempotent=self._idempotent)

    # --- one call, with retries ----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        endpoint: str,
        *,
        body: str | None = None,
        idempotent: bool = True,
        accept: frozenset[int] = frozenset(),
        timeout_seconds: float | None = None,
    ) -> requests.Response:
        retrying = tenacity.Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=tenacity.retry_if_exception(_may_retry),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._send, method, endpoint, body, idempotent, accept, timeout_seconds)
        except SidecarUnavailableError as error:
            attempts = int(retrying.statistics.get("attempt_number", 1))
            if attempts > 1:
                error.add_note(f"the hook gave up after {attempts} attempts")
            raise

    def _send(
        self,
        method: str,
        endpoint: str,
        body: str | None,
        idempotent: bool,
        accept: frozenset[int],
        timeout_seconds: float | None,
    ) -> requests.Response:
        self.method = method
        self._idempotent = idempotent
        call = f"{method} {endpoint}"
        read_timeout = timeout_seconds if timeout_seconds is not None else self.timeout_seconds
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        options = {"timeout": (self.connect_timeout_seconds, read_timeout), "check_response": False}
        try:
            response: requests.Response = self.run(
                endpoint, data=body, headers=headers, extra_options=options
            )
        except requests.Timeout as error:
            connect_failed = _is_connect_failure(error)
            what = f"connect within {self.connect_timeout_seconds}s" if connect_failed else "answer"
            raise SidecarUnavailableError(
                f"the serving sidecar at {self.base_url} did not {what} to {call} "
                f"(timeout {read_timeout}s): {type(error).__name__}",
                retryable=idempotent or connect_failed,
            ) from error
        except requests.ConnectionError as error:
            raise SidecarUnavailableError(
                f"cannot reach the serving sidecar at {self.base_url} for {call}: {_reason(error)}",
                retryable=idempotent or _is_connect_failure(error),
            ) from error
        if response.status_code not in accept:
            self.check_response(response)
        return response

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** (state.attempt_number - 1))
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, SidecarError) and error.retry_after_seconds is not None:
            return max(error.retry_after_seconds, backoff)
        return backoff

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        """After ``max_attempts``, or at once when told to come back later than the backoff cap."""
        if state.attempt_number >= self.max_attempts:
            return True
        error = state.outcome.exception() if state.outcome is not None else None
        wait = error.retry_after_seconds if isinstance(error, SidecarError) else None
        return wait is not None and wait > self.max_backoff_seconds

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        self.log.warning(
            "sidecar call failed (attempt %d of %d), retrying in %.2fs: %s",
            state.attempt_number,
            self.max_attempts,
            delay,
            error,
        )

    def _parse(self, result_type: type[Result], response: requests.Response, call: str) -> Result:
        try:
            return result_type.model_validate(response.json())
        except ValueError as error:
            raise SidecarAnswerError(
                f"the serving sidecar's answer to {call} is not a {result_type.__name__}: {error}",
                status=response.status_code,
            ) from error


def _body(request: BaseModel | Mapping[str, Any]) -> str:
    if isinstance(request, BaseModel):
        return to_json(request.model_dump(mode="json", exclude_unset=True))
    return to_json(dict(request))


def _reason(error: requests.ConnectionError) -> str:
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return f"{type(reason).__name__}: {reason}" if reason is not None else f"{type(error).__name__}: {error}"


__all__ = ["API_KEY_HEADER", "NO_CHAMPION_MESSAGE", "ApiKeyAuth", "SidecarHook"]
