"""The MLOps exporter as a real HTTP server, reading the GCS and BigQuery emulators.

The tables live in datasets of their own (unique names) and the registry in its own object, so
that tests running at the same time on the same stack neither see nor disturb these rows.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from velocast import contract
from velocast.data.sql import date_literal, table_ref, timestamp_literal
from velocast.exporter.server import start_exporter
from velocast.gcp.storage import Storage
from velocast.gcp.warehouse import Warehouse, write_contract_parquet
from velocast.ingest.runlog import append_log_row
from velocast.ml.registry import Registry
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def isolated(local_stack: Any, settings: VelocastSettings) -> Iterator[VelocastSettings]:
    suffix = uuid.uuid4().hex[:10]
    mine = settings.model_copy(
        update={
            "raw_dataset": f"exporter_raw_{suffix}",
            "predictions_dataset": f"exporter_predictions_{suffix}",
            "audit_dataset": f"exporter_audit_{suffix}",
            "registry_object": f"tests/exporter-{suffix}/registry/summary.json",
            "staging_prefix": f"tests/exporter-{suffix}/staging",
            # Every scrape reads the sources again: the test sees its writes at once.
            "exporter_cache_seconds": 0.0,
        }
    )
    yield mine
    warehouse = Warehouse(mine)
    for dataset in (mine.raw_dataset, mine.predictions_dataset, mine.audit_dataset):
        warehouse.client.delete_dataset(
            f"{mine.gcp_project}.{dataset}", delete_contents=True, not_found_ok=True
        )
    Storage(mine).delete_prefix(f"tests/exporter-{suffix}/")


def scrape(port: int) -> Scrape:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: Scrape, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def registry_entry(run_id: str, r2_current: float, created_at: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "model_uri": f"models:/velocast-bike-traffic/{run_id}",
        "model_type": "hgb",
        "metrics": {
            "test_baseline": {"r2": 0.84, "rmse": 40.0, "mae": 20.0},
            "test_current": {"r2": r2_current, "rmse": 41.0, "mae": 21.0},
        },
        "data_window": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-31T00:00:00Z"},
        "created_at": created_at.isoformat(),
    }


def log_row(run_id: str, logged_at: datetime, status: str, fetched: int, quarantined: int) -> dict[str, Any]:
    day = logged_at.date()
    return {
        "ingestion_run_id": run_id,
        "logical_date": day,
        "window_start": datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=3),
        "window_end": datetime(day.year, day.month, day.day, tzinfo=UTC),
        "status": status,
        "source_endpoint": "exports",
        "rows_fetched": fetched,
        "rows_loaded": 0 if status == "rejected" else fetched - quarantined,
        "rows_quarantined": quarantined,
        "duplicates_dropped": 0,
        "rejected_share": quarantined / fetched,
        "fetch_seconds": 1.5,
        "duration_seconds": 9.25,
        "logged_at": logged_at,
    }


def insert_decision(warehouse: Warehouse, table_id: str, run_id: str, run_date: date, **values: Any) -> None:
    """One audit row. (The Parquet load path has no JSON type for ``thresholds``: DML instead.)"""
    row: dict[str, str] = {
        "airflow_run_id": f"'{run_id}'",
        "run_date": date_literal(run_date),
        "env": "'dev'",
        "model_type": "'hgb'",
        "branch_reason": "'test'",
        "alert_sent": "FALSE",
        "logged_at": timestamp_literal(datetime(run_date.year, run_date.month, run_date.day, 1, tzinfo=UTC)),
        "thresholds": """JSON '{"min_r2_baseline": 0.6}'""",
    }
    for column, item in values.items():
        if item is None:
            row[column] = "NULL"
        elif isinstance(item, bool):
            row[column] = "TRUE" if item else "FALSE"
        elif isinstance(item, float):
            row[column] = repr(item)
        else:
            row[column] = f"'{item}'"
    columns = ", ".join(row)
    warehouse.run_script(f"INSERT INTO {table_ref(table_id)} ({columns}) VALUES ({', '.join(row.values())})")


def load_predictions(settings: VelocastSettings, warehouse: Warehouse, day: date, hours: int) -> None:
    """Predictions through the project's load path: contract Parquet → GCS → load job."""
    predictions = contract.load_contract(contract.PREDICTIONS)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "prediction_date": [day] * hours,
            "counter_id": [f"c{i}" for i in range(hours)],
            "counter_name": [None] * hours,
            "predicted_for": [start + timedelta(hours=i) for i in range(hours)],
            "predicted_count": [float(i) for i in range(hours)],
            "model_type": ["hgb"] * hours,
            "model_run_id": ["champion-run"] * hours,
            "model_version": ["3"] * hours,
            "unknown_counter": [False] * hours,
            "airflow_run_id": ["predict-test"] * hours,
            "predicted_at": [start + timedelta(hours=2, minutes=i) for i in range(hours)],
            "data_cutoff": [start] * hours,
            "horizon_hours": list(range(hours)),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = write_contract_parquet(frame, predictions, Path(tmp) / "predictions.parquet")
        uri = Storage(settings).upload_file(path, f"{settings.staging_prefix}/predictions-{day}.parquet")
    warehouse.load_parquet([uri], warehouse.table_id(predictions), predictions, append=True)


def load_scores(settings: VelocastSettings, warehouse: Warehouse, rows: list[dict[str, Any]]) -> None:
    """Daily scores through the same load path (DAG 2 writes them)."""
    scores = contract.load_contract(contract.PREDICTION_SCORES)
    frame = pd.DataFrame([{column: row.get(column) for column in scores.column_names} for row in rows])
    with tempfile.TemporaryDirectory() as tmp:
        path = write_contract_parquet(frame, scores, Path(tmp) / "scores.parquet")
        uri = Storage(settings).upload_file(path, f"{settings.staging_prefix}/scores.parquet")
    warehouse.load_parquet([uri], warehouse.table_id(scores), scores, append=True)


def score_row(day: date, run_id: str, r2: float | None, baseline_r2: float, n_rows: int) -> dict[str, Any]:
    return {
        "scored_date": day,
        "model_type": "hgb",
        "model_run_id": run_id,
        "model_version": "3",
        "n_rows": n_rows,
        "n_rows_left_out": 2,
        "r2": r2,
        "rmse": 30.5,
        "mae": 15.25,
        "wape": 0.21,
        "baseline_r2": baseline_r2,
        "baseline_rmse": 35.5,
        "baseline_mae": 18.5,
        "baseline_wape": 0.26,
        "airflow_run_id": "predict-test",
        "scored_at": datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, hours=2),
    }


def test_exporter_serves_registry_audit_log_and_predictions_over_http(isolated: VelocastSettings) -> None:
    server = start_exporter(isolated, host="127.0.0.1", port=0)
    try:
        port = server.server_port
        # Nothing exists yet: an empty registry is fine, the missing tables are reported, not fatal.
        empty = scrape(port)
        assert value(empty, "velocast_exporter_source_up", source="registry") == 1
        assert value(empty, "velocast_registry_champions", env="dev") == 0
        for source in ("model_decisions", "ingestion_log", "hourly_predictions", "prediction_scores"):
            assert value(empty, "velocast_exporter_source_up", source=source) == 0
            assert value(empty, "velocast_exporter_scrape_errors_total", source=source, kind="not_found") == 1
        assert not any(name.startswith("velocast_model_") for name, _ in empty)

        now = datetime.now(UTC).replace(microsecond=0)
        today = now.date()
        # The registry, through the registry's own API.
        registry = Registry(isolated)
        created = now - timedelta(days=3)
        registry.add_entry("dev", registry_entry("run-old", 0.80, created - timedelta(days=7)))
        registry.add_entry("dev", registry_entry("run-new", 0.88, created))
        registry.promote("dev", "hgb", "run-new")

        warehouse = Warehouse(isolated)
        tables = {
            name: warehouse.ensure_table(contract.load_contract(name))
            for name in (
                contract.INGESTION_LOG,
                contract.MODEL_DECISIONS,
                contract.PREDICTIONS,
                contract.PREDICTION_SCORES,
            )
        }
        # Tables exist but are empty: sources up, no row-based series.
        no_rows = scrape(port)
        for source in ("model_decisions", "ingestion_log", "hourly_predictions", "prediction_scores"):
            assert value(no_rows, "velocast_exporter_source_up", source=source) == 1
        assert not any(
            name.startswith(("velocast_ingestion_", "velocast_predictions_", "velocast_prediction_scores_"))
            for name, _ in no_rows
        )

        # DAG 1's log rows, through its own append path: a success, then a rejected run.
        success_at = now - timedelta(hours=30)
        append_log_row(
            log_row("scheduled__ok", success_at, "success", fetched=2424, quarantined=24), isolated
        )
        append_log_row(
            log_row("scheduled__bad", now - timedelta(hours=6), "rejected", fetched=2000, quarantined=200),
            isolated,
        )
        # Weekly audit rows: a promotion 14 days ago, a waiting run 7 days ago.
        insert_decision(
            warehouse,
            tables[contract.MODEL_DECISIONS],
            "monitor__1",
            today - timedelta(days=14),
            branch="RETRAIN",
            decision="DEPLOY",
            promoted=True,
            drift_share=0.625,
            champion_recent_r2=0.55,
            challenger_r2_test_current=0.88,
        )
        insert_decision(
            warehouse,
            tables[contract.MODEL_DECISIONS],
            "monitor__2",
            today - timedelta(days=7),
            branch="WAIT",
            decision=None,
            promoted=False,
            drift_share=0.125,
            champion_recent_r2=0.86,
        )
        load_predictions(isolated, warehouse, today - timedelta(days=1), hours=24)
        load_predictions(isolated, warehouse, today, hours=12)
        # Scores: the baseline won the 2 days before yesterday; yesterday two champion runs made the
        # forecasts (a promotion), the one with the most rows shows, and it lost too.
        yesterday = today - timedelta(days=1)
        load_scores(
            isolated,
            warehouse,
            [
                score_row(today - timedelta(days=4), "champion-run", 0.9, 0.7, n_rows=2400),
                score_row(today - timedelta(days=3), "champion-run", 0.6, 0.7, n_rows=2400),
                score_row(today - timedelta(days=2), "champion-run", 0.65, 0.7, n_rows=2400),
                score_row(yesterday, "champion-run", 0.5, 0.75, n_rows=2000),
                score_row(yesterday, "old-run", None, 0.75, n_rows=400),
            ],
        )

        found = scrape(port)
    finally:
        server.shutdown()
        server.server_close()

    for source in ("registry", "model_decisions", "ingestion_log", "hourly_predictions", "prediction_scores"):
        assert value(found, "velocast_exporter_source_up", source=source) == 1, source
    # Registry.
    champion = {"env": "dev", "model_type": "hgb"}
    assert value(found, "velocast_registry_champions", env="dev") == 1
    assert value(found, "velocast_registry_champions", env="prod") == 0
    assert value(found, "velocast_registry_entries", **champion) == 2
    assert (
        value(found, "velocast_registry_champion_info", **champion, run_id="run-new", test_mode="false") == 1
    )
    assert value(found, "velocast_registry_champion_r2", **champion, split="test_current") == 0.88
    assert value(found, "velocast_registry_champion_r2", **champion, split="test_baseline") == 0.84
    assert (
        value(found, "velocast_registry_champion_created_timestamp_seconds", **champion)
        == created.timestamp()
    )
    # Audit table.
    last_run = datetime.combine(today - timedelta(days=7), datetime.min.time(), UTC) + timedelta(hours=1)
    assert value(found, "velocast_model_last_run_timestamp_seconds", **champion) == last_run.timestamp()
    assert value(found, "velocast_model_last_branch", **champion, branch="WAIT") == 1
    assert value(found, "velocast_model_last_branch", **champion, branch="RETRAIN") == 0
    assert value(found, "velocast_model_last_decision", **champion, decision="NONE") == 1
    assert value(found, "velocast_model_drift_share", **champion) == 0.125
    assert value(found, "velocast_model_champion_recent_r2", **champion) == 0.86
    assert value(found, "velocast_model_decisions_window", **champion, decision="DEPLOY") == 1
    assert value(found, "velocast_model_decisions_window", **champion, decision="NONE") == 1
    assert value(found, "velocast_model_decisions_window", **champion, decision="REJECT") == 0
    assert value(found, "velocast_model_promotions_window", **champion) == 1
    promoted_at = datetime.combine(today - timedelta(days=14), datetime.min.time(), UTC) + timedelta(hours=1)
    assert (
        value(found, "velocast_model_last_promotion_timestamp_seconds", **champion) == promoted_at.timestamp()
    )
    # Ingestion log.
    assert value(found, "velocast_ingestion_last_success_timestamp_seconds") == success_at.timestamp()
    assert value(found, "velocast_ingestion_last_run_status", status="rejected") == 1
    assert value(found, "velocast_ingestion_last_run_status", status="success") == 0
    assert value(found, "velocast_ingestion_last_run_rows_loaded") == 0
    assert value(found, "velocast_ingestion_last_run_rows_quarantined") == 200
    assert value(found, "velocast_ingestion_last_run_rejected_share") == 0.1
    assert value(found, "velocast_ingestion_last_run_duration_seconds") == 9.25
    # Predictions: the latest date only.
    midnight = datetime.combine(today, datetime.min.time(), UTC)
    assert value(found, "velocast_predictions_last_date_timestamp_seconds") == midnight.timestamp()
    assert value(found, "velocast_predictions_last_date_rows", model_type="hgb") == 12
    assert (
        value(found, "velocast_predictions_last_written_timestamp_seconds")
        == (midnight + timedelta(hours=2, minutes=11)).timestamp()
    )
    # Scores: yesterday's, model against baseline, and the losing streak.
    hgb = {"model_type": "hgb"}
    yesterday_midnight = midnight - timedelta(days=1)
    assert (
        value(found, "velocast_prediction_scores_last_day_timestamp_seconds", **hgb)
        == yesterday_midnight.timestamp()
    )
    assert value(found, "velocast_prediction_scores_last_day_rows", **hgb) == 2000
    assert (
        value(found, "velocast_prediction_scores_last_day_champion_info", **hgb, model_run_id="champion-run")
        == 1
    )
    assert value(found, "velocast_prediction_scores_r2", **hgb, forecast="model") == 0.5
    assert value(found, "velocast_prediction_scores_r2", **hgb, forecast="baseline") == 0.75
    assert value(found, "velocast_prediction_scores_rmse", **hgb, forecast="model") == 30.5
    assert value(found, "velocast_prediction_scores_mae", **hgb, forecast="baseline") == 18.5
    assert value(found, "velocast_prediction_scores_wape", **hgb, forecast="baseline") == 0.26
    assert value(found, "velocast_prediction_scores_r2_gain", **hgb) == -0.25
    assert value(found, "velocast_prediction_scores_days_losing_to_baseline", **hgb) == 3
