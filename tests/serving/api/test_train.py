"""``POST /train``, ``GET /train/{id}`` and ``POST /evaluate`` on real data, MLflow and the emulators.

Real counts of 10 counters, 2024-01-01 → 02-25: the first 6 weeks are the baseline (its last 20 %
is test_baseline), the last 2 weeks the "current" window, sent as rows or loaded into a BigQuery
table of their own and referenced by a window (what DAG 3 sends). Jobs run as real child
processes started by the app; MLflow is the real server of the test stack.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from velocast_serving import evaluations
from velocast_serving.main import create_app

from velocast.contract import RAW_COUNTS, load_contract
from velocast.data.readers import frame_to_json_lines
from velocast.gcp.clients import storage_client
from velocast.gcp.storage import Storage
from velocast.gcp.warehouse import Warehouse, contract_frame
from velocast.ml.reference_data import Baseline, BaselineLocation, write_baseline
from velocast.ml.registry import Registry
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]

FAST = {"max_iter": 40}
JOB_TIMEOUT = 240.0


@dataclass(frozen=True)
class TrainKit:
    settings: VelocastSettings
    client: TestClient
    data_source: str
    current_rows: list[dict[str, Any]]
    current_start: pd.Timestamp
    current_end: pd.Timestamp


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [json.loads(line) for line in frame_to_json_lines(frame)]


def _load_raw_table(settings: VelocastSettings, frame: pd.DataFrame, unique: str) -> str:
    """The current rows in a raw-contract table of their own, loaded as DAG 1 loads (GCS → load job)."""
    contract = load_contract(RAW_COUNTS)
    warehouse = Warehouse(settings)
    warehouse.ensure_table(contract)  # creates the dataset too
    now = pd.Timestamp.now(tz="UTC")
    rows = contract_frame(frame, contract, ingestion_run_id="test", ingested_at=now)
    warehouse.load_frame(
        rows,
        contract,
        settings.raw_table_id,
        storage=Storage(settings),
        object_name=f"tests/train/{unique}/current.parquet",
    )
    return settings.raw_table_id


@pytest.fixture(scope="module")
def train_kit(
    settings: VelocastSettings, mlflow_server: Any, bike_frame: pd.DataFrame, kit: Any
) -> Iterator[TrainKit]:
    unique = uuid.uuid4().hex[:8]
    own = kit.settings_for(
        settings,
        registered_model_name=f"velocast-train-{unique}",
        raw_table=f"hourly_counts_train_{unique}",
    )
    frame = bike_frame.sort_values("counted_at", kind="stable").reset_index(drop=True)
    current_start = frame["counted_at"].min() + pd.Timedelta(weeks=6)
    history, current = frame[frame["counted_at"] < current_start], frame[frame["counted_at"] >= current_start]
    cut = history["counted_at"].quantile(0.8)
    baseline = Baseline(
        train=history[history["counted_at"] < cut].reset_index(drop=True),
        test=history[history["counted_at"] >= cut].reset_index(drop=True),
        dropped={},
    )
    location = BaselineLocation(bucket=own.bucket, prefix=f"tests/train-{unique}")
    write_baseline(baseline, own, location=location, source="tests")
    table_id = _load_raw_table(own, current, unique)
    with TestClient(create_app(own)) as client:
        yield TrainKit(
            settings=own,
            client=client,
            data_source=location.uri(),
            current_rows=_json_rows(current),
            current_start=current["counted_at"].min(),
            current_end=current["counted_at"].max() + pd.Timedelta(hours=1),
        )
        kit.cancel_running_job(client)
    Warehouse(own).drop_table(table_id)
    bucket = storage_client(own).bucket(own.bucket)
    for prefix in (own.registry_object, f"tests/train-{unique}/", f"tests/train/{unique}/"):
        for blob in list(bucket.list_blobs(prefix=prefix)):
            blob.delete()
    mlflow = MlflowClient(own.mlflow_tracking_uri)
    for model in mlflow.search_registered_models(f"name LIKE '{own.registered_model_name}-%'"):
        mlflow.delete_registered_model(model.name)


def wait_for_job(client: TestClient, admin: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    seen_steps: list[str] = []
    while True:
        response = client.get(f"/train/{job_id}", headers=admin)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if status["step"] and (not seen_steps or seen_steps[-1] != status["step"]):
            seen_steps.append(status["step"])
        if status["status"] in ("succeeded", "failed"):
            status["seen_steps"] = seen_steps
            return status
        assert time.monotonic() < deadline, f"job {job_id} still {status['status']} ({status['step']})"
        time.sleep(0.25)


def metric_value(client: TestClient, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


def test_train_promote_retrain_with_a_bigquery_window(train_kit: TrainKit, kit: Any) -> None:
    client, admin = train_kit.client, kit.admin
    registry = Registry(train_kit.settings)

    # 1. First model, no champion yet: rows sent in the body.
    accepted = client.post(
        "/train",
        headers=admin,
        json={
            "model_type": "hgb",
            "hyperparams": FAST,
            "data_source": train_kit.data_source,
            "current_data": train_kit.current_rows,
        },
    )
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert accepted.headers["location"] == f"/train/{job['job_id']}" == job["status_url"]
    assert job["status"] == "queued"
    assert job["request"]["current_rows"] == len(train_kit.current_rows)
    assert job["request"]["env"] == "dev"  # the environment the sidecar serves
    assert job["request"]["hyperparams"]["max_iter"] == 40  # validated, completed with defaults

    # One job at a time: the second request is refused while the first runs.
    busy = client.post(
        "/train", headers=admin, json={"model_type": "hgb", "data_source": train_kit.data_source}
    )
    assert busy.status_code == 409, busy.text
    assert job["job_id"] in busy.json()["detail"] and busy.headers["retry-after"] == "60"
    listed = client.get("/train", headers=admin).json()
    assert listed["running"] == job["job_id"]
    assert metric_value(client, "velocast_training_job_running") == 1.0

    first = wait_for_job(client, admin, job["job_id"])
    assert first["status"] == "succeeded", first["error"]
    assert first["seen_steps"][-1] == "done" and first["progress"] == 1.0
    assert {"test_baseline", "test_current"} <= set(first["metrics"])
    assert first["metrics"]["test_current"]["r2"] > 0.5
    assert first["evaluation"]["champion"] is None
    decision = first["deployment_decision"]
    assert decision["decision"] == "DEPLOY" and "champion" in decision["reason"]
    assert decision["thresholds"]["min_r2_baseline"] == pytest.approx(0.60)
    assert first["data"]["current_rows"] == len(train_kit.current_rows)
    assert first["model_uri"].startswith(f"models:/{train_kit.settings.registered_model_name}-hgb/")
    # Trained in its own process, not in this (the request-serving) one.
    assert first["request"]["model_type"] == "hgb"
    assert registry.champion("dev", "hgb") is not None  # best-metric fallback entry exists
    assert not registry.champion("dev", "hgb").is_champion  # training never promotes

    promoted = client.post(
        "/promote_champion", headers=admin, json={"model_type": "hgb", "run_id": first["run_id"]}
    )
    assert promoted.status_code == 200, promoted.text
    generation = registry.generation()

    # 2. Retrain with a BigQuery window: the champion is scored on the same frames.
    accepted = client.post(
        "/train",
        headers=admin,
        json={
            "model_type": "hgb",
            "hyperparams": FAST | {"learning_rate": 0.2},
            "data_source": train_kit.data_source,
            "current_window": {
                "start": train_kit.current_start.isoformat(),
                "end": train_kit.current_end.isoformat(),
            },
        },
    )
    assert accepted.status_code == 202, accepted.text
    second = wait_for_job(client, admin, accepted.json()["job_id"])
    assert second["status"] == "succeeded", second["error"]
    assert second["data"]["current_rows"] == len(train_kit.current_rows)  # the whole window was read
    champion_scores = second["evaluation"]["champion"]
    assert champion_scores is not None
    frames = second["evaluation"]["frames"]
    assert frames["test_current"]["n_rows"] == second["metrics"]["test_current"]["n_rows"]
    assert second["deployment_decision"]["decision"] in {"DEPLOY", "SKIP", "REJECT"}
    assert second["deployment_decision"]["metrics"]["champion_r2_test_current"] == pytest.approx(
        champion_scores["test_current"]["r2"]
    )
    # The job added an entry and changed nothing else: the champion is still the first model.
    assert registry.champion("dev", "hgb").run_id == first["run_id"]
    assert registry.generation() > generation
    assert [e.run_id for e in registry.entries("dev")] == [first["run_id"], second["run_id"]]

    assert metric_value(client, "velocast_training_jobs_total", '{status="succeeded"}') == 2.0
    assert metric_value(client, "velocast_training_job_running") == 0.0

    # 3. Evaluate: the champion by default, on test_baseline and the current rows.
    evaluated = client.post(
        "/evaluate",
        headers=admin,
        json={
            "model_type": "hgb",
            "data_source": train_kit.data_source,
            "current_data": train_kit.current_rows,
        },
    )
    assert evaluated.status_code == 200, evaluated.text
    body = evaluated.json()
    assert body["run_id"] == first["run_id"] and body["is_champion"]
    assert body["metrics"]["test_baseline"]["r2"] == pytest.approx(first["metrics"]["test_baseline"]["r2"])
    assert body["metrics"]["test_current"]["n_rows"] == len(train_kit.current_rows)
    # A named run, on the BigQuery window.
    evaluated = client.post(
        "/evaluate",
        headers=admin,
        json={
            "model_type": "hgb",
            "run_id": second["run_id"],
            "data_source": train_kit.data_source,
            "current_window": {
                "start": train_kit.current_start.isoformat(),
                "end": train_kit.current_end.isoformat(),
            },
        },
    )
    assert evaluated.status_code == 200, evaluated.text
    assert evaluated.json()["run_id"] == second["run_id"] and not evaluated.json()["is_champion"]
    assert evaluated.json()["metrics"]["test_current"]["n_rows"] == len(train_kit.current_rows)


def test_a_failed_training_reports_why_and_leaves_the_registry_alone(train_kit: TrainKit, kit: Any) -> None:
    client, admin = train_kit.client, kit.admin
    registry = Registry(train_kit.settings)
    before = (registry.generation(), registry.champion("dev", "hgb"))
    failed_before = metric_value(client, "velocast_training_jobs_total", '{status="failed"}')
    # Current rows that overlap the baseline: the evaluation would flatter the challenger.
    overlapping = train_kit.current_rows[:10] + [
        dict(row, counted_at="2024-01-10T08:00:00+00:00") for row in train_kit.current_rows[:5]
    ]
    accepted = client.post(
        "/train",
        headers=admin,
        json={"hyperparams": FAST, "data_source": train_kit.data_source, "current_data": overlapping},
    )
    assert accepted.status_code == 202, accepted.text
    status = wait_for_job(client, admin, accepted.json()["job_id"])
    assert status["status"] == "failed"
    assert status["error"]["type"] == "TrainingDataError"
    assert "not after the baseline" in status["error"]["message"]
    assert status["run_id"] is None and status["deployment_decision"] is None
    assert (registry.generation(), registry.champion("dev", "hgb")) == before
    assert metric_value(client, "velocast_training_jobs_total", '{status="failed"}') == failed_before + 1

    # An empty BigQuery window is an error that says what to do.
    accepted = client.post(
        "/train",
        headers=admin,
        json={
            "data_source": train_kit.data_source,
            "current_window": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-08T00:00:00Z"},
        },
    )
    status = wait_for_job(client, admin, accepted.json()["job_id"])
    assert status["status"] == "failed"
    assert "has no rows from 2030-01-01" in status["error"]["message"]
    assert registry.generation() == before[0]


BAD_TRAIN_BODIES = [
    ({"model_type": "xgb"}, "unknown_model_type", ["body", "model_type"]),
    ({"hyperparams": {"max_iter": -1}}, "invalid_hyperparameters", ["body", "hyperparams"]),
    ({"hyperparams": {"no_such_param": 1}}, "invalid_hyperparameters", ["body", "hyperparams"]),
    ({"env": "staging"}, "literal_error", ["body", "env"]),
    ({"test_mode": "yes"}, "bool_type", ["body", "test_mode"]),
    ({"data_source": "s3://bucket/x"}, "invalid_data_source", ["body", "data_source"]),
    ({"current_data": []}, "too_short", ["body", "current_data"]),
    (
        {
            "current_data": [{"a": 1}],
            "current_window": {"start": "2024-01-01T00:00Z", "end": "2024-01-02T00:00Z"},
        },
        "ambiguous_current_data",
        ["body"],
    ),
    ({"current_window": {"start": "2024-01-01T00:00", "end": "2024-01-02T00:00Z"}}, "timezone_aware", None),
    ({"current_window": {"start": "2024-02-01T00:00Z", "end": "2024-01-01T00:00Z"}}, "value_error", None),
    ({"current_window": {"start": "2023-01-01T00:00Z", "end": "2024-01-01T00:00Z"}}, "value_error", None),
    ({"unexpected": 1}, "extra_forbidden", ["body", "unexpected"]),
    # The resource ceiling (tests/unit/ml: every bound).
    ({"model_type": "rf", "hyperparams": {"n_estimators": 100_000}}, "invalid_hyperparameters", None),
    ({"model_type": "hgb", "hyperparams": {"max_iter": 1_000_000}}, "invalid_hyperparameters", None),
]


@pytest.mark.parametrize(("body", "error_type", "loc"), BAD_TRAIN_BODIES)
def test_bad_train_requests_are_422_and_start_nothing(
    train_kit: TrainKit, kit: Any, body: dict[str, Any], error_type: str, loc: list[str] | None
) -> None:
    jobs_before = len(train_kit.client.get("/train", headers=kit.admin).json()["jobs"])
    response = train_kit.client.post("/train", headers=kit.admin, json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["type"] == error_type and (loc is None or e["loc"] == loc) for e in errors), errors
    assert len(train_kit.client.get("/train", headers=kit.admin).json()["jobs"]) == jobs_before


def test_hyperparameters_beyond_the_resource_ceiling_are_refused_naming_the_bound(
    train_kit: TrainKit, kit: Any
) -> None:
    body = {"model_type": "rf", "hyperparams": {"n_estimators": 100_000, "max_depth": None}}
    response = train_kit.client.post("/train", headers=kit.admin, json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "hyperparams"] and error["type"] == "invalid_hyperparameters"
    assert "n_estimators: Input should be less than or equal to 100 (got 100000)" in error["msg"]
    assert "max_depth: Value error, max_depth must be an integer from 1 to 30" in error["msg"]
    # /evaluate takes the same bounded window.
    window = {"start": "2023-01-01T00:00:00Z", "end": "2023-06-01T00:00:00Z"}
    response = train_kit.client.post("/evaluate", headers=kit.admin, json={"current_window": window})
    assert response.status_code == 422, response.text
    assert "at most 92 are allowed" in response.json()["detail"][0]["msg"]


def test_evaluate_errors_are_precise(train_kit: TrainKit, kit: Any) -> None:
    client, admin = train_kit.client, kit.admin
    unknown = client.post(
        "/evaluate", headers=admin, json={"run_id": "no-such-run", "data_source": train_kit.data_source}
    )
    assert unknown.status_code == 404 and "no-such-run" in unknown.json()["detail"]
    no_champion = client.post(
        "/evaluate", headers=admin, json={"model_type": "rf", "data_source": train_kit.data_source}
    )
    assert no_champion.status_code == 404 and "no rf champion" in no_champion.json()["detail"]
    bad_env = client.post("/evaluate", headers=admin, json={"env": "qa"})
    assert bad_env.status_code == 422


def test_unknown_job_ids_are_404(train_kit: TrainKit, kit: Any) -> None:
    for job_id in ("0" * 32, "not-a-job", "..%2F..%2Fetc"):
        response = train_kit.client.get(f"/train/{job_id}", headers=kit.admin)
        assert response.status_code == 404, (job_id, response.text)


def test_jobs_run_outside_the_serving_process(train_kit: TrainKit, kit: Any) -> None:
    """The job's pid is recorded in its status file: it is not this (the app's) process."""
    jobs = train_kit.client.get("/train", headers=kit.admin).json()["jobs"]
    assert jobs, "the other tests of this module ran jobs"
    root = train_kit.settings.serving_jobs_dir
    assert root is not None
    pids = {json.loads((root / job["job_id"] / "status.json").read_text())["pid"] for job in jobs}
    assert pids and None not in pids and os.getpid() not in pids


def test_cancel_a_running_training(train_kit: TrainKit, kit: Any) -> None:
    client, admin = train_kit.client, kit.admin
    registry = Registry(train_kit.settings)
    generation = registry.generation()
    body = {"hyperparams": FAST, "data_source": train_kit.data_source, "current_data": train_kit.current_rows}
    job_id = client.post("/train", headers=admin, json=body).json()["job_id"]
    deadline = time.monotonic() + JOB_TIMEOUT
    while client.get(f"/train/{job_id}", headers=admin).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    cancelled = client.delete(f"/train/{job_id}", headers=admin)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["error"]["type"] == "Cancelled"
    assert client.get(f"/train/{job_id}", headers=admin).json()["status"] == "cancelled"
    assert registry.generation() == generation  # stopped before it registered anything
    # The lock went with the process: the next job starts (and is cancelled while queued).
    queued = client.post("/train", headers=admin, json=body)
    assert queued.status_code == 202, queued.text
    assert client.delete(f"/train/{queued.json()['job_id']}", headers=admin).json()["status"] == "cancelled"
    assert client.get("/train", headers=admin).json()["running"] is None
    assert metric_value(client, "velocast_training_jobs_total", '{status="cancelled"}') == 2.0
    # Deleting it again returns the recorded outcome.
    assert client.delete(f"/train/{job_id}", headers=admin).json()["status"] == "cancelled"


# --- /evaluate outside the serving worker ---------------------------------------------------------


@pytest.fixture
def evaluating(train_kit: TrainKit, kit: Any, artifacts: Any, fresh_app: Any) -> tuple[TestClient, Path]:
    """An app whose dev champion is model A (a gs:// file), and its jobs folder."""
    client, settings = fresh_app(setup=lambda registry: kit.champion_registry(registry.settings, artifacts))
    assert settings.serving_jobs_dir is not None
    return client, settings.serving_jobs_dir


def test_evaluate_runs_in_a_child_process(
    evaluating: tuple[TestClient, Path], train_kit: TrainKit, kit: Any
) -> None:
    client, jobs_dir = evaluating
    response = client.post("/evaluate", headers=kit.admin, json={"data_source": train_kit.data_source})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_id"] == "run-a" and body["is_champion"]
    assert body["metrics"]["test_baseline"]["n_rows"] > 0
    # Its folder (request, result, the child's log) is gone; the slot is free.
    assert not list((jobs_dir / "evaluations").iterdir())
    # What fails without data is answered at once, by the worker: unknown run, no baseline.
    unknown = client.post("/evaluate", headers=kit.admin, json={"run_id": "run-zzz"})
    assert unknown.status_code == 404 and "run-zzz" in unknown.json()["detail"]
    missing = client.post(
        "/evaluate", headers=kit.admin, json={"data_source": train_kit.data_source + "-none"}
    )
    assert missing.status_code == 422 and "test_baseline.parquet does not exist" in missing.json()["detail"]


def test_evaluate_is_one_at_a_time(
    evaluating: tuple[TestClient, Path], train_kit: TrainKit, kit: Any
) -> None:
    client, jobs_dir = evaluating
    jobs_dir.mkdir(parents=True, exist_ok=True)
    with (jobs_dir / "evaluate.lock").open("a+") as other_worker:  # another worker's evaluation
        fcntl.flock(other_worker, fcntl.LOCK_EX)
        busy = client.post("/evaluate", headers=kit.admin, json={"data_source": train_kit.data_source})
    assert busy.status_code == 409, busy.text
    assert busy.headers["retry-after"] == "30" and "one runs at a time" in busy.json()["detail"]


def test_evaluate_past_its_time_budget_is_stopped(
    evaluating: tuple[TestClient, Path], train_kit: TrainKit, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget shorter than the child's start: it is stopped, the worker answers 503 and serves on."""
    client, _ = evaluating
    monkeypatch.setattr(evaluations, "EVALUATE_TIME_BUDGET_SECONDS", 0.05)
    stopped = client.post("/evaluate", headers=kit.admin, json={"data_source": train_kit.data_source})
    assert stopped.status_code == 503, stopped.text
    assert "time budget of 0.05 s" in stopped.json()["detail"]
    record = kit.normalized_record("100003096-353242251", pd.Timestamp("2024-02-26T08:00:00Z"))
    assert client.post("/predict", headers=kit.predict, json={"records": [record]}).status_code == 200
