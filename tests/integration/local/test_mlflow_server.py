"""The local MLflow server: PostgreSQL backend store, artifacts proxied to the GCS emulator;
log → register → alias → load by ``models:/<name>@champion``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]


def test_log_register_alias_and_load_by_alias(mlflow_server: Any, settings: VelocastSettings) -> None:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    name = f"test-model-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(name)
    features = np.arange(20, dtype=float).reshape(-1, 1)
    model = LinearRegression().fit(features, 3 * features.ravel() + 1)
    with mlflow.start_run() as run:
        mlflow.log_metric("r2", 1.0)
        info = mlflow.sklearn.log_model(
            model, name="model", pip_requirements=["scikit-learn"], registered_model_name=name
        )
    client = mlflow.MlflowClient()
    version = info.registered_model_version
    assert version is not None
    client.set_registered_model_alias(name, "champion", str(version))

    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    assert loaded.predict([[10.0]])[0] == pytest.approx(31.0)
    assert client.get_run(run.info.run_id).data.metrics["r2"] == 1.0
    # Artifacts went to the bucket (the GCS emulator's files), not to a local directory.
    artifacts = Path(settings.state_dir) / "gcs" / ".cloudstorage" / settings.bucket / "mlflow"
    assert any(artifacts.rglob("MLmodel"))
