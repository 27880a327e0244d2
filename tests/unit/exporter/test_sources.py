"""The exporter's sources: the SQL of each table's query and the readers over a stand-in BigQuery."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pytest
from prometheus_client.core import Metric

from velocast.exporter import sources
from velocast.exporter.catalog import SOURCES
from velocast.exporter.sources import (
    WarehouseSources,
    decisions_sql,
    ingestion_sql,
    predictions_sql,
    scores_sql,
    scores_table_id,
)
from velocast.settings import VelocastSettings

TABLE = "project.dataset.table"


def test_decisions_sql_selects_the_window_and_the_latest_runs() -> None:
    assert decisions_sql(TABLE, date(2024, 3, 4)) == (
        "SELECT airflow_run_id, run_date, status, env, model_type, branch, decision, promoted, drift_share, "
        "champion_recent_r2, challenger_r2_test_baseline, challenger_r2_test_current, logged_at "
        "FROM `project.dataset.table` WHERE TRUE "
        "QUALIFY run_date >= DATE '2024-03-04' "
        "OR ROW_NUMBER() OVER (PARTITION BY env, model_type ORDER BY logged_at DESC) = 1 "
        "OR (promoted AND ROW_NUMBER() OVER "
        "(PARTITION BY env, model_type, promoted ORDER BY logged_at DESC) = 1)"
    )


def test_ingestion_and_predictions_sql_read_the_quoted_table() -> None:
    assert ingestion_sql(TABLE) == (
        "SELECT ingestion_run_id, status, rows_fetched, rows_loaded, rows_quarantined, rejected_share, "
        "duration_seconds, logged_at FROM `project.dataset.table` WHERE TRUE "
        "QUALIFY ROW_NUMBER() OVER (ORDER BY logged_at DESC) = 1 "
        "OR ROW_NUMBER() OVER (PARTITION BY status ORDER BY logged_at DESC) = 1"
    )
    assert predictions_sql(TABLE) == (
        "SELECT prediction_date, model_type, COUNT(*) AS row_count, MAX(predicted_at) AS last_predicted_at "
        "FROM `project.dataset.table` WHERE prediction_date = "
        "(SELECT MAX(prediction_date) FROM `project.dataset.table`) "
        "GROUP BY prediction_date, model_type"
    )


def test_scores_sql_reads_the_latest_scored_days_of_each_model_type() -> None:
    assert scores_sql(TABLE) == (
        "SELECT scored_date, model_type, model_run_id, n_rows, r2, rmse, mae, wape, "
        "baseline_r2, baseline_rmse, baseline_mae, baseline_wape, scored_at "
        "FROM `project.dataset.table` WHERE TRUE "
        "QUALIFY DENSE_RANK() OVER (PARTITION BY model_type ORDER BY scored_date DESC) <= 7"
    )
    assert scores_sql(TABLE, days=3).endswith("ORDER BY scored_date DESC) <= 3")


def test_the_scores_table_is_the_contracts_in_the_predictions_dataset(settings: VelocastSettings) -> None:
    assert scores_table_id(settings) == (
        f"{settings.gcp_project}.{settings.predictions_dataset}.prediction_scores"
    )


@pytest.mark.parametrize("table_id", ["project.dataset.t` WHERE FALSE --", "table", "project..table"])
def test_a_table_id_that_cannot_be_quoted_is_refused(table_id: str) -> None:
    for build in (ingestion_sql, predictions_sql, scores_sql, lambda t: decisions_sql(t, date(2024, 3, 4))):
        with pytest.raises(ValueError):
            build(table_id)


class FakeJob:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def result(self) -> Iterable[Mapping[str, Any]]:
        return self.rows


class FakeBigQuery:
    """Answers each query with the rows of the table it reads; records the queries."""

    def __init__(self, rows_by_table: Mapping[str, list[dict[str, Any]]]) -> None:
        self.rows_by_table = rows_by_table
        self.queries: list[tuple[str, str]] = []

    def query(self, sql: str, *, location: str) -> FakeJob:
        self.queries.append((sql, location))
        return FakeJob(next(rows for table, rows in self.rows_by_table.items() if f"`{table}`" in sql))


def names(families: list[Metric]) -> set[str]:
    return {sample.name for family in families for sample in family.samples}


def test_readers_query_each_table_once_through_the_bigquery_client(
    monkeypatch: pytest.MonkeyPatch, settings: VelocastSettings
) -> None:
    fake = FakeBigQuery(
        {
            settings.decisions_table_id: [
                {
                    "env": "prod",
                    "model_type": "hgb",
                    "run_date": date(2024, 3, 30),
                    "branch": "WAIT",
                    "decision": None,
                    "promoted": False,
                    "logged_at": datetime(2024, 3, 30, 1, tzinfo=UTC),
                }
            ],
            settings.ingestion_log_table_id: [
                {"status": "success", "rows_fetched": 10, "logged_at": datetime(2024, 3, 30, tzinfo=UTC)}
            ],
            settings.predictions_table_id: [
                {"prediction_date": date(2024, 3, 31), "model_type": "hgb", "row_count": 24}
            ],
            scores_table_id(settings): [
                {"scored_date": date(2024, 3, 30), "model_type": "hgb", "model_run_id": "r", "n_rows": 24}
            ],
        }
    )
    built: list[VelocastSettings] = []

    def bigquery_client(given: VelocastSettings) -> FakeBigQuery:
        built.append(given)
        return fake

    monkeypatch.setattr(sources, "bigquery_client", bigquery_client)
    warehouse = WarehouseSources(settings, clock=lambda: datetime(2024, 3, 31, 12, tzinfo=UTC), window_days=7)
    readers = warehouse.readers()
    assert tuple(readers) == SOURCES

    assert "velocast_model_last_decision" in names(readers["model_decisions"]())
    assert "velocast_ingestion_last_run_rows_fetched" in names(readers["ingestion_log"]())
    assert "velocast_predictions_last_date_rows" in names(readers["hourly_predictions"]())
    assert "velocast_prediction_scores_last_day_rows" in names(readers["prediction_scores"]())
    # One client, created on first use; the window starts window_days - 1 days before the clock's day.
    assert built == [settings]
    assert [location for _, location in fake.queries] == [settings.gcp_location] * 4
    assert "run_date >= DATE '2024-03-25'" in fake.queries[0][0]
