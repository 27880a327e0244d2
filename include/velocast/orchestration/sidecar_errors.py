"""The serving sidecar's failures as seen by the DAGs, each in a family of ``velocast.errors``.

``SidecarHook`` (``velocast.orchestration.sidecar``) raises only these, so a DAG's
``retry_policy_by_error_family`` (``velocast.orchestration.taskflow``) does the right thing without
knowing HTTP:

==========================  =====================================  ===============================
raised                      when                                   family (Airflow task)
==========================  =====================================  ===============================
``SidecarNotFoundError``    404 (unknown run id or job, no         ``NotFoundError`` (fails)
                            champion to evaluate)
``SidecarConflictError``    409 (a training job running, a         ``ConflictError`` (fails)
                            test-mode model for prod)
``SidecarRequestError``     any other 4xx (401/403: the            ``RequestError`` (fails)
                            connection's key; 413/422: the body)
``SidecarUnavailableError`` 5xx or 429, no connection, no answer   ``UnavailableError`` (retried)
                            in time: after the hook's own retries
``SidecarNotReadyError``    ``/ready`` says no champion is loaded  ``UnavailableError`` (retried)
``ChampionChangedError``    the champion changed between two       ``UnavailableError`` (retried)
                            batches of one prediction
``SidecarAnswerError``      a 2xx answer of an unexpected shape    ``VelocastError`` (Airflow's
                            (the sidecar and the DAGs disagree)    usual retries)
``PredictionRequestError``  no records, or one record over the     ``RequestError`` (fails)
                            body limit (nothing was sent)
==========================  =====================================  ===============================

Every HTTP error carries the sidecar's own message (``detail``), its status and, when the sidecar
said when to come back, ``retry_after_seconds``.
"""

from __future__ import annotations

import json
from typing import Final

from requests import Response

from velocast.errors import ConflictError, NotFoundError, RequestError, UnavailableError, VelocastError
from velocast.http_retry import retry_after_seconds

MAX_DETAIL_CHARS: Final = 1000


class SidecarError(Exception):
    """What every HTTP-level failure of the sidecar says: the call, the status and the ``detail``."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        retry_after_seconds: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.retry_after_seconds = retry_after_seconds
        # Whether the hook itself may send the same request again (it was not acted upon, or is idempotent).
        self.retryable = retryable


class SidecarRequestError(SidecarError, RequestError):
    """The sidecar refused the request (4xx): repeating it fails the same way."""


class SidecarNotFoundError(SidecarRequestError, NotFoundError):
    """404: the request names what the sidecar does not have (a run id, a job, a champion)."""


class SidecarConflictError(SidecarRequestError, ConflictError):
    """409: the request clashes with the sidecar's state (one training job at a time, prod rules)."""


class SidecarUnavailableError(SidecarError, UnavailableError):
    """The sidecar cannot be reached, did not answer in time, or answered 5xx / 429."""


class SidecarNotReadyError(SidecarUnavailableError):
    """The sidecar serves no champion yet (``/ready`` answered 503); the sidecar's reason is kept."""


class ChampionChangedError(SidecarUnavailableError):
    """The champion changed while a prediction was sent in batches: the batches would mix two models."""


class SidecarAnswerError(SidecarError, VelocastError):
    """A 2xx answer the hook cannot read: the sidecar and the DAGs disagree on the API (deployments)."""


class PredictionRequestError(RequestError, ValueError):
    """Records the hook cannot send as they are (none at all, or one larger than the body limit)."""


def response_detail(response: Response) -> str:
    """The sidecar's ``detail`` (a message, or FastAPI's field list made readable), else the body's text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:MAX_DETAIL_CHARS] or response.reason or ""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail[:MAX_DETAIL_CHARS]
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                location = ".".join(str(part) for part in item.get("loc", ()))
                parts.append(f"{location}: {item.get('msg', '')}" if location else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)[:MAX_DETAIL_CHARS]
    return json.dumps(body)[:MAX_DETAIL_CHARS]


def error_for_response(response: Response, call: str, *, idempotent: bool) -> SidecarError:
    """The exception for a sidecar answer of 400 or more to ``call`` (``"POST /predict"``)."""
    status = response.status_code
    detail = response_detail(response)
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    message = f"the serving sidecar answered {status} to {call}: {detail}"
    if status in (401, 403):
        message += " (check the API key in the password of the sidecar's Airflow connection)"
    if status == 429 or status >= 500:
        # 429 and 503 say the request was not acted upon: safe to repeat even when not idempotent.
        retryable = idempotent or status in (429, 503)
        return SidecarUnavailableError(
            message, status=status, detail=detail, retry_after_seconds=retry_after, retryable=retryable
        )
    kind: type[SidecarRequestError] = SidecarRequestError
    if status == 404:
        kind = SidecarNotFoundError
    elif status == 409:
        kind = SidecarConflictError
    return kind(message, status=status, detail=detail, retry_after_seconds=retry_after)


__all__ = [
    "ChampionChangedError",
    "PredictionRequestError",
    "SidecarAnswerError",
    "SidecarConflictError",
    "SidecarError",
    "SidecarNotFoundError",
    "SidecarNotReadyError",
    "SidecarRequestError",
    "SidecarUnavailableError",
    "error_for_response",
    "response_detail",
]
