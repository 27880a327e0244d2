"""Registered models for the loading tests: a small real hgb logged as training logs it, and pyfuncs
that are not velocast's. Real data: 4 counters × 1 month of the regine_nj export."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient

from velocast.data.normalize import normalize
from velocast.ml.evaluation import double_evaluate
from velocast.ml.model_base import VelocastModel
from velocast.ml.tracking import ChampionAliases, LoggedModel, Tracker
from velocast.settings import VelocastSettings

PARQUET = (
    Path(__file__).resolve().parents[2]
    / "data"
    / "paris_bike_counts"
    / "regine_nj_projetvelo"
    / "dataset_projet_velo.parquet"
)
COUNTERS = ["100003096-353242251", "100003098-101003098", "100006300-101006300", "100007049-101007049"]


class PlainPyfunc(PythonModel):
    """An MLflow pyfunc that is not velocast's."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return np.zeros(len(model_input))


def training_frame() -> pd.DataFrame:
    raw = pd.read_parquet(
        PARQUET,
        filters=[("id_compteur", "in", COUNTERS), ("annee_comptage", "=", 2023), ("mois_comptage", "=", 3)],
    )
    result = normalize(raw).frame
    return result[result["hourly_count"].notna()].reset_index(drop=True)


def with_own_model_name(settings: VelocastSettings) -> VelocastSettings:
    """``settings`` registering under a name of its own (``delete_registered_models`` removes them)."""
    return settings.model_copy(update={"registered_model_name": f"velocast-test-{uuid.uuid4().hex[:8]}"})


def delete_registered_models(settings: VelocastSettings) -> None:
    client = MlflowClient(settings.mlflow_tracking_uri)
    for model in client.search_registered_models(f"name LIKE '{settings.registered_model_name}-%'"):
        client.delete_registered_model(model.name)


def log_champion(settings: VelocastSettings, model: VelocastModel, frame: pd.DataFrame) -> LoggedModel:
    """``model`` logged and registered the way training does, with the ``champion-dev`` alias."""
    tracker = Tracker(settings, experiment_name=f"model-load-{uuid.uuid4().hex[:8]}")
    test = frame.tail(200)
    logged = tracker.log_training(
        model,
        double_evaluate(model, None, test, test),
        None,
        {"rows": len(frame)},
        {"test_baseline": test, "test_current": test},
    )
    ChampionAliases.from_settings(settings).move(logged.registered_name, logged.version, "dev")
    return logged


def register_pyfunc(
    settings: VelocastSettings, suffix: str, python_model: PythonModel, artifacts: dict[str, str]
) -> str:
    """``models:/<name>/<version>`` of a pyfunc logged as given (no input example, no signature)."""
    name = f"{settings.registered_model_name}-{suffix}"
    tracker = Tracker(settings, experiment_name=f"model-load-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=tracker.experiment_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts=artifacts,
            pip_requirements=["pandas"],
            registered_model_name=name,
        )
    return f"models:/{name}/{info.registered_model_version}"


def mlflow_model(settings: VelocastSettings, model_uri: str) -> VelocastModel:
    """The velocast model inside the pyfunc, as ``mlflow.pyfunc.load_model`` loads it."""
    mlflow.set_tracking_uri(str(settings.mlflow_tracking_uri))
    unwrapped = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    model = getattr(unwrapped, "model", None)
    assert isinstance(model, VelocastModel), type(unwrapped)
    return model
