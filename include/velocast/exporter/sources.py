"""The exporter's sources: reading the registry and the BigQuery tables, one query per table.

* ``registry``: the registry ``summary.json`` on GCS (``velocast.ml.registry``): the champion per
  environment and model type;
* ``model_decisions``: the audit table of the weekly monitor-and-train runs;
* ``ingestion_log``: one row per DAG 1 run;
* ``hourly_predictions``: DAG 2's predictions (counts of the latest ``prediction_date`` only);
* ``prediction_scores``: DAG 2's daily scores, model against the same-hour-last-week baseline
  (the latest ``SCORED_DAYS_READ`` scored days per model type).

BigQuery is reached through the client library (``velocast.gcp.clients``, emulator-aware), never
through Airflow: the exporter is a service of its own. The SQL of every query is built here, with
the project's SQL helpers (``velocast.data.sql``). A reader returns the source's metric families
(``velocast.exporter.families``) or raises; the collector turns a raise into ``source_up = 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from google.cloud import bigquery
from prometheus_client.core import Metric

from velocast.contract import PREDICTION_SCORES, load_contract
from velocast.data.sql import date_literal, table_ref
from velocast.exporter.catalog import DECISION_WINDOW_DAYS, SCORED_DAYS_READ
from velocast.exporter.families import (
    decision_families,
    ingestion_families,
    prediction_families,
    registry_families,
    score_families,
)
from velocast.gcp.clients import bigquery_client
from velocast.ml.registry import Registry
from velocast.settings import VelocastSettings

# A source's reader: its metric families, read now.
Reader = Callable[[], list[Metric]]

_DECISION_COLUMNS: Final = (
    "airflow_run_id, run_date, status, env, model_type, branch, decision, promoted, drift_share, "
    "champion_recent_r2, challenger_r2_test_baseline, challenger_r2_test_current, logged_at"
)
_INGESTION_COLUMNS: Final = (
    "ingestion_run_id, status, rows_fetched, rows_loaded, rows_quarantined, rejected_share, "
    "duration_seconds, logged_at"
)


def decisions_sql(table_id: str, window_start: date) -> str:
    """The latest run and the latest promotion per (env, model_type), plus the window's runs."""
    return (
        # WHERE TRUE: BigQuery has refused a QUALIFY without WHERE, GROUP BY or HAVING.
        f"SELECT {_DECISION_COLUMNS} FROM {table_ref(table_id)} WHERE TRUE "
        f"QUALIFY run_date >= {date_literal(window_start)} "
        "OR ROW_NUMBER() OVER (PARTITION BY env, model_type ORDER BY logged_at DESC) = 1 "
        "OR (promoted AND ROW_NUMBER() OVER "
        "(PARTITION BY env, model_type, promoted ORDER BY logged_at DESC) = 1)"
    )


def ingestion_sql(table_id: str) -> str:
    """The latest run and the latest run of each status."""
    return (
        f"SELECT {_INGESTION_COLUMNS} FROM {table_ref(table_id)} WHERE TRUE "
        "QUALIFY ROW_NUMBER() OVER (ORDER BY logged_at DESC) = 1 "
        "OR ROW_NUMBER() OVER (PARTITION BY status ORDER BY logged_at DESC) = 1"
    )


def predictions_sql(table_id: str) -> str:
    """Rows and the last ``predicted_at`` per model type, for the latest ``prediction_date``."""
    table = table_ref(table_id)
    return (
        "SELECT prediction_date, model_type, COUNT(*) AS row_count, MAX(predicted_at) AS last_predicted_at "
        f"FROM {table} WHERE prediction_date = (SELECT MAX(prediction_date) FROM {table}) "
        "GROUP BY prediction_date, model_type"
    )


_SCORE_COLUMNS: Final = (
    "scored_date, model_type, model_run_id, n_rows, r2, rmse, mae, wape, "
    "baseline_r2, baseline_rmse, baseline_mae, baseline_wape, scored_at"
)


def scores_sql(table_id: str, days: int = SCORED_DAYS_READ) -> str:
    """Every row of the latest ``days`` scored days of each model type."""
    return (
        f"SELECT {_SCORE_COLUMNS} FROM {table_ref(table_id)} WHERE TRUE "
        f"QUALIFY DENSE_RANK() OVER (PARTITION BY model_type ORDER BY scored_date DESC) <= {int(days)}"
    )


def scores_table_id(settings: VelocastSettings) -> str:
    """The ``prediction_scores`` table: the contract's name in the settings' predictions dataset."""
    scores = load_contract(PREDICTION_SCORES)
    if scores.dataset != "predictions":
        raise ValueError(f"{scores.table} is expected in the predictions dataset, not {scores.dataset!r}")
    return f"{settings.gcp_project}.{settings.predictions_dataset}.{scores.table}"


class WarehouseSources:
    """The readers of the five sources (the BigQuery client is created on first use)."""

    def __init__(
        self,
        settings: VelocastSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        window_days: int = DECISION_WINDOW_DAYS,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.window_days = window_days
        self._client: bigquery.Client | None = None
        self._registry: Registry | None = None

    @property
    def client(self) -> bigquery.Client:
        # The BigQuery client library itself (emulator-aware), not Airflow's hook: the exporter
        # is its own process and needs no Airflow connection.
        if self._client is None:
            self._client = bigquery_client(self.settings)
        return self._client

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        job = self.client.query(sql, location=self.settings.gcp_location)
        return [{str(key): value for key, value in row.items()} for row in job.result()]

    def registry(self) -> list[Metric]:
        if self._registry is None:
            self._registry = Registry(self.settings)
        return registry_families(self._registry.summary())

    def model_decisions(self) -> list[Metric]:
        today = self.clock().date()
        window_start = today - timedelta(days=self.window_days - 1)
        rows = self._rows(decisions_sql(self.settings.decisions_table_id, window_start))
        return decision_families(rows, today=today, window_days=self.window_days)

    def ingestion_log(self) -> list[Metric]:
        return ingestion_families(self._rows(ingestion_sql(self.settings.ingestion_log_table_id)))

    def hourly_predictions(self) -> list[Metric]:
        return prediction_families(self._rows(predictions_sql(self.settings.predictions_table_id)))

    def prediction_scores(self) -> list[Metric]:
        return score_families(self._rows(scores_sql(scores_table_id(self.settings))))

    def readers(self) -> dict[str, Reader]:
        return {
            "registry": self.registry,
            "model_decisions": self.model_decisions,
            "ingestion_log": self.ingestion_log,
            "hourly_predictions": self.hourly_predictions,
            "prediction_scores": self.prediction_scores,
        }
