"""GET /metrics (Prometheus text) and the no-Airflow rule of the sidecar."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.stack]

FAMILIES = {
    "velocast_serving_requests",
    "velocast_serving_request_duration_seconds",
    "velocast_serving_errors",
    "velocast_serving_predictions",
    "velocast_serving_model_info",
    "velocast_serving_model_reloads",
    "velocast_serving_registry_poll_errors",
}


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metric_families(fresh_app, kit, artifacts):
    client, _ = fresh_app(lambda registry: kit.champion_registry(registry.settings, artifacts))
    records = [{"counter_id": c, "counted_at": "2024-02-26T08:00:00Z"} for c in artifacts.counters]
    for _ in range(3):
        assert client.post("/predict", json={"records": records}, headers=kit.predict).status_code == 200
    assert client.post("/predict", json={}, headers=kit.predict).status_code == 422
    assert client.post("/predict", json={}).status_code == 401
    assert client.get("/no/such/path").status_code == 404

    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert families >= FAMILIES
    samples = _samples(response.text)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    assert value("velocast_serving_requests_total", route="/predict", method="POST", status="200") == 3
    assert value("velocast_serving_errors_total", route="/predict", status="422") == 1
    assert value("velocast_serving_errors_total", route="/predict", status="401") == 1
    # Unknown paths share one label, whatever scanners try.
    assert value("velocast_serving_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert value("velocast_serving_request_duration_seconds_count", route="/predict", method="POST") == 5
    assert value("velocast_serving_predictions_total", model_type="hgb") == 3 * len(records)
    info = dict(model_type="hgb", run_id="run-a", model_uri=artifacts.uri_a, env="dev")
    assert value("velocast_serving_model_info", **info) == 1
    assert value("velocast_serving_model_reloads_total", model_type="hgb", result="success") == 1

    # A promotion swaps the info series.
    client.post("/promote_champion", json={"model_type": "hgb", "run_id": "run-b"}, headers=kit.admin)
    samples = _samples(client.get("/metrics").text)
    assert value("velocast_serving_model_info", **info) == 0  # gone
    assert (
        value("velocast_serving_model_info", **{**info, "run_id": "run-b", "model_uri": artifacts.uri_b}) == 1
    )


def test_the_app_imports_no_airflow():
    code = (
        "import sys\n"
        "from velocast.settings import VelocastSettings\n"
        "from velocast_serving.main import create_app\n"
        "create_app(VelocastSettings(serving_local_dev=True)).openapi()\n"
        "leaked = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print(leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"airflow modules imported by the sidecar: {result.stdout}{result.stderr}"
