"""Every table contract loads, and its partitioning, clustering and keys name real columns."""

from __future__ import annotations

import pytest

from velocast.contract import ALL_TABLES, load_contract
from velocast.settings import VelocastSettings

BIGQUERY_TYPES = {"STRING", "INT64", "FLOAT64", "BOOL", "DATE", "TIMESTAMP", "JSON", "NUMERIC"}


@pytest.mark.parametrize("name", ALL_TABLES)
def test_contract_is_self_consistent(name: str) -> None:
    contract = load_contract(name)
    columns = set(contract.column_names)
    assert contract.table == name
    assert len(columns) == len(contract.columns), "duplicate column names"
    assert contract.partition_field in columns
    assert contract.column(contract.partition_field).type in {"DATE", "TIMESTAMP"}
    assert set(contract.clustering) <= columns
    assert set(contract.primary_key) <= columns
    for column in contract.primary_key:
        assert contract.column(column).required, f"key column {column} must be REQUIRED"
    for column in contract.columns:
        assert column.type in BIGQUERY_TYPES, column
        assert column.mode in {"REQUIRED", "NULLABLE"}, column
        assert column.description, f"{name}.{column.name} has no description"


def test_every_contract_dataset_maps_to_a_configured_dataset() -> None:
    settings = VelocastSettings()
    datasets = {
        "raw": settings.raw_dataset,
        "predictions": settings.predictions_dataset,
        "audit": settings.audit_dataset,
    }
    assert {load_contract(name).dataset for name in ALL_TABLES} == set(datasets)
    assert settings.predictions_table_id.endswith("bike_traffic_predictions.hourly_predictions")
    assert settings.decisions_table_id.endswith("monitoring_audit.model_decisions")
