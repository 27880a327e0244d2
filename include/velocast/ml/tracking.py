"""MLflow tracking of the training runs, and the MLflow side of the model registry.

One run per training: the model type and its hyper-parameters (params), the challenger's and the
champion's metrics on *both* test frames (``challenger.test_baseline.r2``,
``champion.test_current.rmse``, ...), the sizes and time windows of the data, two evaluation plots
(PNG) and the model itself as an MLflow pyfunc, registered as
``{settings.registered_model_name}-{model_type}`` (one registered model per model type, each with
its own champion, as in ``velocast.ml.registry``).

The pyfunc (``VelocastPyfunc``) wraps the joblib file written by ``VelocastModel.save``. Its
``predict`` takes normalised rows: ``counter_id`` (string) and ``counted_at`` as an ISO 8601
string *with* an offset (``2024-03-01T08:00:00Z``). Strings because MLflow's schema enforcement
refuses tz-aware datetimes and a naive datetime would silently drop the zone; naive strings are
refused for the same reason. Running the pyfunc needs the ``velocast`` package (the serving image):
the wrapper and the model classes live in it.

Aliases mirror the registry's champion (``summary.json`` stays the source of truth): ``champion``
in prod, ``champion-dev`` in dev, on the registered model of the type (see ``champion_alias``).

Models are loaded by ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, never
``runs:/`` (that path retries against the GCS artifacts for minutes).

Shared with the serving sidecar: MLflow, pandas, matplotlib (Agg, no pyplot) only; never Airflow.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient

from velocast.errors import UnavailableError
from velocast.ml.decisions import DecisionResult
from velocast.ml.evaluation import DoubleEvaluation, Metrics, ModelScores
from velocast.ml.features import PARIS_TZ
from velocast.ml.models import TARGET, ModelError, VelocastModel, load_model
from velocast.ml.registry import Environment, RegistryEntry, normalize_env
from velocast.settings import VelocastSettings, get_settings

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT: Final = "velocast"
MODEL_ARTIFACT_PATH: Final = "model"  # the ``name`` of the logged pyfunc
MODEL_FILE_KEY: Final = "velocast_model"  # key of the joblib file in the pyfunc's artifacts
CHAMPION_ALIASES: Final[dict[Environment, str]] = {"prod": "champion", "dev": "champion-dev"}
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
# Enough points to see the shape of a scatter; more only slows the PNG down.
MAX_SCATTER_POINTS: Final = 5_000
INPUT_EXAMPLE_ROWS: Final = 5
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))/?$")


class TrackingError(UnavailableError, RuntimeError):
    """MLflow did not do what a tracking step needed (the message says which step)."""


# --- URIs and aliases --------------------------------------------------------------------------


def champion_alias(env: str) -> str:
    """``champion`` in prod, ``champion-dev`` in dev (one registered model serves both envs)."""
    return CHAMPION_ALIASES[normalize_env(env)]


def registered_model_name(settings: VelocastSettings, model_type: str) -> str:
    return f"{settings.registered_model_name}-{model_type}"


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


def _prediction_frame(model_input: pd.DataFrame) -> pd.DataFrame:
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
        return self.model.predict(_prediction_frame(model_input))


def input_example(frame: pd.DataFrame, rows: int = INPUT_EXAMPLE_ROWS) -> pd.DataFrame:
    """A few normalised rows in the pyfunc's input form (``counted_at`` as ISO 8601 UTC)."""
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


# --- plots -------------------------------------------------------------------------------------


def _sample(n: int, limit: int = MAX_SCATTER_POINTS) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    # Fixed seed: two runs on the same data draw the same points, so their plots compare.
    return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))


def _predictions(model: VelocastModel, frame: pd.DataFrame) -> np.ndarray:
    return model.predict(frame.drop(columns=[TARGET]))


def _color(model_name: str) -> str:
    # One colour per model across both plots (line styles tell the frames apart).
    return {"challenger": "C0", "champion": "C1"}.get(model_name, "C2")


def plot_predicted_vs_actual(
    frames: Mapping[str, pd.DataFrame], predictions: Mapping[str, Mapping[str, np.ndarray]]
) -> Figure:
    """One panel per test frame; one colour per model (``predictions[model][frame]``)."""
    figure = Figure(figsize=(5.5 * len(frames), 5), layout="constrained")
    axes = figure.subplots(1, len(frames), squeeze=False)[0]
    for ax, (frame_name, frame) in zip(axes, frames.items(), strict=True):
        actual = frame[TARGET].to_numpy(dtype=np.float64)
        rows = _sample(len(actual))
        top = float(actual.max()) if actual.size else 1.0
        for model_name, by_frame in predictions.items():
            predicted = by_frame[frame_name]
            top = max(top, float(predicted.max()) if predicted.size else 0.0)
            ax.scatter(
                actual[rows], predicted[rows], s=4, alpha=0.3, label=model_name, color=_color(model_name)
            )
        ax.plot([0, top], [0, top], color="black", linewidth=1, label="perfect")
        ax.set(title=f"{frame_name} ({len(actual):,} rows)", xlabel="actual count", ylabel="predicted count")
        ax.legend(loc="upper left")
    return figure


def plot_error_by_hour(
    frames: Mapping[str, pd.DataFrame], predictions: Mapping[str, Mapping[str, np.ndarray]]
) -> Figure:
    """Mean absolute error by local (Europe/Paris) hour of day: where in the day a model misses."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    ax = figure.subplots()
    styles = ("-", "--", ":", "-.")
    for position, (frame_name, frame) in enumerate(frames.items()):
        style = styles[position % len(styles)]
        hours = pd.to_datetime(frame["counted_at"], utc=True).dt.tz_convert(PARIS_TZ).dt.hour.to_numpy()
        actual = frame[TARGET].to_numpy(dtype=np.float64)
        for model_name, by_frame in predictions.items():
            errors = pd.Series(np.abs(by_frame[frame_name] - actual)).groupby(hours).mean()
            ax.plot(
                errors.index,
                errors.to_numpy(),
                linestyle=style,
                marker="o",
                color=_color(model_name),
                label=f"{model_name} · {frame_name}",
            )
    ax.set(xlabel="hour of day (Europe/Paris)", ylabel="mean absolute error (count)", xticks=range(24))
    ax.set_title("Error by hour of day")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


# --- the tracker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    # ``models:/<registered_name>/<version>``: what the registry entry stores.
    model_uri: str
    registered_name: str
    version: int
    experiment_id: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric_items(prefix: str, metrics: Metrics) -> dict[str, float]:
    values = {"r2": metrics.r2, "rmse": metrics.rmse, "mae": metrics.mae, "n_rows": float(metrics.n_rows)}
    # An undefined metric is left out (and its absence is the record) rather than stored as NaN.
    return {f"{prefix}.{name}": value for name, value in values.items() if math.isfinite(value)}


def evaluation_metrics(evaluation: DoubleEvaluation) -> dict[str, float]:
    """``{challenger,champion}.{test_baseline,test_current}.{r2,rmse,mae,n_rows}``."""
    out: dict[str, float] = {}
    roles: list[tuple[str, ModelScores | None]] = [
        ("challenger", evaluation.challenger),
        ("champion", evaluation.champion),
    ]
    for role, scores in roles:
        if scores is None:
            continue
        out |= _metric_items(f"{role}.test_baseline", scores.test_baseline)
        out |= _metric_items(f"{role}.test_current", scores.test_current)
    return out


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)


class Tracker:
    """Training runs and registered models on the tracking server of ``settings``.

    ``settings.mlflow_tracking_uri`` None leaves MLflow's own default (``MLFLOW_TRACKING_URI``).
    MLflow's fluent API is process-wide; that is one URI per process, like the settings.
    """

    def __init__(self, settings: VelocastSettings, *, experiment_name: str = DEFAULT_EXPERIMENT) -> None:
        self.settings = settings
        self.experiment_name = experiment_name
        self.tracking_uri = settings.mlflow_tracking_uri
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._experiment_id: str | None = None

    def registered_name(self, model_type: str) -> str:
        return registered_model_name(self.settings, model_type)

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is not None:
                self._experiment_id = str(experiment.experiment_id)
            else:
                # The server's default artifact root (proxied to the bucket) is used.
                try:
                    self._experiment_id = str(self.client.create_experiment(self.experiment_name))
                except MlflowException:
                    # Created by a concurrent process in between.
                    found = self.client.get_experiment_by_name(self.experiment_name)
                    if found is None:
                        raise
                    self._experiment_id = str(found.experiment_id)
        return self._experiment_id

    def log_training(
        self,
        model: VelocastModel,
        evaluation: DoubleEvaluation,
        decision: DecisionResult | None,
        data: Mapping[str, Any],
        test_frames: Mapping[str, pd.DataFrame],
        *,
        champion: VelocastModel | None = None,
        env: str | None = None,
        test_mode: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> LoggedModel:
        """Log one training run and register its model (as a new version, with no alias).

        ``test_frames`` (``test_baseline``, ``test_current``) are the frames ``evaluation`` was
        computed on; they are used for the plots only. ``champion`` adds its curves to them.
        """
        if not model.is_fitted:
            raise ModelError(f"the {model.model_type} model is not fitted")
        started = time.perf_counter()
        name = self.registered_name(model.model_type)
        run_tags = {
            "velocast.model_type": model.model_type,
            "velocast.test_mode": str(test_mode).lower(),
            "velocast.role": "challenger",
        }
        if env is not None:
            run_tags["velocast.env"] = normalize_env(env)
        if decision is not None:
            run_tags["velocast.decision"] = decision.decision.value
            run_tags["velocast.decision_reason"] = decision.reason
        run_tags |= dict(tags or {})

        with tempfile.TemporaryDirectory(prefix="velocast-run-") as tmp:
            workdir = Path(tmp)
            model_file = model.save(workdir / f"{model.model_type}.joblib")
            plots = self._plots(model, champion, test_frames, workdir)
            summary = workdir / "evaluation.json"
            summary.write_text(
                json.dumps(
                    {
                        "evaluation": evaluation.to_dict(),
                        "decision": None if decision is None else _decision_dict(decision),
                        "data": dict(data),
                    },
                    indent=2,
                    default=str,
                )
            )
            example = input_example(next(iter(test_frames.values())))
            signature = infer_signature(example, model.predict(_prediction_frame(example)))

            with mlflow.start_run(experiment_id=self.experiment_id, tags=run_tags) as run:
                params = {"model_type": model.model_type} | {
                    key: _param_value(value) for key, value in model.hyperparams.items()
                }
                params |= {f"data.{key}": _param_value(value) for key, value in data.items()}
                mlflow.log_params(params)
                metrics = evaluation_metrics(evaluation)
                metrics |= {
                    f"data.{key}": float(value)
                    for key, value in data.items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool)
                }
                gain = None if decision is None else decision.metrics.get("r2_gain_test_current")
                if gain is not None:
                    metrics["decision.r2_gain_test_current"] = gain
                mlflow.log_metrics(metrics)
                for plot in plots:
                    mlflow.log_artifact(str(plot), artifact_path="plots")
                mlflow.log_artifact(str(summary))
                info = mlflow.pyfunc.log_model(
                    name=MODEL_ARTIFACT_PATH,
                    python_model=VelocastPyfunc(),
                    artifacts={MODEL_FILE_KEY: str(model_file)},
                    pip_requirements=pip_requirements(),
                    signature=signature,
                    input_example=example,
                    registered_model_name=name,
                )
                run_id = str(run.info.run_id)
        version = info.registered_model_version
        if version is None:
            raise TrackingError(f"run {run_id}: MLflow did not register a version of {name!r}")
        self.client.set_model_version_tag(name, str(version), "test_mode", str(test_mode).lower())
        logged = LoggedModel(
            run_id=run_id,
            model_uri=f"models:/{name}/{int(version)}",
            registered_name=name,
            version=int(version),
            experiment_id=self.experiment_id,
            seconds=round(time.perf_counter() - started, 3),
        )
        log.info("logged run %s as %s in %.1f s", run_id, logged.model_uri, logged.seconds)
        return logged

    @staticmethod
    def _plots(
        model: VelocastModel,
        champion: VelocastModel | None,
        frames: Mapping[str, pd.DataFrame],
        workdir: Path,
    ) -> list[Path]:
        models = {"challenger": model} | ({"champion": champion} if champion is not None else {})
        predictions: dict[str, dict[str, np.ndarray]] = {}
        for role, each in models.items():
            # Without current data test_current *is* test_baseline: predict it once.
            by_id: dict[int, np.ndarray] = {}
            for frame in frames.values():
                if id(frame) not in by_id:
                    by_id[id(frame)] = _predictions(each, frame)
            predictions[role] = {frame_name: by_id[id(frame)] for frame_name, frame in frames.items()}
        paths = []
        for file_name, figure in (
            ("predicted_vs_actual.png", plot_predicted_vs_actual(frames, predictions)),
            ("error_by_hour.png", plot_error_by_hour(frames, predictions)),
        ):
            path = workdir / file_name
            figure.savefig(path, dpi=90)
            paths.append(path)
        return paths

    # --- registered models -------------------------------------------------------------------
    def set_champion_alias(
        self, model_type: str, version: int | str, env: str, *, registered_name: str | None = None
    ) -> str:
        """Point the env's champion alias of this model type at ``version``; returns the alias.

        ``champion`` for prod, ``champion-dev`` for dev (``champion_alias``); ``registered_name``
        defaults to this settings' name for the type.
        """
        alias = champion_alias(env)
        name = registered_name or self.registered_name(model_type)
        self.client.set_registered_model_alias(name, alias, str(version))
        return alias

    def champion_version(self, model_type: str, env: str) -> int | None:
        """The version the env's champion alias points at, or None."""
        try:
            version = self.client.get_model_version_by_alias(
                self.registered_name(model_type), champion_alias(env)
            )
        except MlflowException:
            return None
        return int(version.version)

    def model_uri_for_run(self, run_id: str) -> str:
        """``models:/<name>/<version>`` of the version registered by ``run_id``."""
        prefix = self.settings.registered_model_name
        versions = [
            version
            for version in self.client.search_model_versions(f"run_id = '{run_id}'")
            if str(version.name).startswith(f"{prefix}-")
        ]
        if not versions:
            raise LookupError(f"no registered {prefix}-* model version was logged by run {run_id!r}")
        latest = max(versions, key=lambda version: int(version.version))
        return f"models:/{latest.name}/{int(latest.version)}"

    def load_model(self, model_uri: str) -> VelocastModel:
        return load_velocast_model(model_uri, settings=self.settings)

    def load_entry_model(self, entry: RegistryEntry) -> VelocastModel:
        return self.load_model(entry.model_uri)


def _decision_dict(decision: DecisionResult) -> dict[str, Any]:
    # The evaluation is logged next to it already.
    return {key: value for key, value in decision.to_dict().items() if key != "evaluation"}


__all__ = [
    "CHAMPION_ALIASES",
    "DEFAULT_EXPERIMENT",
    "LoggedModel",
    "ModelUri",
    "Tracker",
    "TrackingError",
    "VelocastPyfunc",
    "champion_alias",
    "evaluation_metrics",
    "input_example",
    "load_velocast_model",
    "parse_model_uri",
    "pip_requirements",
    "registered_model_name",
]
