"""The one mapping from errors to HTTP answers: by family of ``velocast.errors``, one test per family.

A bare app with the sidecar's handlers and one route that raises what the test hands it: no stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from google.api_core.exceptions import ServiceUnavailable
from google.auth.exceptions import DefaultCredentialsError
from pydantic import BaseModel, ValidationError
from velocast_serving.errors import EXCEPTION_HANDLERS, status_of
from velocast_serving.jobs import JobBusyError
from velocast_serving.model_store import ModelLoadError
from velocast_serving.prediction import RecordsRejectedError, Rejection

from velocast.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    RequestError,
    UnavailableError,
    VelocastError,
)
from velocast.ml.models import UnknownModelTypeError
from velocast.ml.registry import ChampionTestModeError, RegistryConflictError, RegistryFormatError
from velocast.ml.registry_entries import UnknownEnvironmentError, UnknownRunError


def _app(raise_error: Callable[[], None]) -> TestClient:
    app = FastAPI()
    for error_type, handler in EXCEPTION_HANDLERS:
        app.add_exception_handler(error_type, handler)

    @app.get("/raise")
    def route() -> dict[str, str]:
        raise_error()
        return {}

    # A 500 is answered, then re-raised to the server: the client sees the answer.
    return TestClient(app, raise_server_exceptions=False)


def answer_to(error: BaseException) -> Any:
    def raise_error() -> None:
        raise error

    return _app(raise_error).get("/raise")


class _Entry(BaseModel):
    r2: float


def _validation_error() -> ValidationError:
    try:
        _Entry.model_validate({"r2": "not a number"})
    except ValidationError as error:
        return error
    raise AssertionError("the entry validated")


def test_not_found_family_is_404():
    response = answer_to(UnknownRunError("dev: no 'hgb' entry with run_id 'x'"))
    assert response.status_code == 404
    assert response.json() == {"detail": "dev: no 'hgb' entry with run_id 'x'"}
    assert status_of(NotFoundError()) == 404


@pytest.mark.parametrize(
    "error", [ChampionTestModeError("test mode"), RegistryConflictError("lost the race"), ConflictError("x")]
)
def test_conflict_family_is_409(error):
    response = answer_to(error)
    assert response.status_code == 409 and response.json()["detail"] == str(error)
    assert "retry-after" not in response.headers


def test_a_conflict_that_says_when_to_retry_sends_retry_after():
    response = answer_to(JobBusyError({"job_id": "abc", "status": "running"}))
    assert response.status_code == 409 and "training job abc is running" in response.json()["detail"]
    assert response.headers["retry-after"] == "60"


@pytest.mark.parametrize(
    "error",
    [
        UnknownEnvironmentError("unknown registry environment 'qa'"),
        UnknownModelTypeError("xgb"),
        RequestError("x"),
    ],
)
def test_request_family_is_422(error):
    response = answer_to(error)
    assert response.status_code == 422 and response.json() == {"detail": str(error)}


def test_a_new_request_error_is_422_without_touching_the_mapping():
    class WindowTooLongError(RequestError):
        """Defined here: the mapping has never heard of it."""

    response = answer_to(WindowTooLongError("the window is longer than a year"))
    assert response.status_code == 422 and response.json() == {"detail": "the window is longer than a year"}

    class RunGoneError(UnknownRunError):
        pass

    assert answer_to(RunGoneError("gone")).status_code == 404  # the narrower family wins


def test_a_request_error_that_names_fields_answers_in_the_validation_format():
    rejected = RecordsRejectedError([Rejection(2, "no date"), Rejection(5, "no counter id")])
    response = answer_to(rejected)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"type": "record_rejected", "loc": ["body", "records", 2], "msg": "no date"},
            {"type": "record_rejected", "loc": ["body", "records", 5], "msg": "no counter id"},
        ]
    }


@pytest.mark.parametrize(
    "error", [RegistryFormatError("summary.json is not valid JSON"), ModelLoadError("cannot load gs://b/m")]
)
def test_unavailable_family_is_503(error):
    response = answer_to(error)
    assert response.status_code == 503 and response.json() == {"detail": str(error)}


@pytest.mark.parametrize(
    "error",
    [
        ServiceUnavailable("GCS is down"),
        DefaultCredentialsError("no credentials"),
        ConnectionError("connection reset by peer"),
        FileNotFoundError(2, "No such file or directory"),
        _validation_error(),
    ],
    ids=["google-api", "google-auth", "connection", "os", "stored-data-does-not-validate"],
)
def test_a_dependency_s_own_errors_are_503(error):
    response = answer_to(error)
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"dependency unavailable: {type(error).__name__}: ")


@pytest.mark.parametrize(
    "error", [ConfigurationError("insecure"), VelocastError("outside every family"), RuntimeError("bug")]
)
def test_what_belongs_to_no_family_is_a_500_that_says_nothing(error):
    response = answer_to(error)
    assert response.status_code == 500 and response.json() == {"detail": "internal error"}
    assert status_of(error) == 500


def test_status_of_by_family():
    assert [status_of(error) for error in (NotFoundError(), ConflictError(), RequestError())] == [
        404,
        409,
        422,
    ]
    assert status_of(UnavailableError()) == status_of(OSError()) == 503
