"""POST /promote_champion and GET /model_summary: promotion, hot reload, a broken registry or champion."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.serving.api import predict_calls
from velocast.gcp.clients import storage_client
from velocast.ml.registry import Registry

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
    assert body["serving"] == {"model_type": "hgb", "run_id": "run-b", "error": None}

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
    error = ready.json()["errors"]["hgb"]
    assert "run 'run-bad'" in error and artifacts.uri_corrupt in error
    assert _served_run(client, kit, artifacts) == "run-a"
    summary = client.get("/model_summary", headers=kit.admin).json()
    assert summary["loaded"]["hgb"]["run_id"] == "run-a" and "run-bad" in summary["errors"]["hgb"]
    metrics = client.get("/metrics").text
    assert 'velocast_serving_model_reloads_total{model_type="hgb",result="failure"}' in metrics

    # Through the API the admin sees at once that the promotion does not serve.
    via_api = client.post(
        "/promote_champion", json={"model_type": "hgb", "run_id": "run-bad"}, headers=kit.admin
    )
    assert via_api.status_code == 200
    assert via_api.json()["serving"]["run_id"] == "run-a" and via_api.json()["serving"]["error"]

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
    assert ready.status_code == 503 and "is not valid JSON" in ready.json()["reason"]
    summary = client.get("/model_summary", headers=kit.predict)
    assert summary.status_code == 503 and "registry unavailable" in summary.json()["detail"]
    promote = client.post("/promote_champion", json={"model_type": "hgb", "run_id": "x"}, headers=kit.admin)
    assert promote.status_code == 503
