from __future__ import annotations

import pytest
from pydantic import ValidationError

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
