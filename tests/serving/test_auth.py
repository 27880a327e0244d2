"""API keys and roles on every route; the sidecar refuses to start with a weak admin key."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr
from velocast_serving.auth import InsecureSettingsError
from velocast_serving.main import create_app

pytestmark = [pytest.mark.stack]

RECORD = {"counter_id": "100003096-353242251", "counted_at": "2024-02-26T08:00:00Z"}
# A baseline location nothing writes to: jobs and evaluations started here fail fast on it.
NO_BASELINE = "gs://velocast-local/tests/no-baseline-here"
# (method, path, body, role, statuses an authorised caller gets: the route ran, auth passed)
PROTECTED = [
    ("POST", "/predict", {"records": [RECORD]}, "predict", {200}),
    ("POST", "/compat/predict", {"records": [RECORD]}, "predict", {200}),
    ("GET", "/model_summary", None, "predict", {200}),
    ("POST", "/promote_champion", {"model_type": "hgb", "run_id": "run-a", "env": "dev"}, "admin", {200}),
    # The second authorised call finds the first job running: 409.
    ("POST", "/train", {"model_type": "hgb", "data_source": NO_BASELINE}, "admin", {202, 409}),
    ("GET", "/train", None, "admin", {200}),
    ("GET", "/train/0123456789abcdef0123456789abcdef", None, "admin", {404}),
    ("DELETE", "/train/0123456789abcdef0123456789abcdef", None, "admin", {404}),
    ("POST", "/evaluate", {"model_type": "hgb", "data_source": NO_BASELINE}, "admin", {422}),
]
OPEN = ["/health", "/ready", "/metrics", "/openapi.json"]


@pytest.mark.parametrize(
    ("method", "path", "body", "role", "authorised"), PROTECTED, ids=[f"{p[0]} {p[1]}" for p in PROTECTED]
)
def test_keys_and_roles(served, kit, method, path, body, role, authorised):
    def call(headers: dict[str, Any]) -> Any:
        return served.client.request(method, path, json=body, headers=headers)

    missing = call({})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in missing.json()["detail"]
    assert call({"X-API-Key": "not-a-key"}).status_code == 401
    assert call({"Authorization": "Bearer not-a-key"}).status_code == 401
    assert call({"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    # A header value outside ASCII must be a 401, not a TypeError in compare_digest.
    assert call({"X-API-Key": "clé-é".encode("latin-1")}).status_code == 401

    as_predict = call(kit.predict)
    as_admin = call(kit.admin)
    bearer_admin = call({"Authorization": f"Bearer {kit.admin_key}"})
    assert as_admin.status_code in authorised, as_admin.text
    assert bearer_admin.status_code in authorised, bearer_admin.text
    if role == "admin":
        assert as_predict.status_code == 403
        assert as_predict.json()["detail"] == "this route needs the admin role"
    else:
        assert as_predict.status_code in authorised, as_predict.text


def test_every_route_is_covered(served):
    """A new route must be added above (or to OPEN): no route escapes the auth checks."""
    covered = {(method, path) for method, path, *_ in PROTECTED} | {("GET", path) for path in OPEN}
    templates = {
        (method, route.path.replace("{job_id}", "0123456789abcdef0123456789abcdef"))
        for route in served.client.app.routes
        for method in getattr(route, "methods", ()) or ()
        if method != "HEAD" and not route.path.startswith(("/docs", "/redoc"))
    }
    assert templates <= covered, templates - covered


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_metrics_need_no_key(served, path):
    assert served.client.get(path).status_code == 200


WEAK_KEYS = [
    None,
    "",
    "   ",
    "changeme",
    "admin",
    "secret",
    "short-key-123",
    "CHANGEME-please-0123456",
    "a" * 32,
]


@pytest.mark.parametrize("key", WEAK_KEYS)
def test_refuses_to_start_with_a_weak_admin_key(settings, kit, key):
    weak = kit.settings_for(settings, serving_admin_api_key=None if key is None else SecretStr(key))
    with pytest.raises(InsecureSettingsError, match="refusing to start: the admin API key"):
        create_app(weak)
    # Local development only: the same key is tolerated.
    create_app(weak.model_copy(update={"serving_local_dev": True}))


def test_refuses_a_predict_key_equal_to_the_admin_key(settings, kit):
    same = kit.settings_for(settings, serving_predict_api_keys=[SecretStr(kit.admin_key)])
    with pytest.raises(InsecureSettingsError, match="equals the admin API key"):
        create_app(same)


def test_local_dev_without_admin_key_disables_the_admin_role(fresh_app, kit):
    client, _ = fresh_app(serving_admin_api_key=None, serving_local_dev=True)
    body = {"model_type": "hgb", "run_id": "run-a"}
    assert client.post("/promote_champion", json=body, headers={"X-API-Key": ""}).status_code == 401
    assert client.post("/promote_champion", json=body, headers=kit.admin).status_code == 401
    assert client.post("/promote_champion", json=body, headers=kit.predict).status_code == 403


@pytest.mark.parametrize("key", [key for key in WEAK_KEYS if key is not None])
def test_refuses_to_start_with_a_weak_predict_key(settings, kit, key):
    """Predict keys follow the admin key's rule: a guessable one opens /predict to anyone."""
    weak = kit.settings_for(settings, serving_predict_api_keys=[SecretStr(kit.predict_key), SecretStr(key)])
    with pytest.raises(InsecureSettingsError, match=r"refusing to start: predict API key #2"):
        create_app(weak)
    create_app(weak.model_copy(update={"serving_local_dev": True}))


def test_strong_predict_keys_and_none_at_all_start(settings, kit):
    create_app(kit.settings_for(settings, serving_predict_api_keys=[]))
    strong = [SecretStr(kit.predict_key), SecretStr("another-predict-key-2c8e51a0f7")]
    create_app(kit.settings_for(settings, serving_predict_api_keys=strong))
