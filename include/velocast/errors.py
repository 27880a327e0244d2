"""One error hierarchy for velocast: every error raised on purpose belongs to one family.

Callers map *families*, never lists of concrete classes:

============================  ==============================  ============  ===========================
family                        meaning                         HTTP (API)    CLI exit / Airflow task
============================  ==============================  ============  ===========================
``RequestError``              the caller's request, or the    422           2 / fails, no retry
                              data it names, is wrong:
                              the same call fails again
``NotFoundError``             ... it names what is not there  404           2 / fails, no retry
``ConflictError``             ... it clashes with the state   409           2 / fails, no retry
                              (a job running, a test-mode
                              model for prod, a lost race)
``UnavailableError``          a dependency (GCS, BigQuery,    503           1 / fails, retried
                              MLflow, the Open Data API, a
                              model file) cannot be reached
                              or read: try again later
``VelocastError`` (others)    a bug or misconfiguration       500           1 / fails
============================  ==============================  ============  ===========================

A concrete error keeps ``ValueError`` / ``LookupError`` as a second base where callers (pydantic
validators, ``dict``-style look-ups) rely on it.
"""

from __future__ import annotations

from typing import Final


class VelocastError(Exception):
    """Base of every error velocast raises on purpose."""


class RequestError(VelocastError):
    """The caller's request (or the data it names) is wrong; repeating it fails the same way."""


class NotFoundError(RequestError):
    """The request names something that does not exist (a run id, a job, a champion)."""


class ConflictError(RequestError):
    """The request clashes with the current state (one job at a time, prod rules, concurrent writers)."""


class UnavailableError(VelocastError):
    """A dependency cannot be reached or read right now; the same request may succeed later."""


class ConfigurationError(VelocastError):
    """The settings cannot work (an insecure or inconsistent configuration); fix them and restart."""


# CLI exit codes by family (``velocast …``): 0 success, 2 the request was wrong, 1 anything else.
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_REQUEST_ERROR: Final = 2


def exit_code(error: BaseException) -> int:
    """The CLI exit code for ``error``: 2 for the caller's mistakes, 1 for everything else."""
    return EXIT_REQUEST_ERROR if isinstance(error, RequestError) else EXIT_FAILURE


def is_retryable(error: BaseException) -> bool:
    """Whether retrying the same call may succeed (a scheduler's retry policy asks this)."""
    return isinstance(error, UnavailableError)


__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_REQUEST_ERROR",
    "ConfigurationError",
    "ConflictError",
    "NotFoundError",
    "RequestError",
    "UnavailableError",
    "VelocastError",
    "exit_code",
    "is_retryable",
]
