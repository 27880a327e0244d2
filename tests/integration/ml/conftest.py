"""Fixtures of the registered-pyfunc load tests: a small real model, logged and registered per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from tests.integration.ml.registered_pyfuncs import (
    delete_registered_models,
    log_champion,
    training_frame,
    with_own_model_name,
)
from velocast.ml.model_base import VelocastModel
from velocast.ml.models import build_model
from velocast.ml.tracking import LoggedModel
from velocast.settings import VelocastSettings


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return training_frame()


@pytest.fixture(scope="module")
def model(frame: pd.DataFrame) -> VelocastModel:
    return build_model("hgb", {"max_iter": 30}).fit(frame)


@pytest.fixture(scope="module")
def own_settings(settings: VelocastSettings, mlflow_server: Any) -> Iterator[VelocastSettings]:
    """The settings with a registered model name of the module's own (deleted afterwards)."""
    own = with_own_model_name(settings)
    yield own
    delete_registered_models(own)


@pytest.fixture(scope="module")
def logged(own_settings: VelocastSettings, model: VelocastModel, frame: pd.DataFrame) -> LoggedModel:
    return log_champion(own_settings, model, frame)


@pytest.fixture(scope="module")
def champion(logged: LoggedModel) -> str:
    return f"models:/{logged.registered_name}@champion-dev"
