"""The pieces the route modules share: ``calling`` names the dependency of a 503; the job 404."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from google.api_core.exceptions import ServiceUnavailable
from velocast_serving.api.deps import calling, job_status_or_404
from velocast_serving.errors import EXCEPTION_HANDLERS

from velocast.ml.models import UnknownModelTypeError
from velocast.ml.registry import ChampionTestModeError, RegistryFormatError
from velocast.ml.registry_entries import UnknownRunError


def answer_to(error: BaseException) -> Any:
    app = FastAPI()
    for error_type, handler in EXCEPTION_HANDLERS:
        app.add_exception_handler(error_type, handler)

    @app.get("/raise")
    def route() -> dict[str, str]:
        with calling("registry"):
            raise error

    return TestClient(app, raise_server_exceptions=False).get("/raise")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownRunError("no such run"), 404),
        (ChampionTestModeError("test mode"), 409),
        (UnknownModelTypeError("xgb"), 422),  # a RequestError that is a ValueError too
    ],
)
def test_request_errors_go_through_as_they_are(error, code):
    response = answer_to(error)
    assert response.status_code == code and response.json() == {"detail": str(error)}


@pytest.mark.parametrize(
    "error",
    [
        RegistryFormatError("gs://b/summary.json is not valid JSON"),
        ServiceUnavailable("GCS is down"),
        ConnectionError("connection reset by peer"),
        ValueError("an entry of summary.json that does not validate"),
    ],
)
def test_other_failures_name_the_dependency(error):
    response = answer_to(error)
    assert response.status_code == 503
    assert response.json() == {"detail": f"registry unavailable: {type(error).__name__}: {error}"}


def test_a_bug_inside_stays_a_500():
    assert answer_to(RuntimeError("bug")).status_code == 500


def test_job_status_or_404():
    with pytest.raises(HTTPException) as raised:
        job_status_or_404("0" * 32, None)
    assert raised.value.status_code == 404 and raised.value.detail == f"no training job {'0' * 32!r}"
    found = {"job_id": "a" * 32, "status": "queued", "submitted_at": "2024-03-01T00:00:00+00:00"}
    assert job_status_or_404("a" * 32, found).job_id == "a" * 32
