"""Baseline in GCS, training runs logged to MLflow, registry entries, promotion and aliases, on the
local stack (GCS emulator, MLflow server on PostgreSQL with artifacts in the emulator).

Real data: 8 counters × 10 weeks of the regine_nj export. The first 7 weeks make the baseline (its
last 20 % is test_baseline), the last 3 weeks are the "current" window sent as JSON rows, the way
DAG 3 sends them to the sidecar. Each module run uses its own registry object and registered model
names, so it neither sees nor disturbs other runs on a reused stack.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from velocast.cli.main import run_handler
from velocast.cli.ml import cmd_evaluate, cmd_promote, register
from velocast.data.normalize import normalize
from velocast.data.readers import frame_to_json_lines
from velocast.gcp.clients import storage_client
from velocast.ml.decisions import Decision, DecisionThresholds, decide
from velocast.ml.evaluation import DoubleEvaluation, evaluate
from velocast.ml.models import HistGradientBoostingModel
from velocast.ml.promotion import promote_champion
from velocast.ml.pyfunc import input_example, load_velocast_model
from velocast.ml.reference_data import (
    BaselineLocation,
    create_baseline,
    load_baseline,
    load_manifest,
    split_baseline,
)
from velocast.ml.registry import ChampionTestModeError, PromotionResult, Registry
from velocast.ml.tracking import Tracker
from velocast.ml.training import TrainingResult, run_training
from velocast.ml.training_request import TrainingDataError, TrainingRequest
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]

DATA = Path(__file__).resolve().parents[2] / "data" / "paris_bike_counts"
PARQUET = DATA / "regine_nj_projetvelo" / "dataset_projet_velo.parquet"
COUNTERS = [
    "100003096-353242251",
    "100003098-101003098",
    "100006300-101006300",
    "100007049-101007049",
    "100007049-102007049",
    "100036718-103036718",
    "100036719-103036719",
    "100044493-101044493",
]
START = pd.Timestamp("2023-02-06", tz="Europe/Paris")  # a Monday
CURRENT_START = START + pd.Timedelta(weeks=7)
END = START + pd.Timedelta(weeks=10)
# Small but real: each fit takes about a second.
FAST = {"max_iter": 60}
TIMINGS: dict[str, dict[str, float]] = {}


def local_times(raw: pd.DataFrame) -> pd.Series:
    parts = raw[["annee_comptage", "mois_comptage", "jour_comptage", "heure_comptage"]]
    parts.columns = ["year", "month", "day", "hour"]
    return pd.to_datetime(parts).dt.tz_localize("Europe/Paris", ambiguous="NaT", nonexistent="NaT")


@pytest.fixture(scope="module")
def raw_slice() -> pd.DataFrame:
    raw = pd.read_parquet(
        PARQUET,
        filters=[
            ("id_compteur", "in", COUNTERS),
            ("annee_comptage", "=", 2023),
            ("mois_comptage", "in", [2, 3, 4]),
        ],
    )
    local = local_times(raw)
    return raw[(local >= START) & (local < END)].reset_index(drop=True)


@pytest.fixture(scope="module")
def baseline_raw(raw_slice: pd.DataFrame) -> pd.DataFrame:
    return raw_slice[local_times(raw_slice) < CURRENT_START].reset_index(drop=True)


@pytest.fixture(scope="module")
def current_rows(raw_slice: pd.DataFrame) -> list[dict[str, Any]]:
    """The last 3 weeks, normalized and serialised as JSON rows (what DAG 3 sends)."""
    current = normalize(raw_slice[local_times(raw_slice) >= CURRENT_START]).frame
    return [json.loads(line) for line in frame_to_json_lines(current)]


@pytest.fixture(scope="module")
def ml_settings(settings: VelocastSettings, mlflow_server: Any) -> Iterator[VelocastSettings]:
    unique = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "registry_object": f"registry/test-{unique}/summary.json",
            "registered_model_name": f"velocast-test-{unique}",
        }
    )
    yield own
    # A reused stack keeps its state: leave no objects or registered models behind.
    bucket = storage_client(own).bucket(own.bucket)
    for prefix in (own.registry_object, f"test-data/{unique}/"):
        for blob in list(bucket.list_blobs(prefix=prefix)):
            blob.delete()
    client = MlflowClient(own.mlflow_tracking_uri)
    for model in client.search_registered_models(f"name LIKE '{own.registered_model_name}-%'"):
        client.delete_registered_model(model.name)


def module_prefix(settings: VelocastSettings) -> str:
    """A fresh folder under this module's test-data/<unique>/ (deleted at teardown)."""
    unique = settings.registered_model_name.rsplit("-", 1)[-1]
    return f"test-data/{unique}/{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def data_source(ml_settings: VelocastSettings, baseline_raw: pd.DataFrame, tmp_path_factory: Any) -> str:
    """A baseline of this module's own (the default gs://<bucket>/data is tested separately)."""
    path = tmp_path_factory.mktemp("baseline") / "export.parquet"
    baseline_raw.to_parquet(path)
    location = BaselineLocation(bucket=ml_settings.bucket, prefix=module_prefix(ml_settings))
    create_baseline(path, ml_settings, location=location)
    return location.uri()


@pytest.fixture(scope="module")
def registry(ml_settings: VelocastSettings) -> Registry:
    return Registry(ml_settings)


@pytest.fixture(scope="module")
def tracker(ml_settings: VelocastSettings) -> Tracker:
    return Tracker(ml_settings)


def timed_training(
    name: str, request: TrainingRequest, settings: VelocastSettings, **kwargs: Any
) -> TrainingResult:
    result = run_training(request, settings, **kwargs)
    TIMINGS[name] = result.timings
    return result


@pytest.fixture(scope="module")
def first(
    ml_settings: VelocastSettings, data_source: str, current_rows: list[dict[str, Any]]
) -> TrainingResult:
    steps: list[tuple[str, float]] = []
    request = TrainingRequest(
        model_type="hgb", hyperparams=FAST, env="dev", data_source=data_source, current_data=current_rows
    )
    result = timed_training(
        "first", request, ml_settings, progress=lambda step, done: steps.append((step, done))
    )
    assert steps[0][1] == 0.0 and steps[-1] == ("done", 1.0)
    return result


def promote(settings: VelocastSettings, env: str, model_type: str, run_id: str) -> PromotionResult:
    """The promotion of the API and the CLI (registry, then the MLflow alias)."""
    return promote_champion(settings, env, model_type, run_id, by="tests", via="tests").registry


@pytest.fixture(scope="module")
def promoted(first: TrainingResult, ml_settings: VelocastSettings) -> TrainingResult:
    result = promote(ml_settings, "dev", "hgb", first.run_id)
    assert result.champion.run_id == first.run_id
    return first


@pytest.fixture(scope="module")
def test_frames(ml_settings: VelocastSettings, data_source: str, current_rows: list[dict[str, Any]]) -> Any:
    _, test_baseline = load_baseline(ml_settings, data_source)
    current = normalize(pd.DataFrame(current_rows)).frame
    return test_baseline, current


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    for name, timings in TIMINGS.items():
        print(f"\n{name}: " + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in timings.items()))


# --- baseline ----------------------------------------------------------------------------------


def test_baseline_round_trip_through_gcs(
    settings: VelocastSettings, local_stack: Any, baseline_raw: pd.DataFrame, tmp_path: Path
) -> None:
    # The CSV variant (values as text) of the same rows: normalize reads both the same way.
    path = tmp_path / "export.csv"
    baseline_raw.to_csv(path, index=False, sep=";")
    manifest = create_baseline(path, settings)

    assert manifest["train_uri"] == f"gs://{settings.bucket}/data/train_baseline.parquet"
    assert manifest["test_uri"] == f"gs://{settings.bucket}/data/test_baseline.parquet"
    bucket = storage_client(settings).bucket(settings.bucket)
    assert bucket.get_blob("data/train_baseline.parquet") is not None
    assert load_manifest(settings) == manifest

    train, test = load_baseline(settings)
    expected = split_baseline(baseline_raw)
    pd.testing.assert_frame_equal(train, expected.train)
    pd.testing.assert_frame_equal(test, expected.test)
    assert train["counted_at"].max() < test["counted_at"].min()
    assert len(test) / (len(train) + len(test)) == pytest.approx(0.2, abs=0.01)
    assert train["counter_id"].nunique() == len(COUNTERS)
    assert manifest["train"]["n_rows"] == len(train) and manifest["test"]["n_rows"] == len(test)


def test_baseline_split_at_an_instant(
    ml_settings: VelocastSettings, baseline_raw: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "export.parquet"
    baseline_raw.to_parquet(path)
    location = BaselineLocation(bucket=ml_settings.bucket, prefix=module_prefix(ml_settings))
    split_at = "2023-03-20T00:00:00"  # naive: Paris wall clock
    create_baseline(path, ml_settings, split_at=split_at, location=location)
    train, test = load_baseline(ml_settings, location.uri())
    cut = pd.Timestamp(split_at, tz="Europe/Paris")
    assert train["counted_at"].max() < cut <= test["counted_at"].min()
    assert test["counted_at"].min() == cut


# --- training, promotion, loading --------------------------------------------------------------


def test_first_training_deploys_and_registers_a_non_champion(
    first: TrainingResult, ml_settings: VelocastSettings, registry: Registry, tracker: Tracker
) -> None:
    assert first.decision["decision"] == Decision.DEPLOY.value
    assert "no champion yet" in first.decision["reason"]
    assert first.evaluation["champion"] is None
    assert first.champion_run_id is None
    assert first.registered_name == f"{ml_settings.registered_model_name}-hgb"
    assert first.model_uri == f"models:/{first.registered_name}/{first.version}"
    # Sliding window: baseline train + 80 % of the current window; test_current after both.
    data = first.data
    assert data["train_rows"] > data["baseline_train_rows"]
    assert data["train_end"] < data["test_current_start"]
    assert data["test_current_rows"] < data["current_rows"] / 4

    [entry] = registry.entries("dev")
    assert entry.run_id == first.run_id and entry.model_uri == first.model_uri
    assert entry.is_champion is False and entry.test_mode is False
    assert entry.metrics.test_current.r2 == pytest.approx(first.metrics["test_current"]["r2"])
    assert entry.extra["decision"] == "DEPLOY"

    run = MlflowClient(ml_settings.mlflow_tracking_uri).get_run(first.run_id)
    metrics, params = run.data.metrics, run.data.params
    for frame in ("test_baseline", "test_current"):
        for name in ("r2", "rmse", "mae", "n_rows"):
            assert f"challenger.{frame}.{name}" in metrics
    assert metrics["challenger.test_current.r2"] == pytest.approx(first.metrics["test_current"]["r2"])
    assert not any(key.startswith("champion.") for key in metrics)
    assert params["model_type"] == "hgb" and params["max_iter"] == "60"
    assert params["data.train_rows"] == str(data["train_rows"])
    assert run.data.tags["velocast.decision"] == "DEPLOY"
    artifacts = {
        item.path
        for item in MlflowClient(ml_settings.mlflow_tracking_uri).list_artifacts(first.run_id, "plots")
    }
    assert artifacts == {"plots/predicted_vs_actual.png", "plots/error_by_hour.png"}
    # Registered without any alias: promotion is a separate step.
    version = tracker.client.get_model_version(first.registered_name, str(first.version))
    assert version.run_id == first.run_id and not version.aliases
    assert version.tags["test_mode"] == "false"


def test_promotion_sets_champion_and_alias_and_the_model_loads_by_alias(
    promoted: TrainingResult,
    ml_settings: VelocastSettings,
    registry: Registry,
    tracker: Tracker,
    test_frames: Any,
) -> None:
    champion = registry.champion("dev", "hgb")
    assert champion is not None and champion.run_id == promoted.run_id and champion.is_champion
    assert tracker.champion_version("hgb", "dev") == promoted.version
    assert tracker.champion_version("hgb", "prod") is None  # prod's alias is its own

    test_baseline, current = test_frames
    rows = pd.concat([test_baseline, current], ignore_index=True).drop(columns=["hourly_count"])
    started = time.perf_counter()
    loaded = load_velocast_model(f"models:/{promoted.registered_name}@champion-dev", settings=ml_settings)
    TIMINGS["load_by_alias"] = {"seconds": time.perf_counter() - started}
    assert isinstance(loaded, HistGradientBoostingModel)
    np.testing.assert_array_equal(loaded.predict(rows), promoted.model.predict(rows))
    by_version = load_velocast_model(promoted.model_uri, settings=ml_settings)
    np.testing.assert_array_equal(by_version.predict(rows), promoted.model.predict(rows))
    # The plain MLflow pyfunc path (ISO 8601 strings, schema enforced) agrees too.
    pyfunc = mlflow.pyfunc.load_model(f"models:/{promoted.registered_name}@champion-dev")
    example = input_example(rows, rows=200)
    np.testing.assert_allclose(pyfunc.predict(example), promoted.model.predict(rows.head(200)))

    # Promoting again is a no-op for the registry and re-applies the alias.
    again = promote(ml_settings, "DEV", "hgb", promoted.run_id)
    assert again.status == "already_champion"


def test_second_training_scores_champion_and_challenger_on_the_same_frames(
    promoted: TrainingResult,
    ml_settings: VelocastSettings,
    data_source: str,
    current_rows: list[dict[str, Any]],
    registry: Registry,
    test_frames: Any,
) -> None:
    request = TrainingRequest(
        model_type="hgb",
        hyperparams={"max_iter": 30, "learning_rate": 0.2},
        env="dev",
        data_source=data_source,
        current_data=current_rows,
    )
    second = timed_training("second", request, ml_settings)

    assert second.champion_run_id == promoted.run_id
    evaluation = DoubleEvaluation.from_dict(second.evaluation)
    assert evaluation.champion is not None
    # Same frames: the champion scores exactly what it scored as the first run's challenger.
    assert second.evaluation["frames"] == promoted.evaluation["frames"]
    assert (
        second.evaluation["champion"]["test_baseline"] == promoted.evaluation["challenger"]["test_baseline"]
    )
    assert second.evaluation["champion"]["test_current"] == promoted.evaluation["challenger"]["test_current"]
    test_baseline, _ = test_frames
    assert evaluation.champion.test_baseline.r2 == pytest.approx(evaluate(promoted.model, test_baseline).r2)
    expected = decide(evaluation, DecisionThresholds.from_settings(ml_settings))
    assert second.decision["decision"] == expected.decision.value
    assert second.decision["reason"] == expected.reason

    metrics = MlflowClient(ml_settings.mlflow_tracking_uri).get_run(second.run_id).data.metrics
    for role in ("challenger", "champion"):
        for frame in ("test_baseline", "test_current"):
            assert f"{role}.{frame}.r2" in metrics
    assert metrics["champion.test_current.r2"] == pytest.approx(promoted.metrics["test_current"]["r2"])

    entries = registry.entries("dev")
    assert [entry.run_id for entry in entries] == [promoted.run_id, second.run_id]
    assert [entry.is_champion for entry in entries] == [True, False]
    assert second.version == promoted.version + 1


def test_a_failed_training_leaves_the_registry_and_the_champion_untouched(
    promoted: TrainingResult,
    ml_settings: VelocastSettings,
    data_source: str,
    current_rows: list[dict[str, Any]],
    registry: Registry,
    tracker: Tracker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before, generation = registry.summary(), registry.generation()
    alias_before = tracker.champion_version("hgb", "dev")

    # 1. Unreadable current data (counts that are not numbers).
    broken = [row | {"hourly_count": "lots"} for row in current_rows]
    request = TrainingRequest(env="dev", data_source=data_source, current_data=broken, hyperparams=FAST)
    with pytest.raises(TrainingDataError, match="cannot be read"):
        run_training(request, ml_settings)

    # 2. A model that raises in the middle of fitting.
    def explode(self: Any, *args: Any) -> None:
        raise RuntimeError("out of memory while fitting")

    valid = TrainingRequest(env="dev", data_source=data_source, current_data=current_rows, hyperparams=FAST)
    with monkeypatch.context() as patch:
        patch.setattr(HistGradientBoostingModel, "_fit", explode)
        with pytest.raises(RuntimeError, match="out of memory"):
            run_training(valid, ml_settings)

    # 3. MLflow failing while the model is logged (the run is left FAILED, nothing registered).
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise mlflow.exceptions.MlflowException("artifact store unavailable")

    versions = tracker.client.search_model_versions(f"name = '{promoted.registered_name}'")
    started_ms = int(time.time() * 1000)
    with monkeypatch.context() as patch:
        patch.setattr(mlflow.pyfunc, "log_model", refuse)
        with pytest.raises(mlflow.exceptions.MlflowException, match="artifact store"):
            run_training(valid, ml_settings)
    failed = tracker.client.search_runs(
        [tracker.experiment_id],
        f"attributes.status = 'FAILED' and attributes.start_time >= {started_ms}",
    )
    assert failed, "the interrupted run is recorded as FAILED"
    assert len(tracker.client.search_model_versions(f"name = '{promoted.registered_name}'")) == len(versions)

    assert registry.summary() == before
    assert registry.generation() == generation
    assert tracker.champion_version("hgb", "dev") == alias_before == promoted.version


def test_a_test_mode_model_cannot_be_promoted_in_prod(
    ml_settings: VelocastSettings, data_source: str, registry: Registry, tracker: Tracker
) -> None:
    # No current data: test_current is test_baseline. "PROD": the env is case-insensitive.
    request = TrainingRequest(env="PROD", test_mode=True, data_source=data_source, hyperparams=FAST)
    result = timed_training("test_mode", request, ml_settings)
    assert result.env == "prod" and result.test_mode
    assert result.evaluation["frames"]["test_current"] == result.evaluation["frames"]["test_baseline"]
    assert result.data["current_rows"] == 0 and result.data["test_mode_train_days"] == 28

    [entry] = registry.entries("prod")
    assert entry.test_mode is True
    with pytest.raises(ChampionTestModeError):
        promote(ml_settings, "prod", "hgb", result.run_id)
    assert registry.champion("prod", "hgb") is None
    assert tracker.champion_version("hgb", "prod") is None
    version = tracker.client.get_model_version(result.registered_name, str(result.version))
    assert version.tags["test_mode"] == "true"


# --- the CLI handlers --------------------------------------------------------------------------


def run_cli(handler: Any, argv: list[str], settings: VelocastSettings) -> tuple[int, dict[str, Any]]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    with redirect_stdout(out):
        status = run_handler(handler, args, settings)
    return status, json.loads(out.getvalue())


def test_cli_evaluate_and_promote(
    promoted: TrainingResult, ml_settings: VelocastSettings, data_source: str
) -> None:
    status, output = run_cli(
        cmd_evaluate, ["evaluate", "--run-id", promoted.run_id, "--data-source", data_source], ml_settings
    )
    assert status == 0
    assert output["model_uri"] == promoted.model_uri
    assert output["test_baseline"] == promoted.metrics["test_baseline"]

    status, output = run_cli(cmd_promote, ["promote", "--model-type", "hgb", "--run-id", "nope"], ml_settings)
    assert status == 2
    assert output["type"] == "UnknownRunError"


def test_a_model_with_history_logs_its_blend_and_band_and_loads_with_them(
    ml_settings: VelocastSettings, data_source: str, current_rows: list[dict[str, Any]]
) -> None:
    request = TrainingRequest(
        model_type="hgb",
        hyperparams={**FAST, "history": True},
        env="dev",
        data_source=data_source,
        current_data=current_rows,
    )
    result = timed_training("history", request, ml_settings)
    model = result.model
    assert isinstance(model, HistGradientBoostingModel) and model.history_stage is not None
    summary = model.history_stage.summary()
    metrics = MlflowClient(ml_settings.mlflow_tracking_uri).get_run(result.run_id).data.metrics
    assert {key: metrics[f"history.{key}"] for key in summary} == pytest.approx(summary)
    assert 0.0 <= metrics["history.weight"] <= 1.0
    assert metrics["history.band_low"] < 0 < metrics["history.band_high"]
    # The registered model is the same model, history stage included.
    loaded = load_velocast_model(result.model_uri, settings=ml_settings)
    assert isinstance(loaded, HistGradientBoostingModel) and loaded.history_stage is not None
    assert loaded.history_stage.summary() == pytest.approx(summary)
