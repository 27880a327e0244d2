"""Fixtures of the serving tests: real hgb models on a real data slice, in the GCS emulator.

Two small models are trained once per session on 10 counters × 8 weeks of the regine_nj parquet
(the City's counts), saved with ``VelocastModel.save`` and uploaded to the GCS emulator of the
local stack. Each test module (or test) gets its own ``registry_object``, so tests never see each
other's registry entries.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from velocast_serving.main import create_app
from velocast_serving.model_store import ModelStore

from velocast.data.normalize import normalize
from velocast.data.readers import read_source
from velocast.gcp.clients import storage_client
from velocast.local.stack import LocalStack
from velocast.ml.model_base import VelocastModel
from velocast.ml.models import build_model
from velocast.ml.registry import Registry
from velocast.ml.registry_entries import RegistryEntry
from velocast.settings import VelocastSettings

SOURCE = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "paris_bike_counts"
    / "regine_nj_projetvelo"
    / "dataset_projet_velo.parquet"
)
COUNTERS = 10
ADMIN_KEY = "test-admin-key-5f0c2a9e7b1d4c38"
PREDICT_KEY = "test-predict-key-9a41c7e2d0b65f13"
ADMIN = {"X-API-Key": ADMIN_KEY}
PREDICT = {"X-API-Key": PREDICT_KEY}


@dataclass(frozen=True)
class Artifacts:
    """The data slice, two fitted models and their gs:// copies (plus a corrupt one)."""

    frame: pd.DataFrame
    counters: tuple[str, ...]
    model_a: VelocastModel
    model_b: VelocastModel
    path_a: Path
    uri_a: str
    uri_b: str
    uri_corrupt: str


@pytest.fixture(scope="session")
def bike_frame() -> pd.DataFrame:
    """10 counters × 8 weeks (2024-01-01 → 02-25, local time) of real counts, normalized."""
    raw = read_source(SOURCE)
    counters = sorted(raw["id_compteur"].dropna().unique())[:COUNTERS]
    in_window = (raw["annee_comptage"] == 2024) & (
        (raw["mois_comptage"] == 1) | ((raw["mois_comptage"] == 2) & (raw["jour_comptage"] <= 25))
    )
    result = normalize(raw[raw["id_compteur"].isin(counters) & in_window])
    assert result.rejected.empty
    return result.frame.reset_index(drop=True)


@pytest.fixture(scope="session")
def artifacts(
    local_stack: LocalStack, settings: VelocastSettings, bike_frame: pd.DataFrame, tmp_path_factory: Any
) -> Artifacts:
    folder: Path = tmp_path_factory.mktemp("models")
    model_a = build_model("hgb", {"max_iter": 30}).fit(bike_frame)
    model_b = build_model("hgb", {"max_iter": 60, "learning_rate": 0.2}).fit(bike_frame)
    path_a = model_a.save(folder / "model_a.joblib")
    path_b = model_b.save(folder / "model_b.joblib")
    bucket = storage_client(settings).bucket(settings.bucket)
    prefix = f"tests/serving/{uuid.uuid4().hex}"
    bucket.blob(f"{prefix}/model_a.joblib").upload_from_filename(str(path_a))
    bucket.blob(f"{prefix}/model_b.joblib").upload_from_filename(str(path_b))
    # A truncated upload: the kind of damage a corrupt champion file has.
    bucket.blob(f"{prefix}/corrupt.joblib").upload_from_string(path_b.read_bytes()[:5000])
    return Artifacts(
        frame=bike_frame,
        counters=tuple(sorted(bike_frame["counter_id"].unique())),
        model_a=model_a,
        model_b=model_b,
        path_a=path_a,
        uri_a=f"gs://{settings.bucket}/{prefix}/model_a.joblib",
        uri_b=f"gs://{settings.bucket}/{prefix}/model_b.joblib",
        uri_corrupt=f"gs://{settings.bucket}/{prefix}/corrupt.joblib",
    )


def serving_settings(settings: VelocastSettings, **overrides: Any) -> VelocastSettings:
    """``settings`` with a fresh registry object, test keys and a fast reload."""
    values: dict[str, Any] = {
        "registry_object": f"tests/{uuid.uuid4().hex}/summary.json",
        "serving_env": "dev",
        "serving_admin_api_key": SecretStr(ADMIN_KEY),
        "serving_predict_api_keys": [SecretStr(PREDICT_KEY)],
        "serving_local_dev": False,
        "serving_reload_interval_seconds": 0.2,
        # Training jobs of this app only (the lock and counts are per folder).
        "serving_jobs_dir": Path(tempfile.mkdtemp(prefix="velocast-jobs-")),
    }
    values.update(overrides)
    return settings.model_copy(update=values)


def entry(
    run_id: str, uri: str, r2: float = 0.80, *, model_type: str = "hgb", **fields: Any
) -> RegistryEntry:
    return RegistryEntry(
        run_id=run_id,
        model_uri=uri,
        model_type=model_type,
        metrics={
            "test_baseline": {"r2": r2, "rmse": 40.0, "mae": 25.0},
            "test_current": {"r2": r2, "rmse": 42.0, "mae": 26.0},
        },
        data_window={"start": "2024-01-01T00:00:00Z", "end": "2024-02-25T23:00:00Z"},
        created_at=datetime(2024, 3, 1, tzinfo=UTC),
        **fields,
    )


@dataclass
class Served:
    """A registry of its own with model A as dev champion, and an app serving it."""

    settings: VelocastSettings
    registry: Registry
    artifacts: Artifacts
    client: TestClient


def cancel_running_job(client: TestClient) -> None:
    """A training job a test started outlives the app (its own session): stop it with the test."""
    jobs = client.app.state.context.jobs
    running = jobs.current()
    if running is not None:
        jobs.cancel(running["job_id"])


@pytest.fixture(scope="module")
def module_settings(local_stack: LocalStack, settings: VelocastSettings) -> VelocastSettings:
    return serving_settings(settings)


def champion_registry(settings: VelocastSettings, artifacts: Artifacts) -> Registry:
    """A: dev champion (R² 0.80); B: registered, better R² (0.85), not champion."""
    registry = Registry(settings)
    registry.add_entry("dev", entry("run-a", artifacts.uri_a, 0.80))
    registry.add_entry("dev", entry("run-b", artifacts.uri_b, 0.85))
    registry.promote("dev", "hgb", "run-a")
    return registry


@pytest.fixture(scope="module")
def served(module_settings: VelocastSettings, artifacts: Artifacts) -> Iterator[Served]:
    """Module-wide app on model A: tests that change the registry use ``fresh_app`` instead."""
    registry = champion_registry(module_settings, artifacts)
    with TestClient(create_app(module_settings)) as client:
        yield Served(module_settings, registry, artifacts, client)
        cancel_running_job(client)


@pytest.fixture
def fresh_app(
    local_stack: LocalStack, settings: VelocastSettings
) -> Iterator[Callable[..., tuple[TestClient, VelocastSettings]]]:
    """Builds apps on fresh registry objects; closes them at the end of the test."""
    clients: list[TestClient] = []

    def build(
        setup: Callable[[Registry], object] | None = None, store: ModelStore | None = None, **overrides: Any
    ) -> tuple[TestClient, VelocastSettings]:
        test_settings = serving_settings(settings, **overrides)
        if setup is not None:
            setup(Registry(test_settings))
        client = TestClient(create_app(test_settings, model_store=store))
        client.__enter__()
        clients.append(client)
        return client, test_settings

    yield build
    for client in clients:
        cancel_running_job(client)
        client.__exit__(None, None, None)


def _api_record(counter_id: str, at: pd.Timestamp) -> dict[str, Any]:
    """A Paris Explore API v2.1 record (the count is unknown: it is what we predict)."""
    return {
        "id_compteur": counter_id,
        "nom_compteur": f"compteur {counter_id}",
        "id": counter_id.split("-", maxsplit=1)[0],
        "name": "site",
        "sum_counts": None,
        "date": at.isoformat(),
        "coordinates": {"lon": 2.33314, "lat": 48.83504},
    }


def _normalized_record(counter_id: str, at: pd.Timestamp) -> dict[str, Any]:
    return {
        "counter_id": counter_id,
        "counted_at": at.isoformat(),
        "latitude": 48.83504,
        "longitude": 2.33314,
    }


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@dataclass(frozen=True)
class Kit:
    """Helpers and constants for the test modules (which do not import conftest)."""

    admin: dict[str, str]
    predict: dict[str, str]
    admin_key: str
    predict_key: str
    entry: Callable[..., RegistryEntry]
    settings_for: Callable[..., VelocastSettings]
    api_record: Callable[[str, pd.Timestamp], dict[str, Any]]
    normalized_record: Callable[[str, pd.Timestamp], dict[str, Any]]
    wait_for: Callable[..., bool]
    champion_registry: Callable[[VelocastSettings, Artifacts], Registry]
    cancel_running_job: Callable[[TestClient], None]


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit(
        admin=ADMIN,
        predict=PREDICT,
        admin_key=ADMIN_KEY,
        predict_key=PREDICT_KEY,
        entry=entry,
        settings_for=serving_settings,
        api_record=_api_record,
        normalized_record=_normalized_record,
        wait_for=_wait_for,
        champion_registry=champion_registry,
        cancel_running_job=cancel_running_job,
    )
