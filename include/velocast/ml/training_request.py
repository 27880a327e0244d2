"""What a training or an evaluation is asked to do: ``TrainingRequest`` and ``EvaluationRequest``.

Both are validated before any data is read, so that a bad request fails at once (the serving
sidecar answers 422, the CLI exits 2) with errors that name the field and the problem: the model
type, its hyper-parameters (checked against the type's allow-list and completed with its
defaults), the environment, the baseline's location, the current data (rows, or a window of the
raw BigQuery table, not both), the share of the current window held out, test mode.
``current_frame`` then gives the current data as a frame, reading BigQuery for a window.

What a request may ask for is bounded, so that an admin's request cannot exhaust the machine
that trains or evaluates: the hyper-parameters (``velocast.ml.models``), the current rows
(``MAX_CURRENT_ROWS``) and the current window (``velocast.gcp.actuals.MAX_WINDOW``, 92 days).

Shared with the serving sidecar, whose request bodies extend these models: never imports Airflow.
"""

from __future__ import annotations

from typing import Any, Final, Self

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from velocast.errors import RequestError
from velocast.gcp.actuals import ActualsWindow, read_actuals
from velocast.ml.evaluation import DEFAULT_TEST_FRACTION
from velocast.ml.model_base import InvalidHyperparametersError
from velocast.ml.models import DEFAULT_MODEL_TYPE, MODEL_TYPES, UnknownModelTypeError, validate_hyperparams
from velocast.ml.reference_data import BaselineError, BaselineLocation
from velocast.ml.registry_entries import Environment
from velocast.settings import VelocastSettings

# Current rows sent in a request: a full current window (``MAX_WINDOW``, 92 days) of hourly counts of
# ~110 counters (92 × 24 × 110 ≈ 243k). The API's body limit (serving_max_body_bytes, 8 MB by
# default: ~50k rows) stops it earlier; this bounds the library's other callers.
MAX_CURRENT_ROWS: Final = 250_000


class TrainingDataError(RequestError, ValueError):
    """The data of a training request cannot be used (the API answers 422)."""


class _DataRequest(BaseModel):
    """What training and evaluation requests share: the model type, the env and the data."""

    # protected_namespaces: ``model_type`` is a field name here, not a pydantic method.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_type: str = DEFAULT_MODEL_TYPE
    env: Environment = "dev"
    # gs://bucket/prefix of the baseline's two parquet files; None: gs://<bucket>/data.
    data_source: str | None = None
    # Recent actuals (raw or normalized rows, any variant normalize reads); None: baseline only.
    current_data: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=MAX_CURRENT_ROWS)
    # Or a reference to them: a [start, end) window of the raw BigQuery table (what DAG 3 sends).
    current_window: ActualsWindow | None = None

    @field_validator("model_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in MODEL_TYPES:
            raise PydanticCustomError(
                "unknown_model_type", "{message}", {"message": str(UnknownModelTypeError(value))}
            )
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("data_source")
    @classmethod
    def _data_source(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            BaselineLocation.parse(value)
        except BaselineError as error:
            raise PydanticCustomError("invalid_data_source", "{message}", {"message": str(error)}) from None
        return value

    @model_validator(mode="after")
    def _one_current_source(self) -> Self:
        if self.current_data is not None and self.current_window is not None:
            raise PydanticCustomError(
                "ambiguous_current_data",
                "give current_data (rows) or current_window (a BigQuery window), not both",
            )
        return self

    def current_frame(self, settings: VelocastSettings) -> pd.DataFrame | None:
        """The current rows as given (``current_data``) or read (``current_window``); None if neither."""
        if self.current_data is not None:
            return pd.DataFrame.from_records(self.current_data)
        if self.current_window is None:
            return None
        frame = read_actuals(settings, self.current_window)
        if frame.empty:
            window = self.current_window
            raise TrainingDataError(
                f"{settings.raw_table_id} has no rows from {window.start.isoformat()} "
                f"to {window.end.isoformat()}: ingest them first (DAG ingest_bike_counts)"
            )
        return frame


class TrainingRequest(_DataRequest):
    """What to train, validated before any data is read: errors name the field and the problem."""

    # Completed with the type's defaults once validated (what the run logs).
    hyperparams: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    # A smoke run on a sample of the data; never a prod champion.
    test_mode: StrictBool = False
    # Share of the current window (by time) held out as test_current.
    test_fraction: float = Field(DEFAULT_TEST_FRACTION, gt=0, lt=1)

    @field_validator("hyperparams")
    @classmethod
    def _hyperparams(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        model_type = info.data.get("model_type")
        if model_type is None:  # the type was invalid: that error is reported already
            return value
        try:
            return validate_hyperparams(model_type, value)
        except (InvalidHyperparametersError, UnknownModelTypeError) as error:
            problems = getattr(error, "errors", [])
            raise PydanticCustomError(
                "invalid_hyperparameters", "{message}", {"message": str(error), "problems": problems}
            ) from None


class EvaluationRequest(_DataRequest):
    """Score one registered model on test_baseline and, if given, on current actuals."""

    # None: the environment's champion of ``model_type``.
    run_id: str | None = Field(default=None, min_length=1, max_length=200)


__all__ = ["MAX_CURRENT_ROWS", "EvaluationRequest", "TrainingDataError", "TrainingRequest"]
