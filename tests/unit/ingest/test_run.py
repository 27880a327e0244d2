"""The run context and the typed step outcomes (``velocast.ingest.run``), through Airflow's XCom serde."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from airflow.sdk.configuration import conf
from airflow.sdk.serde import deserialize, serialize

from velocast import contract
from velocast.ingest.run import (
    ExtractOutcome,
    IngestionLogRow,
    IngestionRun,
    LoadOutcome,
    TransformOutcome,
)
from velocast.ingest.window import plan_window
from velocast.settings import VelocastSettings

WINDOW = plan_window(datetime(2024, 1, 10, 1, tzinfo=UTC), trailing_days=3)
STARTED = datetime(2024, 1, 10, 1, 0, 5, tzinfo=UTC)

OUTCOMES = [
    ExtractOutcome("gs://b/staging/raw.ndjson", 7200, "exports", 1.25, STARTED),
    TransformOutcome(
        clean_uri="gs://b/staging/clean.parquet",
        quarantine_uri="gs://b/staging/quarantine.parquet",
        rows_fetched=7200,
        rows_valid=7190,
        rows_quarantined=10,
        duplicates_dropped=2,
        rejected_share=10 / 7200,
        days_with_data=(date(2024, 1, 7), date(2024, 1, 8)),
    ),
    LoadOutcome(7190, (date(2024, 1, 7), date(2024, 1, 8)), (date(2024, 1, 9),)),
    LoadOutcome(0, (), tuple(WINDOW.days)),
    IngestionLogRow(
        ingestion_run_id="scheduled__2024-01-10T01:00:00+00:00",
        logical_date=WINDOW.logical_date,
        window_start=WINDOW.start,
        window_end=WINDOW.end,
        status="success",
        source_endpoint="records",
        rows_fetched=7200,
        rows_loaded=7190,
        rows_quarantined=10,
        duplicates_dropped=2,
        rejected_share=10 / 7200,
        fetch_seconds=1.25,
        duration_seconds=9.5,
        logged_at=STARTED,
    ),
]


def through_xcom(value: object) -> Any:
    """What a downstream task receives: Airflow's serde, JSON in between as in the metadata database."""
    return deserialize(json.loads(json.dumps(serialize(value))))


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda outcome: type(outcome).__name__)
def test_outcomes_round_trip_through_xcom(outcome: object) -> None:
    back = through_xcom(outcome)
    assert type(back) is type(outcome)
    assert back == outcome


def test_outcomes_are_frozen_and_flat() -> None:
    """Flat: serde rebuilds a nested dataclass as a dict, so no outcome may hold one."""
    for outcome in OUTCOMES:
        assert dataclasses.is_dataclass(outcome) and not isinstance(outcome, type)
        first_field = dataclasses.fields(outcome)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(outcome, first_field, None)
        assert not any(dataclasses.is_dataclass(value) for value in vars(outcome).values())


def test_the_local_airflow_allows_velocast_classes_in_xcom() -> None:
    """Without it, a downstream task fails to read its input (ImportError from the allow list)."""
    assert "velocast.*" in conf.get("core", "allowed_deserialization_classes").split()


def test_log_row_has_the_columns_of_the_log_table() -> None:
    names = [field.name for field in dataclasses.fields(IngestionLogRow)]
    assert names == contract.load_contract(contract.INGESTION_LOG).column_names


def test_run_context_holds_what_every_step_needs(settings: VelocastSettings) -> None:
    run = IngestionRun(WINDOW, "manual__1", settings)
    assert (run.window, run.run_id, run.settings) == (WINDOW, "manual__1", settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.run_id = "other"  # type: ignore[misc]
