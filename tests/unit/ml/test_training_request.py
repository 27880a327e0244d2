"""TrainingRequest: every invalid field is refused with an error that names it and says why."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from velocast.ml.models import DEFAULT_MODEL_TYPE, default_hyperparams
from velocast.ml.training_request import MAX_CURRENT_ROWS, EvaluationRequest, TrainingRequest


def errors_of(**fields: Any) -> list[ErrorDetails]:
    with pytest.raises(ValidationError) as caught:
        TrainingRequest(**fields)
    return caught.value.errors(include_url=False)


def test_defaults_are_complete() -> None:
    request = TrainingRequest()
    assert request.model_type == DEFAULT_MODEL_TYPE
    assert request.env == "dev"
    assert request.test_mode is False
    assert request.data_source is None
    assert request.current_data is None
    assert request.test_fraction == pytest.approx(0.2)
    # Completed with the type's defaults: what the run logs is every value the model used.
    assert request.hyperparams == default_hyperparams(DEFAULT_MODEL_TYPE)


def test_hyperparams_are_completed_with_defaults() -> None:
    request = TrainingRequest(model_type="rf", hyperparams={"n_estimators": 10})
    assert request.hyperparams == default_hyperparams("rf") | {"n_estimators": 10}


def test_unknown_model_type() -> None:
    [error] = errors_of(model_type="xgboost")
    assert error["loc"] == ("model_type",)
    assert error["type"] == "unknown_model_type"
    assert "'xgboost'" in error["msg"]
    assert "hgb" in error["msg"] and "rf" in error["msg"]


def test_unknown_model_type_does_not_also_blame_the_hyperparams() -> None:
    errors = errors_of(model_type="xgboost", hyperparams={"n_estimators": 10})
    assert [error["loc"] for error in errors] == [("model_type",)]


@pytest.mark.parametrize(
    ("model_type", "hyperparams", "name", "fragment"),
    [
        ("hgb", {"n_estimators": 10}, "n_estimators", "unknown hyperparameter"),
        ("hgb", {"learning_rate": 0}, "learning_rate", "greater than 0"),
        ("hgb", {"max_iter": "100"}, "max_iter", "valid integer"),
        ("hgb", {"loss": "huber"}, "loss", "squared_error"),
        ("rf", {"n_jobs": 0}, "n_jobs", "not 0"),
        ("rf", {"max_features": 1.5}, "max_features", "less than or equal to 1"),
        ("rf", {"max_depth": True}, "max_depth", "valid integer"),
    ],
)
def test_bad_hyperparams_name_the_parameter(
    model_type: str, hyperparams: dict[str, Any], name: str, fragment: str
) -> None:
    [error] = errors_of(model_type=model_type, hyperparams=hyperparams)
    assert error["loc"] == ("hyperparams",)
    assert error["type"] == "invalid_hyperparameters"
    assert f"{name}:" in error["msg"]
    assert fragment in error["msg"]
    assert f"model type {model_type!r}" in error["msg"]


def test_several_bad_hyperparams_are_all_reported() -> None:
    [error] = errors_of(hyperparams={"max_iter": 0, "typo": 1})
    assert "max_iter:" in error["msg"] and "typo:" in error["msg"]


def test_hyperparams_must_be_an_object() -> None:
    [error] = errors_of(hyperparams=[1, 2])
    assert error["loc"] == ("hyperparams",)


@pytest.mark.parametrize("env", ["DEV", " Prod ", "prod", "dev"])
def test_env_is_case_insensitive(env: str) -> None:
    assert TrainingRequest(env=env).env == env.strip().lower()


@pytest.mark.parametrize("env", ["local", "staging", "", 1])
def test_bad_env(env: Any) -> None:
    [error] = errors_of(env=env)
    assert error["loc"] == ("env",)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, float("nan")])
def test_test_fraction_is_strictly_between_0_and_1(fraction: float) -> None:
    [error] = errors_of(test_fraction=fraction)
    assert error["loc"] == ("test_fraction",)


def test_test_mode_is_a_real_boolean() -> None:
    assert TrainingRequest(test_mode=True).test_mode is True
    [error] = errors_of(test_mode="yes")
    assert error["loc"] == ("test_mode",)


@pytest.mark.parametrize("source", ["/etc/passwd", "s3://bucket/data", "gs://", "gs://UPPER/data"])
def test_data_source_is_a_gs_prefix(source: str) -> None:
    [error] = errors_of(data_source=source)
    assert error["loc"] == ("data_source",)
    assert "gs://<bucket>/<prefix>" in error["msg"]


def test_data_source_accepts_a_gs_prefix() -> None:
    assert TrainingRequest(data_source="gs://velocast-local/data").data_source == "gs://velocast-local/data"


def test_current_data_is_rows_and_not_empty() -> None:
    rows = [{"counter_id": "a", "counted_at": "2024-01-01T00:00:00Z", "hourly_count": 3}]
    assert TrainingRequest(current_data=rows).current_data == rows
    [error] = errors_of(current_data=[])
    assert error["loc"] == ("current_data",)
    assert errors_of(current_data=["not a row"])[0]["loc"][0] == "current_data"


def test_unknown_fields_are_refused() -> None:
    [error] = errors_of(model="hgb")
    assert error["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("hyperparams", "fragment"),
    [
        ({"n_estimators": 100_000}, "n_estimators: Input should be less than or equal to 100 (got 100000)"),
        ({"max_depth": None}, "max_depth: Value error, max_depth must be an integer from 1 to 30"),
    ],
)
def test_resource_hungry_hyperparams_are_refused_naming_the_bound(
    hyperparams: dict[str, Any], fragment: str
) -> None:
    [error] = errors_of(model_type="rf", hyperparams=hyperparams)
    assert error["loc"] == ("hyperparams",)
    assert fragment in error["msg"]


@pytest.mark.parametrize("request_type", [TrainingRequest, EvaluationRequest])
def test_current_rows_are_bounded(request_type: type[TrainingRequest] | type[EvaluationRequest]) -> None:
    row = {"counter_id": "c", "counted_at": "2024-01-01T00:00:00Z", "hourly_count": 1}
    assert len(request_type(current_data=[row] * MAX_CURRENT_ROWS).current_data or []) == MAX_CURRENT_ROWS
    with pytest.raises(ValidationError) as caught:
        request_type(current_data=[row] * (MAX_CURRENT_ROWS + 1))
    [error] = caught.value.errors(include_url=False)
    assert error["loc"] == ("current_data",) and error["type"] == "too_long"
    assert f"at most {MAX_CURRENT_ROWS} items" in error["msg"]


def test_the_current_window_is_bounded() -> None:
    [error] = errors_of(current_window={"start": "2023-01-01T00:00Z", "end": "2024-01-01T00:00Z"})
    assert error["loc"] == ("current_window",)
    assert "the window spans 365 days; at most 92 are allowed" in error["msg"]
