"""``load_velocast_model`` (MLflow's client, the model file only) on the local MLflow server.

It downloads only the model file of the registered pyfunc; these tests check it gives the model
``mlflow.pyfunc.load_model`` gives, and that a wrong URI or a pyfunc that is not velocast's fails
with an error saying so (and fast: a missing artifact is not retried for minutes). The sidecar's
loader, which does the same without importing MLflow, is tested in ``test_model_uri_loader.py``.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from tests.integration.ml.registered_pyfuncs import (
    PlainPyfunc,
    mlflow_model,
    register_pyfunc,
)
from velocast.ml.model_base import ModelError, VelocastModel
from velocast.ml.pyfunc import MODEL_FILE_KEY, VelocastPyfunc, input_example, load_velocast_model
from velocast.ml.tracking import LoggedModel
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]


def test_the_fast_path_gives_the_model_mlflow_gives(
    champion: str,
    logged: LoggedModel,
    own_settings: VelocastSettings,
    model: VelocastModel,
    frame: pd.DataFrame,
) -> None:
    rows = frame.drop(columns=["hourly_count"]).sample(300, random_state=1)
    loaded = load_velocast_model(champion, settings=own_settings)
    assert loaded.model_type == "hgb" and loaded.hyperparams == model.hyperparams
    expected = mlflow_model(own_settings, champion).predict(rows)
    np.testing.assert_array_equal(loaded.predict(rows), expected)
    np.testing.assert_array_equal(expected, model.predict(rows))
    # The pyfunc itself still serves through MLflow (schema enforced, ISO 8601 strings).
    pyfunc = mlflow.pyfunc.load_model(champion)
    assert isinstance(pyfunc.unwrap_python_model(), VelocastPyfunc)
    np.testing.assert_allclose(pyfunc.predict(input_example(rows, rows=50)), expected[:50])
    # By version too.
    by_version = load_velocast_model(logged.model_uri, settings=own_settings)
    np.testing.assert_array_equal(by_version.predict(rows), expected)


def test_an_unknown_alias_or_version_says_so(logged: LoggedModel, own_settings: VelocastSettings) -> None:
    name = logged.registered_name
    with pytest.raises(MlflowException, match="alias no-such-alias not found"):
        load_velocast_model(f"models:/{name}@no-such-alias", settings=own_settings)
    with pytest.raises(MlflowException, match=r"version=99\) not found"):
        load_velocast_model(f"models:/{name}/99", settings=own_settings)
    with pytest.raises(MlflowException, match="not found"):
        load_velocast_model(f"models:/{name}-nope@champion-dev", settings=own_settings)
    with pytest.raises(ValueError, match="runs:/"):
        load_velocast_model("runs:/abc/model", settings=own_settings)


def test_a_pyfunc_that_is_not_velocast_is_refused(own_settings: VelocastSettings, tmp_path: Path) -> None:
    plain = register_pyfunc(own_settings, "plain", PlainPyfunc(), {})
    with pytest.raises(ModelError, match=r"is not a velocast pyfunc \(no 'velocast_model' artifact"):
        load_velocast_model(plain, settings=own_settings)

    # The right artifact key, holding a file that is not a velocast model.
    other = tmp_path / "other.joblib"
    joblib.dump({"format": "someone-else", "model": None}, other)
    foreign = register_pyfunc(own_settings, "foreign", PlainPyfunc(), {MODEL_FILE_KEY: str(other)})
    with pytest.raises(ModelError, match="is not a velocast model file"):
        load_velocast_model(foreign, settings=own_settings)


def test_a_missing_model_file_is_a_model_error_at_once(
    own_settings: VelocastSettings, model: VelocastModel, tmp_path: Path
) -> None:
    path = model.save(tmp_path / "hgb.joblib")
    uri = register_pyfunc(own_settings, "gone", VelocastPyfunc(), {MODEL_FILE_KEY: str(path)})
    name, version = uri.removeprefix("models:/").split("/")
    client = MlflowClient(own_settings.mlflow_tracking_uri)
    root = client.get_model_version_download_uri(name, version)
    repository = get_artifact_repository(root, tracking_uri=own_settings.mlflow_tracking_uri)
    repository.delete_artifacts("artifacts/hgb.joblib")  # type: ignore[no-untyped-call]
    with pytest.raises(ModelError, match=r"lacks its 'velocast_model' artifact: artifacts/hgb.joblib"):
        load_velocast_model(uri, settings=own_settings)
