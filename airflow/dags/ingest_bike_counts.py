"""
### Ingest bike counts (DAG 1)

Daily at 02:00 Europe/Paris, re-ingests the **trailing N UTC days** (default 3,
`VELOCAST_INGEST_TRAILING_DAYS`) of hourly counts from the Paris Open Data API
(`comptage-velo-donnees-compteurs`), because the API publishes with a lag of 1–4 days.

`plan_window → extract → transform → load → report`:

- **extract** fetches the window (exports endpoint, records endpoint as fallback; retries on
  429/5xx honouring `Retry-After`) and stages the raw records in GCS;
- **transform** normalizes the field variants, validates them with Great Expectations against
  the data contract, stages valid and quarantined rows in GCS, and **fails** when the rejected
  share exceeds `VELOCAST_MAX_REJECTED_SHARE` (the quarantine is still written);
- **load** replaces exactly the window's days in `hourly_counts` (and this run's quarantine
  partition) in one BigQuery transaction: re-runs and overlapping windows never duplicate or
  lose a row, and a failed run leaves its days as they were;
- **report** appends a row to `ingestion_log` and emits statsd metrics (`velocast.ingest.*`).

A task whose data is wrong (too many rejected rows) fails at once; a task whose dependency is
unavailable (the API, GCS, BigQuery) is retried (`VELOCAST_INGEST_TASK_RETRIES`).

Set `VELOCAST_INGEST_CATCHUP=true` to let the scheduler catch up from
`VELOCAST_INGEST_START_DATE`. Backfill any range from the UI,
`airflow backfill create --dag-id ingest_bike_counts --from-date … --to-date …` or the REST
API: the result equals the daily runs'.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from airflow.sdk import CronTriggerTimetable, dag, get_current_context

from velocast.contract import PARIS, PARIS_TZ
from velocast.ingest import assets
from velocast.ingest.run import ExtractOutcome, IngestionLogRow, IngestionRun, LoadOutcome, TransformOutcome
from velocast.ingest.window import IngestionWindow
from velocast.orchestration.taskflow import task_defaults, typed_task
from velocast.settings import get_settings

# Task bodies import velocast.ingest.steps (pandas, the Google clients) when they run, keeping the
# file quick to parse for the dag-processor. Task outputs travel through XCom as the dataclasses
# of velocast.ingest.run ([core] allowed_deserialization_classes includes velocast.*).

settings = get_settings()


def _run(window: IngestionWindow) -> IngestionRun:
    """The context of the run the current task belongs to."""
    return IngestionRun(window=window, run_id=get_current_context()["run_id"], settings=get_settings())


@dag(
    dag_id="ingest_bike_counts",
    schedule=CronTriggerTimetable("0 2 * * *", timezone=PARIS_TZ),
    start_date=datetime.combine(settings.ingest_start_date, time(0), tzinfo=PARIS),
    catchup=settings.ingest_catchup,
    max_active_runs=1,
    default_args=task_defaults(settings.ingest_task_retries),
    dagrun_timeout=timedelta(hours=2),
    tags=["velocast", "ingestion"],
    doc_md=__doc__,
)
def ingest_bike_counts() -> None:
    @typed_task()
    def ensure_tables() -> dict[str, str]:
        """Create the raw, quarantine and log tables when missing (Terraform creates them in production)."""
        from velocast.ingest import steps

        return steps.ensure_tables(get_settings())

    @typed_task()
    def plan_window() -> IngestionWindow:
        """The trailing UTC days this run re-ingests: the days before its logical date's day in Paris."""
        from velocast.ingest.window import plan_window

        return plan_window(get_current_context()["logical_date"], get_settings().ingest_trailing_days)

    @typed_task()
    def extract(window: IngestionWindow) -> ExtractOutcome:
        """Fetch the window from the Open Data API and stage the raw records (NDJSON) in GCS."""
        from velocast.ingest import steps

        return steps.extract(_run(window))

    @typed_task()
    def transform(window: IngestionWindow, extracted: ExtractOutcome) -> TransformOutcome:
        """Normalize and validate the records; stage the valid and the quarantined rows (Parquet) in GCS.

        Fails without retry when the rejected share exceeds the threshold, after writing the
        quarantine partition and a `rejected` row in the ingestion log.
        """
        from velocast.ingest import steps

        run = _run(window)
        transformed = steps.transform(run, extracted)
        steps.enforce_rejected_share(run, extracted, transformed)
        return transformed

    @typed_task(outlets=[assets.RAW_COUNTS, assets.QUARANTINE])
    def load(window: IngestionWindow, transformed: TransformOutcome) -> LoadOutcome:
        """Replace the window's days that have data and the run's quarantine partition, in one transaction."""
        from velocast.ingest import steps

        return steps.load(_run(window), transformed)

    @typed_task(outlets=[assets.INGESTION_LOG])
    def report(
        window: IngestionWindow, extracted: ExtractOutcome, transformed: TransformOutcome, loaded: LoadOutcome
    ) -> IngestionLogRow:
        """Append the run's row to the ingestion log, emit its metrics, remove its staged files."""
        from velocast.ingest import steps

        return steps.report(_run(window), extracted, transformed, loaded)

    window = plan_window()
    extracted = extract(window)
    ensure_tables() >> extracted
    transformed = transform(window, extracted)
    loaded = load(window, transformed)
    report(window, extracted, transformed, loaded)


ingest_bike_counts()
