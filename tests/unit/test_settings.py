from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError

from velocast.settings import PARIS_OPENDATA_URL, VelocastSettings


def test_local_profile_points_at_the_local_stack(monkeypatch) -> None:
    for name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "VELOCAST_OPENDATA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = VelocastSettings(env="local", gcs_emulator_port=1, bigquery_emulator_port=2, replay_port=3)
    assert settings.storage_emulator_host == "http://127.0.0.1:1"
    assert settings.bigquery_emulator_host == "http://127.0.0.1:2"
    assert settings.opendata_base_url == "http://127.0.0.1:3/api/explore/v2.1"


def test_prod_profile_uses_real_endpoints(monkeypatch) -> None:
    for name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "VELOCAST_OPENDATA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = VelocastSettings(env="prod")
    assert settings.storage_emulator_host is None
    assert settings.bigquery_emulator_host is None
    assert settings.opendata_base_url == PARIS_OPENDATA_URL
    assert not settings.uses_emulators


def test_standard_emulator_variables_are_read(monkeypatch) -> None:
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://emulator:9050")
    assert VelocastSettings().bigquery_emulator_host == "http://emulator:9050"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ingest_trailing_days", 0),
        ("max_rejected_share", 1.5),
        ("env", "staging"),
        ("http_timeout_seconds", 0),
    ],
)
def test_invalid_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        VelocastSettings(**{field: value})


def test_table_ids_are_fully_qualified() -> None:
    settings = VelocastSettings(gcp_project="p", raw_dataset="d", raw_table="t")
    assert settings.raw_table_id == "p.d.t"


def test_to_environment_rebuilds_the_same_settings(monkeypatch):
    original = VelocastSettings().model_copy(
        update={
            "registry_object": "tests/x/summary.json",
            "serving_reload_interval_seconds": 0.5,
            "serving_local_dev": True,
            "serving_admin_api_key": SecretStr("admin-key-0123456789abcdef"),
            "serving_predict_api_keys": [SecretStr("k1-0123456789"), SecretStr("k2-0123456789")],
        }
    )
    plain = original.to_environment()
    assert "VELOCAST_SERVING_ADMIN_API_KEY" not in plain
    assert "VELOCAST_SERVING_PREDICT_API_KEYS" not in plain
    for name in list(os.environ):
        if name.startswith("VELOCAST_") or name.endswith("_EMULATOR_HOST"):
            monkeypatch.delenv(name)
    for name, value in original.to_environment(include_secrets=True).items():
        monkeypatch.setenv(name, value)
    rebuilt = VelocastSettings()
    assert rebuilt.model_dump() == original.model_dump()
    assert rebuilt.serving_admin_api_key is not None
    assert rebuilt.serving_admin_api_key.get_secret_value() == "admin-key-0123456789abcdef"
    assert [key.get_secret_value() for key in rebuilt.serving_predict_api_keys] == [
        "k1-0123456789",
        "k2-0123456789",
    ]
