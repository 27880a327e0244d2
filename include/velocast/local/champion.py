"""A real champion for the local stack: the default model type fitted on the shipped Paris counts.

DAG 2's tests and ``velocast serving up`` need the serving sidecar to serve a real model before
any ``monitor_and_train`` run has produced one. ``bootstrap_champion`` takes the cheapest path
that gives the sidecar a champion, through the project's own model code and registry:

1. the last ``weeks`` weeks of the packaged counts (``velocast.local.replay.data.default_data_path``)
   that the replay has published, shifted by the whole weeks the running replay serves them with
   (what DAG 1 writes into the raw table), normalized like every source (``velocast.data.normalize``);
2. the default model type fitted on all but the last week, scored on that held-out week
   (``velocast.ml.evaluation.evaluate``): the entry's metrics are honest out-of-sample numbers;
3. the model file (``VelocastModel.save``) uploaded to the bucket, a registry entry whose
   ``model_uri`` is that ``gs://`` object (the sidecar's model store loads those without MLflow),
   promoted to champion of ``settings.serving_env``.

No MLflow run is logged: the entry's ``run_id`` names the bootstrap and its data window, and its
``extra`` says ``"bootstrap": true``. Idempotent: when the registry already names a model the
sidecar would serve (``Registry.champion``, the sidecar's rule), it is reused and nothing is
trained. Local stack only.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from velocast.data.normalize import normalize
from velocast.errors import ConfigurationError, RequestError
from velocast.gcp.clients import storage_client
from velocast.local.replay.data import default_data_path, weeks_to_reach_yesterday
from velocast.ml.evaluation import TARGET_COLUMN, TIME_COLUMN, Metrics, evaluate
from velocast.ml.models import DEFAULT_MODEL_TYPE, build_model
from velocast.ml.registry import Registry
from velocast.ml.registry_entries import DataWindow, EntryMetrics, RegistryEntry, SplitMetrics
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

DEFAULT_WEEKS: Final = 4
MODEL_PREFIX: Final = "models/bootstrap"
RUN_ID_PREFIX: Final = "bootstrap"
_HELD_OUT: Final = pd.Timedelta(days=7)


@dataclass(frozen=True)
class BootstrappedChampion:
    """The champion the sidecar serves; ``created`` is False when an existing one was reused."""

    entry: RegistryEntry
    created: bool
    seconds: float


def served_shift_weeks(settings: VelocastSettings, last: datetime) -> int:
    """The whole weeks the replay adds to the packaged dates: the running replay's own answer,
    else the rule it applies at start (``replay_shift_weeks``, or the data ending yesterday)."""
    url = f"http://{settings.local_host}:{settings.replay_port}/health"
    try:
        return int(httpx.get(url, timeout=2.0).json()["shift_weeks"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        if settings.replay_shift_weeks is not None:
            return settings.replay_shift_weeks
        return weeks_to_reach_yesterday(last, datetime.now(UTC))


def shipped_counts(
    settings: VelocastSettings, weeks: int, data_path: Path | None = None, *, now: datetime | None = None
) -> pd.DataFrame:
    """The last ``weeks`` weeks of packaged counts the replay has published by ``now``, dated as it
    serves them, normalized."""
    path = data_path if data_path is not None else default_data_path()
    dates = pq.read_table(path, columns=["date"]).column("date")
    last = pd.Timestamp(pc.max(dates).as_py())
    shift = pd.Timedelta(weeks=served_shift_weeks(settings, last.to_pydatetime()))
    # The replay publishes the hours that have ended only, and its shift may date the file's end
    # up to a week ahead: train on what DAG 1 can have ingested.
    published_until = pd.Timestamp(now if now is not None else datetime.now(UTC)) - pd.Timedelta(hours=1)
    end = min(last + shift, published_until) - shift  # in the file's own dates
    start = end - pd.Timedelta(weeks=weeks)
    window = [("date", ">", start.to_pydatetime()), ("date", "<=", end.to_pydatetime())]
    raw = pq.read_table(path, filters=window).to_pandas()
    if raw.empty:
        raise RequestError(f"{path} holds no counts the replay has published in the {weeks} weeks to {end}")
    raw["date"] = raw["date"] + shift
    result = normalize(raw)
    if not result.rejected.empty:
        log.warning("bootstrap: %d rows of %s rejected by normalize", len(result.rejected), path)
    return result.frame


def _split(metrics: Metrics) -> SplitMetrics:
    return SplitMetrics(r2=metrics.r2, rmse=metrics.rmse, mae=metrics.mae)


def bootstrap_champion(
    settings: VelocastSettings,
    *,
    weeks: int = DEFAULT_WEEKS,
    model_type: str = DEFAULT_MODEL_TYPE,
    hyperparams: dict[str, Any] | None = None,
    data_path: Path | None = None,
    registry: Registry | None = None,
) -> BootstrappedChampion:
    """The champion of ``settings.serving_env``: the registry's, or one trained now (module docstring)."""
    started = time.perf_counter()
    if settings.env != "local":
        raise ConfigurationError(
            f"bootstrap_champion is for the local stack, not VELOCAST_ENV={settings.env}"
        )
    if weeks < 2:
        raise RequestError(f"weeks must be at least 2 (one to fit on, one held out), got {weeks}")
    registry = registry if registry is not None else Registry(settings)
    env = settings.serving_env
    existing = registry.champion(env, model_type)
    if existing is not None:
        log.info("%s: reusing %s run %s as champion", env, existing.model_type, existing.run_id)
        return BootstrappedChampion(existing, created=False, seconds=time.perf_counter() - started)

    frame = shipped_counts(settings, weeks, data_path)
    held_out_from = frame[TIME_COLUMN].max() - _HELD_OUT
    train = frame[frame[TIME_COLUMN] <= held_out_from]
    test = frame[frame[TIME_COLUMN] > held_out_from]
    model = build_model(model_type, hyperparams).fit(train.reset_index(drop=True))
    held_out = evaluate(model, test.reset_index(drop=True), TARGET_COLUMN)
    first, last = train[TIME_COLUMN].min(), train[TIME_COLUMN].max()
    run_id = f"{RUN_ID_PREFIX}-{model_type}-{first:%Y%m%dT%H}-{last:%Y%m%dT%H}"

    object_name = f"{MODEL_PREFIX}/{run_id}.joblib"
    with tempfile.TemporaryDirectory(prefix="velocast-bootstrap-") as folder:
        path = model.save(Path(folder) / "model.joblib")
        storage_client(settings).bucket(settings.bucket).blob(object_name).upload_from_filename(str(path))
    split = _split(held_out)
    entry = registry.add_entry(
        env,
        RegistryEntry(
            run_id=run_id,
            model_uri=f"gs://{settings.bucket}/{object_name}",
            model_type=model.model_type,
            metrics=EntryMetrics(test_baseline=split, test_current=split),
            data_window=DataWindow(start=first.to_pydatetime(), end=last.to_pydatetime()),
            extra={
                "bootstrap": True,
                "source": "velocast.local.data/bike_counts.parquet (Ville de Paris, ODbL)",
                "hyperparams": model.hyperparams,
                "train_rows": len(train),
                "held_out_rows": held_out.n_rows,
                "held_out_window": {
                    "start": test[TIME_COLUMN].min().isoformat(),
                    "end": test[TIME_COLUMN].max().isoformat(),
                },
            },
        ),
    )
    champion = registry.promote(env, entry.model_type, entry.run_id).champion
    seconds = time.perf_counter() - started
    log.info(
        "%s: bootstrapped %s champion %s (held-out R² %.3f) in %.1f s",
        env,
        model_type,
        run_id,
        held_out.r2,
        seconds,
    )
    return BootstrappedChampion(champion, created=True, seconds=seconds)


__all__ = [
    "DEFAULT_WEEKS",
    "BootstrappedChampion",
    "bootstrap_champion",
    "served_shift_weeks",
    "shipped_counts",
]
