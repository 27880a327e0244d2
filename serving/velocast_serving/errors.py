"""How errors become HTTP answers: one mapping by family of ``velocast.errors``, never by concrete class.

=============================  ======  ===================================================
raised                         status  ``detail``
=============================  ======  ===================================================
``NotFoundError``              404     the error's message
``ConflictError``              409     the error's message (+ ``Retry-After`` if it says when)
``RequestError`` (the rest)    422     the message, or FastAPI's field list if it names fields
``UnavailableError``           503     the error's message
a dependency's own error       503     ``dependency unavailable: <type>: <message>``
(``DEPENDENCY_ERRORS``)
any other error                500     ``internal error`` (logged with its traceback)
=============================  ======  ===================================================

A new error joins by deriving from a family: the handlers need no change. ``create_app`` registers
``EXCEPTION_HANDLERS``; routes raise and let them answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol, runtime_checkable

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError
from pydantic import ValidationError

from velocast.errors import ConflictError, NotFoundError, RequestError, UnavailableError, VelocastError

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS: Final = 100

# The first family an error belongs to gives its status (the narrower families come first).
STATUS_OF_FAMILY: Final[tuple[tuple[type[VelocastError], int], ...]] = (
    (NotFoundError, status.HTTP_404_NOT_FOUND),
    (ConflictError, status.HTTP_409_CONFLICT),
    (RequestError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (UnavailableError, status.HTTP_503_SERVICE_UNAVAILABLE),
)

# Not ours, but they say a dependency is down: GCS or BigQuery, Google credentials, a connection or
# a file (requests' connection errors are OSErrors), stored data that no longer validates (a
# registry entry of summary.json).
DEPENDENCY_ERRORS: Final[tuple[type[Exception], ...]] = (
    GoogleAPIError,
    GoogleAuthError,
    OSError,
    ValidationError,
)


class DependencyUnavailableError(UnavailableError):
    """A named dependency failed: the detail says which one, and with what."""

    def __init__(self, dependency: str, cause: BaseException) -> None:
        super().__init__(f"{dependency} unavailable: {type(cause).__name__}: {cause}")


@runtime_checkable
class NamesFields(Protocol):
    """A request error that names the fields at fault: answered in FastAPI's validation format."""

    def errors(self) -> list[dict[str, Any]]: ...


@runtime_checkable
class SaysWhenToRetry(Protocol):
    """An error that knows when the same request may succeed (sent as ``Retry-After``)."""

    retry_after_seconds: int


def status_of(error: BaseException) -> int:
    """The HTTP status of ``error``: by family, 503 for a dependency's own errors, else 500."""
    for family, code in STATUS_OF_FAMILY:
        if isinstance(error, family):
            return code
    if isinstance(error, DEPENDENCY_ERRORS):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def validation_error_response(errors: Sequence[Any]) -> JSONResponse:
    """422 with ``loc``/``msg``/``type`` only: the input is not echoed back (size, and reflection)."""
    raw = list(errors)
    details: list[dict[str, Any]] = [
        {
            "type": str(item.get("type", "value_error")),
            "loc": [part if isinstance(part, int) else str(part) for part in item.get("loc", ())],
            "msg": str(item.get("msg", "")),
        }
        for item in raw[:MAX_REPORTED_ERRORS]
    ]
    if len(raw) > MAX_REPORTED_ERRORS:
        details.append(
            {"type": "truncated", "loc": ["body"], "msg": f"and {len(raw) - MAX_REPORTED_ERRORS} more"}
        )
    return JSONResponse({"detail": details}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def request_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return validation_error_response(error.errors())


async def velocast_error(request: Request, error: Exception) -> JSONResponse:
    """Our errors, by family (a ``VelocastError`` outside every family is a bug: 500)."""
    code = status_of(error)
    if code == status.HTTP_500_INTERNAL_SERVER_ERROR:
        return await unexpected_error(request, error)
    if code == status.HTTP_422_UNPROCESSABLE_CONTENT and isinstance(error, NamesFields):
        return validation_error_response(error.errors())
    headers = {"Retry-After": str(error.retry_after_seconds)} if isinstance(error, SaysWhenToRetry) else None
    if code >= status.HTTP_500_INTERNAL_SERVER_ERROR:
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(error).__name__, error)
    return JSONResponse({"detail": str(error)}, status_code=code, headers=headers)


async def dependency_error(request: Request, error: Exception) -> JSONResponse:
    """A dependency's own error (``DEPENDENCY_ERRORS``): 503, logged with its traceback."""
    log.warning("%s %s: a dependency failed", request.method, request.url.path, exc_info=error)
    detail = f"dependency unavailable: {type(error).__name__}: {error}"
    return JSONResponse({"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": "internal error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


ExceptionHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]

# What ``create_app`` registers; Starlette picks the handler of the nearest class in an error's MRO.
EXCEPTION_HANDLERS: Final[tuple[tuple[type[Exception], ExceptionHandler], ...]] = (
    (RequestValidationError, request_validation_error),
    (VelocastError, velocast_error),
    *((kind, dependency_error) for kind in DEPENDENCY_ERRORS),
    (Exception, unexpected_error),
)

__all__ = [
    "DEPENDENCY_ERRORS",
    "EXCEPTION_HANDLERS",
    "STATUS_OF_FAMILY",
    "DependencyUnavailableError",
    "NamesFields",
    "SaysWhenToRetry",
    "status_of",
    "validation_error_response",
]
