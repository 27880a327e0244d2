# TaskFlow wiring passes XComArgs where the task functions take their resolved values.
# mypy: disable-error-code="arg-type"
"""
### Ingest bike counts (DAG 1)

Daily at 02:00 Europe/Paris, re-ingests the **trailing N UTC days** (default 3,
`VELOCAST_INGEST_TRAILING_DAYS`) of hourly counts from the Paris Open Data API
(`comptage-velo-donnees-compteurs`), because the API publishes with a lag of 1–4 days.

`plan_window → extract → transform → load → report`:

- **extract** fetches the window (exports endpoint, records endpoint as fallback; retries on
  429/5xx honouring `Retry-After`) and stages the raw records in GCS;
- **transform** normalises the field variants, validates them with Great Expectations against
  the data contract, stages valid and quarantined rows in GCS, and **fails** when the rejected
  share exceeds `VELOCAST_MAX_REJECTED_SHARE` (the quarantine is still written);
- **load** replaces exactly the window's days in `hourly_counts` (and this run's quarantine
  partition) in one BigQuery transaction: re-runs and overlapping windows never duplicate or
  lose a row, and a failed run leaves its days as they were;
- **report** appends a row to `ingestion_log` and emits statsd metrics (`velocast.ingest.*`).

Set `VELOCAST_INGEST_CATCHUP=true` to let the scheduler catch up from
`VELOCAST_INGEST_START_DATE`. Backfill any range from the UI,
`airflow backfill create --dag-id ingest_bike_counts --from-date … --to-date …` or the REST
API: the result equals the daily runs'.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, get_current_context, task

from velocast.ingest import assets
from velocast.settings import get_settings

# Task bodies import velocast.ingest.steps (pandas, the Google hooks) when they run, keeping the
# file quick to parse for the dag-processor.


def _run_id() -> str:
    return str(get_current_context()["run_id"])


@dag(
    dag_id="ingest_bike_counts",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="Europe/Paris"),
    start_date=pendulum.instance(
        datetime.combine(get_settings().ingest_start_date, time(0)), tz="Europe/Paris"
    ),
    catchup=get_settings().ingest_catchup,
    max_active_runs=1,
    default_args={
        "retries": get_settings().ingest_task_retries,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    dagrun_timeout=timedelta(hours=2),
    tags=["velocast", "ingestion"],
    doc_md=__doc__,
)
def ingest_bike_counts() -> None:
    @task
    def ensure_tables() -> dict[str, str]:
        from velocast.ingest import steps as ingestion

        return ingestion.ensure_tables(get_settings())

    @task
    def plan_window(logical_date: Any = None) -> dict[str, str]:
        from velocast.ingest import steps as ingestion

        return ingestion.plan_window(logical_date, get_settings().ingest_trailing_days).to_xcom()

    @task
    def extract(window: dict[str, str]) -> dict[str, Any]:
        from velocast.ingest import steps as ingestion
        from velocast.ingest.steps import IngestionWindow

        return ingestion.extract(IngestionWindow.from_xcom(window), _run_id(), get_settings())

    @task
    def transform(window: dict[str, str], extracted: dict[str, Any]) -> dict[str, Any]:
        from velocast.ingest import steps as ingestion
        from velocast.ingest.steps import IngestionWindow

        settings = get_settings()
        target = IngestionWindow.from_xcom(window)
        outcome = ingestion.transform(target, extracted["raw_uri"], _run_id(), settings)
        ingestion.enforce_rejected_share(target, outcome, extracted, _run_id(), settings)
        return outcome.to_xcom()

    @task(outlets=[assets.RAW_COUNTS, assets.QUARANTINE])
    def load(window: dict[str, str], transformed: dict[str, Any]) -> dict[str, Any]:
        from velocast.ingest import steps as ingestion
        from velocast.ingest.steps import IngestionWindow, TransformOutcome

        outcome = TransformOutcome(**transformed)
        return ingestion.load(IngestionWindow.from_xcom(window), outcome, _run_id(), get_settings())

    @task(outlets=[assets.INGESTION_LOG])
    def report(
        window: dict[str, str], extracted: dict[str, Any], transformed: dict[str, Any], loaded: dict[str, Any]
    ) -> dict[str, Any]:
        from velocast.ingest import steps as ingestion
        from velocast.ingest.steps import IngestionWindow, TransformOutcome

        return ingestion.report(
            IngestionWindow.from_xcom(window),
            TransformOutcome(**transformed),
            extracted,
            int(loaded["rows_loaded"]),
            _run_id(),
            get_settings(),
        )

    window = plan_window()
    extracted = extract(window)
    ensure_tables() >> extracted
    transformed = transform(window, extracted)
    loaded = load(window, transformed)
    report(window, extracted, transformed, loaded)


ingest_bike_counts()
