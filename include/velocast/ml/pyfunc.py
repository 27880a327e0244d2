"""The MLflow face of a velocast model: the pyfunc wrapper, its input form, and loading it back.

The pyfunc (``VelocastPyfunc``) wraps the joblib file written by ``VelocastModel.save``. Its
``predict`` takes normalized rows: ``counter_id`` (string) and ``counted_at`` as an ISO 8601
string *with* an offset (``2024-03-01T08:00:00Z``). Strings because MLflow's schema enforcement
refuses tz-aware datetimes and a naive datetime would silently drop the zone; naive strings are
refused for the same reason. Running the pyfunc needs the ``velocast`` package (the serving image):
the wrapper and the model classes live in it, and the logged pyfunc names the wrapper by its module
path (``velocast.ml.pyfunc.VelocastPyfunc``): moving it makes the models logged before unloadable.

Models are loaded by ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, never
``runs:/`` (that path retries against the GCS artifacts for minutes). ``load_velocast_model``
fetches only the model file (see its docstring); ``mlflow.pyfunc.load_model`` still loads the pyfunc.
The serving sidecar loads through ``velocast.ml.model_uri_loader`` (the same files, without
importing MLflow), which comes here only for what it does not read itself (non-http tracking URIs,
other artifact stores). The URI grammar and ``MODEL_FILE_KEY`` live there, re-exported here.

MLflow and pandas; never Airflow.
"""

from __future__ import annotations

import posixpath
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import pandas as pd
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.pyfunc import FLAVOR_NAME as PYFUNC_FLAVOR
from mlflow.pyfunc.model import PythonModel
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from velocast.ml.model_base import ModelError, VelocastModel, load_model
from velocast.ml.model_uri_loader import MODEL_FILE_KEY, ModelUri, parse_model_uri
from velocast.settings import VelocastSettings, get_settings

# What the pyfunc imports at load time, pinned at the installed versions. Explicit requirements
# skip MLflow's inference, which imports the model in a subprocess (~20 s instead of ~3 s).
PIP_PACKAGES: Final[tuple[str, ...]] = (
    "scikit-learn",
    "pandas",
    "numpy",
    "joblib",
    "threadpoolctl",
    "holidays",
    "vacances-scolaires-france",
)
INPUT_EXAMPLE_ROWS: Final = 5
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$")


# --- requirements ------------------------------------------------------------------------------


def pip_requirements() -> list[str]:
    """The pyfunc's requirements, pinned at this environment's versions."""
    return [f"{package}=={metadata.version(package)}" for package in PIP_PACKAGES]


# --- the pyfunc --------------------------------------------------------------------------------


def prediction_frame(model_input: pd.DataFrame) -> pd.DataFrame:
    """``counter_id`` + tz-aware UTC ``counted_at`` from what the pyfunc receives."""
    missing = {"counter_id", "counted_at"} - set(model_input.columns)
    if missing:
        raise ModelError(f"the input lacks the columns {sorted(missing)}")
    counted_at = model_input["counted_at"]
    if isinstance(counted_at.dtype, pd.DatetimeTZDtype):
        times = counted_at.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(counted_at.dtype):
        raise ModelError("counted_at is a naive datetime: give it a zone (UTC) or an ISO 8601 offset")
    else:
        texts = counted_at.astype("string").str.strip()
        naive = ~texts.str.contains(_OFFSET, na=False)
        if naive.any():
            example = texts[naive].iloc[0]
            raise ModelError(
                f"{int(naive.sum())} counted_at values have no UTC offset (e.g. {example!r}): "
                "write them as ISO 8601 with an offset, e.g. 2024-03-01T08:00:00Z"
            )
        try:
            times = pd.to_datetime(texts, utc=True, format="ISO8601")
        except (ValueError, TypeError) as error:
            raise ModelError(f"counted_at is not ISO 8601: {error}") from None
    return pd.DataFrame({"counter_id": model_input["counter_id"].astype("string"), "counted_at": times})


class VelocastPyfunc(PythonModel):
    """The MLflow face of a ``VelocastModel``: its artifact is the file ``VelocastModel.save`` wrote."""

    def __init__(self) -> None:
        self.model: VelocastModel | None = None

    def load_context(self, context: Any) -> None:
        self.model = load_model(Path(context.artifacts[MODEL_FILE_KEY]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        if self.model is None:
            raise ModelError("the velocast pyfunc has no model: load it with mlflow.pyfunc.load_model")
        return self.model.predict(prediction_frame(model_input))


def input_example(frame: pd.DataFrame, rows: int = INPUT_EXAMPLE_ROWS) -> pd.DataFrame:
    """A few normalized rows in the pyfunc's input form (``counted_at`` as ISO 8601 UTC)."""
    head = frame.head(rows)
    times = pd.to_datetime(head["counted_at"], utc=True)
    return pd.DataFrame(
        {
            "counter_id": head["counter_id"].astype(str).to_numpy(),
            "counted_at": times.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
        }
    )


def load_velocast_model(model_uri: str, *, settings: VelocastSettings | None = None) -> VelocastModel:
    """The ``VelocastModel`` inside a registered velocast pyfunc, downloading only its model file.

    ``model_uri`` is ``models:/<name>@<alias>`` or ``models:/<name>/<version>``; the tracking
    server is the one of ``settings`` (the process settings by default), passed to MLflow's client
    without touching the process-wide URIs. The version is resolved once, then only ``MLmodel``
    (which names the file) and the joblib file are fetched: ``mlflow.pyfunc.load_model`` gives the
    same model but downloads the whole folder and checks the requirements against every installed
    distribution (seconds per sidecar worker). An unknown name, alias or version raises MLflow's
    ``MlflowException``; a model that is not a velocast pyfunc, or lacks its file, ``ModelError``.
    """
    uri = parse_model_uri(model_uri)  # refuses runs:/ and other forms before any network call
    tracking_uri = (settings or get_settings()).mlflow_tracking_uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if uri.alias is not None:
        version = client.get_model_version_by_alias(uri.name, uri.alias)
    else:
        version = client.get_model_version(uri.name, str(uri.version))
    root = client.get_model_version_download_uri(version.name, version.version)
    repository = get_artifact_repository(root, tracking_uri=tracking_uri, registry_uri=tracking_uri)
    where = f"{model_uri} (version {version.version}, {root})"
    with tempfile.TemporaryDirectory(prefix="velocast-pyfunc-") as folder:
        mlmodel = _download(repository, MLMODEL_FILE_NAME, folder, f"{where} is not an MLflow model: no")
        relative = _model_file(Model.load(mlmodel), where)
        path = _download(repository, relative, folder, f"{where} lacks its {MODEL_FILE_KEY!r} artifact:")
        return load_model(Path(path))


def _model_file(model: Model, where: str) -> str:
    """The path, in the model's folder, of the file ``VelocastModel.save`` wrote."""
    flavor = model.flavors.get(PYFUNC_FLAVOR) or {}
    entry = (flavor.get("artifacts") or {}).get(MODEL_FILE_KEY) or {}
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(relative, str) or not relative:
        raise ModelError(f"{where} is not a velocast pyfunc (no {MODEL_FILE_KEY!r} artifact in its MLmodel)")
    return relative


def _download(repository: ArtifactRepository, relative: str, folder: str, missing: str) -> str:
    # Listed first: MLflow retries a missing file for minutes (the proxied store answers 500).
    parent, name = posixpath.split(relative)
    listed = repository.list_artifacts(parent or None)
    if not any(posixpath.basename(info.path) == name and not info.is_dir for info in listed):
        raise ModelError(f"{missing} {relative}")
    return str(repository.download_artifacts(relative, dst_path=folder))  # type: ignore[no-untyped-call]


__all__ = [
    "MODEL_FILE_KEY",
    "ModelUri",
    "VelocastPyfunc",
    "input_example",
    "load_velocast_model",
    "parse_model_uri",
    "pip_requirements",
    "prediction_frame",
]
