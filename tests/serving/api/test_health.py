"""GET /health (liveness), GET /ready (a champion is loaded, else 503 with the reason) and GET /metrics."""

from __future__ import annotations

import pytest

from tests.serving.api import predict_calls
from velocast.gcp.clients import storage_client
from velocast.ml.registry import Registry

pytestmark = [pytest.mark.stack]


def test_health_answers_while_nothing_is_served(fresh_app):
    client, _ = fresh_app()
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert client.get("/ready").status_code == 503


def test_ready_names_the_served_champions(served):
    ready = served.client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["champions"] == {"hgb": "run-a"}
    metrics = served.client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")


def test_not_ready_until_a_model_is_registered(fresh_app, kit, artifacts):
    client, settings = fresh_app()
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == "no_model"
    predict = client.post(
        "/predict", json={"records": predict_calls.records(artifacts, kit)}, headers=kit.predict
    )
    assert predict.status_code == 503 and "no champion is loaded" in predict.json()["detail"]
    summary = client.get("/model_summary", headers=kit.predict).json()
    assert summary["entries"] == [] and summary["loaded"] == {}

    # No champion flagged: the best R² serves (the registry's rule), picked up by the poller.
    Registry(settings).add_entry("dev", kit.entry("run-a", artifacts.uri_a, 0.7))
    assert kit.wait_for(lambda: client.get("/ready").status_code == 200, timeout=10)
    body = predict_calls.predict(client, kit, predict_calls.records(artifacts, kit))
    assert body["champion"]["run_id"] == "run-a" and body["champion"]["is_champion"] is False
    assert client.get("/ready").json()["champions"] == {"hgb": "run-a"}


def _leaks(text: str, *secrets: str) -> list[str]:
    return [secret for secret in secrets if secret in text]


def test_ready_says_codes_never_internal_details(fresh_app, kit, artifacts):
    """An open route shows the state and a reason code; the details need a key (and are logged)."""
    bucket_and_path = artifacts.uri_corrupt.removeprefix("gs://")
    client, settings = fresh_app(
        lambda registry: registry.add_entry("dev", kit.entry("run-corrupt", artifacts.uri_corrupt))
    )
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == "model_load_failed"
    assert ready.json()["errors"] == {"hgb": "model_load_failed"}
    assert _leaks(ready.text, settings.bucket, bucket_and_path, "corrupt.joblib", "run-corrupt") == []
    summary = client.get("/model_summary", headers=kit.predict).json()
    assert "corrupt.joblib" in summary["errors"]["hgb"]  # the detail, behind a key

    # A registry that cannot be read: the error names the bucket and the object.
    def damage(registry: Registry) -> None:
        bucket = storage_client(registry.settings).bucket(registry.settings.bucket)
        bucket.blob(registry.settings.registry_object).upload_from_string(b"{not json")

    unreadable, settings = fresh_app(damage)
    assert settings.registry_object in unreadable.get("/model_summary", headers=kit.predict).text
    ready = unreadable.get("/ready")
    assert ready.status_code == 503 and ready.json()["reason"] == "registry_unavailable"
    assert ready.json()["errors"] == {"registry": "registry_unavailable"}
    assert _leaks(ready.text, settings.bucket, settings.registry_object, "summary.json", "gs://") == []
