"""POST /promote_champion and GET /model_summary: promotion, hot reload, a broken registry or champion."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from tests.serving.api import predict_calls
from velocast.gcp.clients import storage_client
from velocast.ml.evaluation import double_evaluate
from velocast.ml.registry import Registry
from velocast.ml.registry_entries import RegistryEntry
from velocast.ml.tracking import Tracker

pytestmark = [pytest.mark.stack]


def _served_run(client: TestClient, kit: Any, artifacts: Any) -> str:
    return str(
        predict_calls.predict(client, kit, predict_calls.records(artifacts, kit, 1))["champion"]["run_id"]
    )


def test_promote_through_the_api_then_the_new_champion_serves(fresh_app, kit, artifacts):
    client, _ = fresh_app(lambda registry: kit.champion_registry(registry.settings, artifacts))
    records = predict_calls.records(artifacts, kit)
    before = predict_calls.predict(client, kit, records)
    assert before["champion"]["run_id"] == "run-a"

    response = client.post(
        "/promote_champion", json={"model_type": "hgb", "run_id": "run-b", "env": "dev"}, headers=kit.admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "promoted" and "replacing run 'run-a'" in body["message"]
    assert body["previous_champion"]["run_id"] == "run-a"
    assert body["previous_champion"]["is_champion"] is False
    assert body["champion"]["run_id"] == "run-b" and body["champion"]["is_champion"] is True
    assert body["serving"] == {"model_type": "hgb", "run_id": "run-b", "error": None, "reason": None}
    # Who, when, through what: recorded on the entry and returned; a gs:// model has no MLflow alias.
    assert body["promotion"]["by"] == "admin API key" and body["promotion"]["via"] == "api"
    assert body["promotion"]["override_rejection"] is False
    assert body["promotion"]["previous_champion_run_id"] == "run-a"
    assert body["champion"]["promotions"][-1] == body["promotion"]
    assert body["alias"]["status"] == "not_applicable" and body["alias"]["alias"] == "champion-dev"

    # This worker reloaded before answering: the very next request is served by B.
    after = predict_calls.predict(client, kit, records)
    assert after["champion"]["run_id"] == "run-b"
    frame = pd.DataFrame(
        {
            "counter_id": pd.array([r["counter_id"] for r in records], dtype="string"),
            "counted_at": pd.to_datetime([r["counted_at"] for r in records], utc=True),
        }
    )
    values = [p["predicted_count"] for p in after["predictions"]]
    np.testing.assert_allclose(values, artifacts.model_b.predict(frame))
    assert not np.allclose(values, [p["predicted_count"] for p in before["predictions"]])

    again = client.post("/promote_champion", json={"model_type": "hgb", "run_id": "run-b"}, headers=kit.admin)
    assert again.status_code == 200 and again.json()["status"] == "already_champion"
    assert again.json()["promotion"] is None
    summary = client.get("/model_summary", headers=kit.admin).json()
    assert {e["run_id"]: e["is_champion"] for e in summary["entries"]} == {"run-a": False, "run-b": True}
    assert summary["loaded"]["hgb"]["run_id"] == "run-b" and summary["default_model_type"] == "hgb"


def test_promotion_errors_are_client_errors(fresh_app, kit, artifacts):
    def setup(registry: Registry) -> None:
        kit.champion_registry(registry.settings, artifacts)
        registry.add_entry("prod", kit.entry("run-sample", artifacts.uri_a, test_mode=True))
        registry.add_entry("prod", kit.entry("run-full", artifacts.uri_a))

    client, _ = fresh_app(setup)

    def promote(**body: Any) -> Any:
        return client.post("/promote_champion", json=body, headers=kit.admin)

    unknown = promote(model_type="hgb", run_id="run-zzz", env="dev")
    assert unknown.status_code == 404 and "no 'hgb' entry with run_id 'run-zzz'" in unknown.json()["detail"]
    test_mode = promote(model_type="hgb", run_id="run-sample", env="prod")
    assert test_mode.status_code == 409 and "test mode" in test_mode.json()["detail"]
    bad_env = promote(model_type="hgb", run_id="run-b", env="staging")
    assert bad_env.status_code == 422 and "unknown registry environment" in bad_env.json()["detail"]
    bad_type = promote(model_type="xgb", run_id="run-b")
    assert bad_type.status_code == 422 and "unknown model type" in bad_type.json()["detail"][0]["msg"]
    assert promote(run_id="run-b").status_code == 422

    # Another environment's promotion does not touch what this (dev) sidecar serves.
    prod = promote(model_type="hgb", run_id="run-full", env="PROD")
    assert prod.status_code == 200 and prod.json()["env"] == "prod" and prod.json()["serving"] is None
    assert _served_run(client, kit, artifacts) == "run-a"


def test_a_corrupt_champion_leaves_the_previous_one_serving(fresh_app, kit, artifacts):
    def setup(registry: Registry) -> None:
        kit.champion_registry(registry.settings, artifacts)
        registry.add_entry("dev", kit.entry("run-bad", artifacts.uri_corrupt, 0.9))

    client, settings = fresh_app(setup)
    assert _served_run(client, kit, artifacts) == "run-a"
    registry = Registry(settings)

    registry.promote("dev", "hgb", "run-bad")  # as DAG 3 would: the poller picks it up
    assert kit.wait_for(lambda: "hgb" in client.get("/ready").json()["errors"], timeout=10)
    ready = client.get("/ready")
    assert ready.status_code == 200  # still serving A
    assert ready.json()["champions"] == {"hgb": "run-a"}
    assert ready.json()["errors"]["hgb"] == "model_load_failed"  # details: /model_summary
    assert _served_run(client, kit, artifacts) == "run-a"
    summary = client.get("/model_summary", headers=kit.admin).json()
    assert summary["loaded"]["hgb"]["run_id"] == "run-a" and "run-bad" in summary["errors"]["hgb"]
    assert artifacts.uri_corrupt in summary["errors"]["hgb"]
    metrics = client.get("/metrics").text
    assert 'velocast_serving_model_reloads_total{model_type="hgb",result="failure"}' in metrics

    # Through the API the admin sees at once that the promotion does not serve.
    via_api = client.post(
        "/promote_champion", json={"model_type": "hgb", "run_id": "run-bad"}, headers=kit.admin
    )
    assert via_api.status_code == 200
    assert via_api.json()["serving"]["run_id"] == "run-a" and via_api.json()["serving"]["error"]
    assert via_api.json()["serving"]["reason"] == "model_load_failed"

    # A good champion clears the error.
    registry.promote("dev", "hgb", "run-b")
    assert kit.wait_for(lambda: client.get("/ready").json()["champions"] == {"hgb": "run-b"}, timeout=10)
    assert client.get("/ready").json()["errors"] == {}


def test_an_unreadable_registry_is_reported(fresh_app, kit, artifacts, settings):
    client, test_settings = fresh_app()
    bucket = storage_client(test_settings).bucket(test_settings.bucket)
    bucket.blob(test_settings.registry_object).upload_from_string(b"{not json")
    assert kit.wait_for(lambda: "registry" in client.get("/ready").json()["errors"], timeout=10)
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["reason"] == "registry_unavailable"
    summary = client.get("/model_summary", headers=kit.predict)
    assert summary.status_code == 503 and "registry unavailable" in summary.json()["detail"]
    promote = client.post("/promote_champion", json={"model_type": "hgb", "run_id": "x"}, headers=kit.admin)
    assert promote.status_code == 503


# --- REJECTed models ------------------------------------------------------------------------------

FORGOT_THE_REFERENCE = "REJECT: challenger 'hgb' R² on test_baseline is 0.2000, below the minimum 0.6000."


def _forgetful(kit: Any, run_id: str, uri: str) -> RegistryEntry:
    """A challenger that forgot the reference period: R² 0.20 on test_baseline, 0.90 on test_current."""
    challenger = kit.entry(
        run_id, uri, 0.90, extra={"decision": "REJECT", "decision_reason": FORGOT_THE_REFERENCE}
    )
    baseline = challenger.metrics.test_baseline.model_copy(update={"r2": 0.20})
    metrics = challenger.metrics.model_copy(update={"test_baseline": baseline})
    return challenger.model_copy(update={"metrics": metrics})  # type: ignore[no-any-return]


def test_a_rejected_model_serves_only_after_an_explained_override(fresh_app, kit, artifacts):
    def setup(registry: Registry) -> None:
        registry.add_entry("dev", _forgetful(kit, "run-forgot", artifacts.uri_b))
        registry.add_entry("dev", kit.entry("run-low", artifacts.uri_a, 0.5, extra={"decision": "REJECT"}))

    client, settings = fresh_app(setup)

    def promote(**body: Any) -> Any:
        return client.post("/promote_champion", json={"model_type": "hgb"} | body, headers=kit.admin)

    # Only REJECTed models: nothing serves, and /ready says why with a code.
    assert kit.wait_for(lambda: client.get("/ready").json()["errors"] == {"hgb": "only_rejected"})
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["reason"] == "only_rejected"
    assert ready.json()["champions"] == {}

    refused = promote(run_id="run-forgot")
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "'run-forgot' has the deployment decision REJECT" in detail and FORGOT_THE_REFERENCE in detail
    assert "override_rejection" in detail
    unexplained = promote(run_id="run-forgot", override_rejection=True)
    assert unexplained.status_code == 422 and "needs a reason" in unexplained.json()["detail"][0]["msg"]
    assert promote(run_id="run-forgot", override_rejection="yes", reason="x").status_code == 422
    registry = Registry(settings)
    assert not any(e.is_champion or e.promotions for e in registry.entries("dev"))

    reason = "incident 42: test_baseline predates the new counters"
    promoted = promote(run_id="run-forgot", override_rejection=True, reason=reason, requested_by="alice")
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert "its REJECT decision overridden: incident 42" in body["message"]
    record = body["promotion"]
    assert record["override_rejection"] is True and record["decision"] == "REJECT"
    assert record["reason"] == reason and record["by"] == "alice" and record["via"] == "api"
    assert record["at"].endswith("Z") and record["previous_champion_run_id"] is None
    assert body["serving"] == {"model_type": "hgb", "run_id": "run-forgot", "error": None, "reason": None}
    assert client.get("/ready").json()["champions"] == {"hgb": "run-forgot"}
    # The override is stored on the entry in summary.json.
    stored = registry.entry("dev", "hgb", "run-forgot")
    assert stored.is_champion and [p.model_dump(mode="json") for p in stored.promotions] == [record]

    # Repeating it is a no-op; without the override the rule still holds.
    again = promote(run_id="run-forgot", override_rejection=True, reason=reason)
    assert again.status_code == 200 and again.json()["status"] == "already_champion"
    assert promote(run_id="run-forgot").status_code == 409


# --- the MLflow alias -----------------------------------------------------------------------------


@pytest.fixture
def mlflow_models(settings, mlflow_server, kit, artifacts) -> Iterator[tuple[Any, list[Any]]]:
    """Models A and B logged and registered in the stack's MLflow, under a name of their own."""
    own = kit.settings_for(settings, registered_model_name=f"velocast-admin-{uuid.uuid4().hex[:8]}")
    tracker = Tracker(own, experiment_name=f"admin-{uuid.uuid4().hex[:8]}")
    frame = artifacts.frame.tail(300)
    logged = [
        tracker.log_training(
            model,
            double_evaluate(model, None, frame, frame),
            None,
            {"rows": len(frame)},
            {"test_baseline": frame, "test_current": frame},
        )
        for model in (artifacts.model_a, artifacts.model_b)
    ]
    yield own, logged
    MlflowClient(own.mlflow_tracking_uri).delete_registered_model(logged[0].registered_name)


def test_promote_champion_moves_the_mlflow_alias(fresh_app, kit, mlflow_models):
    own, (logged_a, logged_b) = mlflow_models
    name = logged_a.registered_name

    def setup(registry: Registry) -> None:
        for logged in (logged_a, logged_b):
            entry = kit.entry(logged.run_id, logged.model_uri, 0.8, extra={"decision": "DEPLOY"})
            registry.add_entry("dev", entry)

    client, _ = fresh_app(setup, registered_model_name=own.registered_model_name)
    mlflow = MlflowClient(own.mlflow_tracking_uri)

    def alias_version() -> int:
        return int(mlflow.get_model_version_by_alias(name, "champion-dev").version)

    for logged in (logged_a, logged_b):
        response = client.post(
            "/promote_champion", json={"model_type": "hgb", "run_id": logged.run_id}, headers=kit.admin
        )
        assert response.status_code == 200, response.text
        assert alias_version() == logged.version  # the registry and MLflow agree
        alias = response.json()["alias"]
        assert alias["status"] == "moved" and alias["alias"] == "champion-dev"
        assert (alias["registered_model"], alias["version"]) == (name, logged.version)
        assert response.json()["serving"]["run_id"] == logged.run_id
    # prod has its own alias, untouched by a dev promotion.
    assert "champion" not in mlflow.get_registered_model(name).aliases


def test_with_mlflow_unreachable_nothing_is_promoted(fresh_app, kit, artifacts):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"

    def setup(registry: Registry) -> None:
        kit.champion_registry(registry.settings, artifacts)
        registry.add_entry("dev", kit.entry("run-mlflow", "models:/velocast-admin-nowhere-hgb/3", 0.9))

    client, settings = fresh_app(setup, mlflow_tracking_uri=closed)
    response = client.post(
        "/promote_champion", json={"model_type": "hgb", "run_id": "run-mlflow"}, headers=kit.admin
    )
    assert response.status_code == 503, response.text
    assert "cannot be reached" in response.json()["detail"]
    assert "nothing was promoted (the registry is unchanged)" in response.json()["detail"]
    assert Registry(settings).champion("dev", "hgb").run_id == "run-a"  # type: ignore[union-attr]
    # A model outside MLflow needs no MLflow.
    other = client.post("/promote_champion", json={"model_type": "hgb", "run_id": "run-b"}, headers=kit.admin)
    assert other.status_code == 200 and other.json()["alias"]["status"] == "not_applicable"
