"""The MLflow face of a velocast model: the pyfunc wrapper, its input form, and loading it back.

The pyfunc (``VelocastPyfunc``) wraps the joblib file written by ``VelocastModel.save``. Its
``predict`` takes normalized rows: ``counter_id`` (string) and ``counted_at`` as an ISO 8601
string *with* an offset (``2024-03-01T08:00:00Z``). Strings because MLflow's schema enforcement
refuses tz-aware datetimes and a naive datetime would silently drop the zone; naive strings are
refused for the same reason. Running the pyfunc needs the ``velocast`` package (the serving image):
the wrapper and the model classes live in it, and the logged pyfunc names the wrapper by its module
path (``velocast.ml.pyfunc.VelocastPyfunc``): moving it makes the models logged before unloadable.

Models are loaded by ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, never
``runs:/`` (that path retries against the GCS artifacts for minutes).

Shared with the serving sidecar (which imports it only for ``models:/`` URIs): MLflow and pandas;
never Airflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from velocast.ml.model_base import ModelError, VelocastModel, load_model
from velocast.settings import VelocastSettings, get_settings

MODEL_FILE_KEY: Final = "velocast_model"  # key of the joblib file in the pyfunc's artifacts
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
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))/?$")


# --- model URIs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelUri:
    """A parsed ``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""

    name: str
    version: int | None
    alias: str | None


def parse_model_uri(uri: str) -> ModelUri:
    match = _MODELS_URI.match(uri.strip())
    if match is None:
        hint = " (runs:/ URIs are not loaded: use the registered model)" if uri.startswith("runs:/") else ""
        raise ValueError(f"expected models:/<name>/<version> or models:/<name>@<alias>, got {uri!r}{hint}")
    version = match.group("version")
    return ModelUri(
        name=match.group("name"),
        version=None if version is None else int(version),
        alias=match.group("alias"),
    )


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
    """Download a registered velocast pyfunc and return the ``VelocastModel`` inside it.

    ``model_uri`` is ``models:/<name>@<alias>`` or ``models:/<name>/<version>``; the tracking
    server is the one of ``settings`` (the process settings by default).
    """
    parse_model_uri(model_uri)  # refuses runs:/ and other forms before any network call
    tracking_uri = (settings or get_settings()).mlflow_tracking_uri
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    wrapper = pyfunc.unwrap_python_model()
    if not isinstance(wrapper, VelocastPyfunc) or wrapper.model is None:
        raise ModelError(f"{model_uri} is not a velocast pyfunc (got {type(wrapper).__name__})")
    return wrapper.model


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
