"""MLflow tracking of the training runs, and the MLflow side of the model registry.

One run per training: the model type and its hyper-parameters (params), the challenger's and the
champion's metrics on *both* test frames (``challenger.test_baseline.r2``,
``champion.test_current.rmse``, ...), the sizes and time windows of the data, the evaluation plots
of ``velocast.ml.plots`` and the model itself as the MLflow pyfunc of ``velocast.ml.pyfunc``,
registered as ``{settings.registered_model_name}-{model_type}`` (one registered model per model
type, each with its own champion, as in ``velocast.ml.registry``).

Aliases mirror the registry's champion (``summary.json`` stays the source of truth): ``champion``
in prod, ``champion-dev`` in dev, on the registered model of the type (see ``champion_alias``).
``ChampionAliases`` moves them (for ``velocast.ml.promotion``); it checks first, within seconds,
that the server answers and has the version, so a promotion can refuse before it writes anything.

Shared with the serving sidecar: MLflow, pandas, matplotlib (Agg, no pyplot) only; never Airflow.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from velocast.errors import ConflictError, UnavailableError
from velocast.ml.decisions import DecisionResult
from velocast.ml.evaluation import DoubleEvaluation, Metrics, ModelScores
from velocast.ml.forecast import history_stage_of
from velocast.ml.model_base import ModelError, VelocastModel
from velocast.ml.plots import write_evaluation_plots
from velocast.ml.pyfunc import (
    MODEL_FILE_KEY,
    VelocastPyfunc,
    input_example,
    load_velocast_model,
    pip_requirements,
    prediction_frame,
)
from velocast.ml.registry_entries import CHAMPION_ALIASES, RegistryEntry, champion_alias, normalize_env
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT: Final = "velocast"
MODEL_ARTIFACT_PATH: Final = "model"  # the ``name`` of the logged pyfunc


class TrackingError(UnavailableError, RuntimeError):
    """MLflow did not do what a tracking step needed (the message says which step)."""


class ModelVersionMissingError(ConflictError, LookupError):
    """The registry names a registered model version that the MLflow server does not have."""


# --- registered names and aliases --------------------------------------------------------------


def registered_model_name(settings: VelocastSettings, model_type: str) -> str:
    return f"{settings.registered_model_name}-{model_type}"


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
            plots = write_evaluation_plots(model, champion, test_frames, workdir)
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
            signature = infer_signature(example, model.predict(prediction_frame(example)))

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
                stage = history_stage_of(model)
                if stage is not None:  # the blend and the band, scored on the slice out of sample
                    metrics |= {
                        f"history.{key}": value
                        for key, value in stage.summary().items()
                        if not math.isnan(value)
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

    # --- registered models -------------------------------------------------------------------
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


# --- the champion aliases ----------------------------------------------------------------------


class ChampionAliases:
    """The champion aliases of one tracking server's registered models.

    Unlike ``Tracker`` it changes no process-wide MLflow state (the sidecar promotes while it
    serves). ``check_version`` is bounded (one retry, ``check_timeout_seconds`` per attempt):
    MLflow's client retries a server that is down for minutes, which no caller should wait for.
    """

    def __init__(self, tracking_uri: str | None, *, check_timeout_seconds: float = 10.0) -> None:
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.check_timeout_seconds = check_timeout_seconds
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @classmethod
    def from_settings(cls, settings: VelocastSettings) -> ChampionAliases:
        return cls(settings.mlflow_tracking_uri)

    def check_version(self, name: str, version: int) -> None:
        """Raise ``TrackingError`` if the server does not answer, ``ModelVersionMissingError`` if it
        has no version ``version`` of ``name``."""
        where = f"MLflow ({self.tracking_uri})"
        if urllib.parse.urlsplit(self.tracking_uri).scheme not in ("http", "https"):
            # A local store (file, database): nothing to wait for.
            try:
                self.client.get_model_version(name, str(version))
            except MlflowException as error:
                if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise ModelVersionMissingError(f"{where} has no version {version} of {name!r}") from error
                raise TrackingError(f"{where} cannot be read: {error}") from error
            return
        # MLflow's documented REST call (GET model-versions/get), with our own retry bound.
        credentials = get_default_host_creds(self.tracking_uri)  # type: ignore[no-untyped-call]
        try:
            response = http_request(  # type: ignore[no-untyped-call]
                credentials,
                "/api/2.0/mlflow/model-versions/get",
                "GET",
                params={"name": name, "version": str(version)},
                max_retries=1,
                backoff_factor=1,
                timeout=max(1, math.ceil(self.check_timeout_seconds)),
                raise_on_status=False,
            )
        except MlflowException as error:  # connection refused, timeout, DNS...
            raise TrackingError(f"{where} cannot be reached: {error.message}") from error
        if response.status_code == 200:
            return
        try:
            code = response.json().get("error_code")
        except ValueError:
            code = None
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelVersionMissingError(f"{where} has no version {version} of {name!r}")
        raise TrackingError(f"{where} answered HTTP {response.status_code}: {response.text[:300]}")

    def move(self, name: str, version: int, env: str) -> str:
        """Point the env's champion alias of ``name`` at ``version``; returns the alias."""
        alias = champion_alias(env)
        try:
            self.client.set_registered_model_alias(name, alias, str(version))
        except MlflowException as error:
            raise TrackingError(
                f"MLflow ({self.tracking_uri}) did not move {name}@{alias}: {error}"
            ) from error
        return alias

    def version_of(self, name: str, env: str) -> int | None:
        """The version the env's champion alias of ``name`` points at, or None."""
        try:
            return int(self.client.get_model_version_by_alias(name, champion_alias(env)).version)
        except MlflowException:
            return None


def _decision_dict(decision: DecisionResult) -> dict[str, Any]:
    # The evaluation is logged next to it already.
    return {key: value for key, value in decision.to_dict().items() if key != "evaluation"}


__all__ = [
    "CHAMPION_ALIASES",
    "DEFAULT_EXPERIMENT",
    "ChampionAliases",
    "LoggedModel",
    "ModelVersionMissingError",
    "Tracker",
    "TrackingError",
    "champion_alias",
    "evaluation_metrics",
    "registered_model_name",
]
