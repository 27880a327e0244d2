"""
### Predict bike counts (DAG 2)

Daily at 04:00 Europe/Paris (after DAG 1), for the run's local day **D** (its logical date in Paris):

`ensure_tables → forecast → load_forecasts → score`

- **forecast** asks the serving sidecar's champion (connection `velocast_sidecar`) for every
  active counter (seen in the raw table during the 14 days before D) × every local hour of D and
  D + 1 (23 or 25 hours on clock-change days), with each row's horizon from the data cut-off (the
  last complete hour in the raw table before D) and the champion (type, run id, version). Counters
  the model never saw go through its unknown branch and are flagged (`unknown_counter`). The rows
  are staged as Parquet in GCS and in a staging table.
- **load_forecasts** replaces exactly D's partition of `hourly_predictions` in one transaction
  (a re-run or a backfill rewrites it, a failed run leaves it as it was), then checks it: rows =
  counters × hours, no null or negative prediction, one champion run.
- **score** rescores the complete days among the 7 before D (the forecasts of record against the
  actuals and the same-hour-last-week baseline on the same rows) into `prediction_scores`.

No champion yet: the run fails at once with "no champion yet: trigger monitor_and_train"; a
sidecar or warehouse that cannot be reached is retried (`VELOCAST_PREDICT_TASK_RETRIES`). Every
failure posts to Discord (`velocast_discord`). Backfill any range from the UI,
`airflow backfill create --dag-id predict_bike_counts …` or the REST API; the raw days it reads
must be ingested (DAG 1) first.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from airflow.sdk import CronTriggerTimetable, dag, get_current_context

from velocast.contract import PARIS, PARIS_TZ
from velocast.ingest import assets
from velocast.orchestration.notify import DiscordFailureNotifier, DiscordSuccessNotifier
from velocast.orchestration.taskflow import task_defaults, typed_task
from velocast.predict.run import ForecastOutcome, LoadOutcome, PredictionRun, ScoreOutcome, run_day_of
from velocast.settings import get_settings

# Task bodies import the steps, the Google adapters and the sidecar hook when they run, keeping the
# file quick to parse. Outputs travel through XCom as the dataclasses of velocast.predict.run.

settings = get_settings()


def _run() -> PredictionRun:
    """The context of the run the current task belongs to (D from the logical date)."""
    context = get_current_context()
    return PredictionRun(
        run_day=run_day_of(context["logical_date"]), run_id=context["run_id"], settings=get_settings()
    )


@dag(
    dag_id="predict_bike_counts",
    schedule=CronTriggerTimetable("0 4 * * *", timezone=PARIS_TZ),
    start_date=datetime.combine(settings.predict_start_date, time(0), tzinfo=PARIS),
    catchup=settings.predict_catchup,
    max_active_runs=1,
    default_args=task_defaults(settings.predict_task_retries, on_failure_callback=DiscordFailureNotifier()),
    on_success_callback=DiscordSuccessNotifier(),
    dagrun_timeout=timedelta(hours=1),
    tags=["velocast", "predictions"],
    doc_md=__doc__,
)
def predict_bike_counts() -> None:
    @typed_task()
    def ensure_tables() -> dict[str, str]:
        """Create the predictions and scores tables when missing (Terraform creates them in production)."""
        from velocast.gcp.warehouse import Warehouse
        from velocast.predict import steps

        return steps.ensure_tables(Warehouse(get_settings()))

    @typed_task()
    def forecast() -> ForecastOutcome:
        """Forecast every active counter for every local hour of D and D + 1; stage the rows.

        Fails at once (no retry) when the sidecar has no champion.
        """
        from velocast.gcp.storage import Storage
        from velocast.gcp.warehouse import Warehouse
        from velocast.orchestration.sidecar import SidecarHook
        from velocast.orchestration.sidecar_errors import SidecarNotReadyError
        from velocast.predict import steps
        from velocast.predict.run import NoChampionError

        run = _run()
        try:
            return steps.forecast(run, Warehouse(run.settings), Storage(run.settings), SidecarHook())
        except SidecarNotReadyError as error:
            # An UnavailableError for the hook; here waiting cannot help: someone must train first.
            raise NoChampionError(str(error)) from error

    @typed_task(outlets=[assets.PREDICTIONS])
    def load_forecasts(forecasted: ForecastOutcome) -> LoadOutcome:
        """Replace D's partition of the predictions in one transaction, then validate what was written."""
        from velocast.gcp.storage import Storage
        from velocast.gcp.warehouse import Warehouse
        from velocast.predict import steps

        run = _run()
        return steps.load_forecasts(run, Warehouse(run.settings), Storage(run.settings), forecasted)

    @typed_task(outlets=[assets.PREDICTION_SCORES])
    def score(loaded: LoadOutcome) -> ScoreOutcome:
        """Rescore the complete days among the 7 before D against actuals and the last-week baseline."""
        from velocast.gcp.storage import Storage
        from velocast.gcp.warehouse import Warehouse
        from velocast.predict import steps

        run = _run()
        return steps.score(run, Warehouse(run.settings), Storage(run.settings))

    forecasted = forecast()
    ensure_tables() >> forecasted
    score(load_forecasts(forecasted))


predict_bike_counts()
