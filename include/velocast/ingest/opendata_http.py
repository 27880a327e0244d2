"""The Open Data API's request policy: one GET, retried, and the errors the client raises.

A GET is retried with exponential backoff and jitter on 429, 5xx (500/502/503/504), connection
errors, timeouts and truncated or invalid JSON bodies (``InvalidBodyError``); 429 and 503 honour
``Retry-After``, 429 also the quota header ``X-RateLimit-Reset``. Other 4xx fail at once
(``OpenDataError``); a GET still failing after every retry raises ``OpenDataUnavailableError``
(a ``velocast.errors.UnavailableError``: the task is retried later).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from velocast.errors import UnavailableError, VelocastError
from velocast.http_retry import retry_after_seconds
from velocast.ingest.json_stream import InvalidBodyError
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")


class OpenDataError(VelocastError):
    """The API refused a request or answered something unusable."""

    def __init__(self, message: str, *, url: str, status: int | None = None, api_message: str | None = None):
        super().__init__(message)
        self.url = url
        self.status = status
        self.api_message = api_message


class OpenDataUnavailableError(OpenDataError, UnavailableError):
    """The API still failed after all retries."""


@dataclass
class RequestTally:
    """Requests sent and retries made for one fetch."""

    requests: int = 0
    retries: int = 0


class RetryingClient:
    """GETs with the retry policy above. Not thread-safe: use one per thread."""

    def __init__(
        self,
        settings: VelocastSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            timeout=settings.http_timeout_seconds,
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": "velocast-opendata-client"},
        )

    def close(self) -> None:
        self._http.close()

    def get(
        self, url: str, params: dict[str, str], consume: Callable[[httpx.Response], T], tally: RequestTally
    ) -> T:
        """``consume(response)`` of the first 200, streamed; retried as the module describes."""
        attempts = self.settings.http_max_retries + 1
        last_status: int | None = None
        problem = "no attempt"
        for attempt in range(attempts):
            tally.requests += 1
            last_status = None
            try:
                with self._http.stream("GET", url, params=params) as response:
                    last_status = response.status_code
                    if response.status_code == 200:
                        return consume(response)
                    response.read()
                    if response.status_code not in RETRYABLE_STATUS:
                        message = api_message(response)
                        raise OpenDataError(
                            f"GET {url} failed with HTTP {response.status_code}: {message}",
                            url=url,
                            status=response.status_code,
                            api_message=message,
                        )
                    problem = f"HTTP {response.status_code}"
                    delay = self._retry_delay(response, attempt)
            except (httpx.TransportError, InvalidBodyError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                delay = self._backoff(attempt)
            if attempt + 1 == attempts:
                break
            tally.retries += 1
            log.warning("GET %s: %s; retry %d/%d in %.2fs", url, problem, attempt + 1, attempts - 1, delay)
            self._sleep(delay)
        raise OpenDataUnavailableError(
            f"GET {url} still failing after {attempts} attempts "
            f"(last status: {last_status}; last problem: {problem})",
            url=url,
            status=last_status,
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, capped."""
        base = min(self.settings.http_max_backoff_seconds, self.settings.http_backoff_seconds * 2.0**attempt)
        return base / 2 + self._rng.uniform(0, base / 2)

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        """The server's wait hint for 429/503 (Retry-After, then X-RateLimit-Reset), else backoff."""
        if response.status_code in (429, 503):
            hint = retry_after_seconds(response.headers.get("Retry-After"))
            if hint is None and response.status_code == 429:
                hint = reset_in_seconds(response.headers.get("X-RateLimit-Reset"))
            if hint is not None:
                return min(self.settings.http_max_backoff_seconds, hint)
        return self._backoff(attempt)


def api_message(response: httpx.Response) -> str:
    """The API's error message from a refused request's body (at most 500 characters)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:500]
    return str(body)[:500]


def reset_in_seconds(value: str | None) -> float | None:
    """X-RateLimit-Reset as epoch seconds, turned into seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value) - time.time())
    except ValueError:
        return None


__all__ = [
    "RETRYABLE_STATUS",
    "OpenDataError",
    "OpenDataUnavailableError",
    "RequestTally",
    "RetryingClient",
    "api_message",
    "reset_in_seconds",
]
