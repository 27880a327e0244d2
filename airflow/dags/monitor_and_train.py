"""
### Monitor and train (DAG 3)

Weekly, Sunday 00:00 Europe/Paris, for the run's local day **D** (the 7 days before it are "recent"):

`check_champion → measure_drift → choose_branch → wait | submit_training → wait_for_training →
choose_deployment → reject | skip | promote`, then `notify → record_audit` whatever happened.

- **check_champion** scores the champion the serving sidecar serves *now* on the recent actuals
  (R², RMSE, MAE, and the same-hour-last-week baseline on the same rows). No champion yet: the run
  retrains (bootstrap).
- **measure_drift** compares the recent days with the 4 weeks before them, the champion's
  sliding training window (Evidently: hourly counts, per-counter daily totals, the champion's
  residuals; per counter too). The HTML report goes
  to `gs://<bucket>/drift_reports/<run>/report.html`.
- **choose_branch**: RETRAIN when forced, without a champion, R² < 0.65, drift share ≥ 0.5 (with
  R² < 0.70: proactive); WAIT otherwise. The reason code is in the audit row.
- **submit_training** starts `POST /train` on the last 30 days (a BigQuery window added to the
  baseline); **wait_for_training** waits on the triggerer (no worker slot held; a timeout or a
  clear cancels the job).
- **choose_deployment** follows the job's double evaluation: REJECT, SKIP or DEPLOY; **promote**
  makes the challenger champion and waits until every sidecar worker serves it. `test_mode` never
  promotes in prod.
- **notify** posts one Discord message for the run (a webhook failure never fails the run);
  **record_audit** writes exactly one `model_decisions` row per run id, on every path.

Trigger it by hand with the Params below (`force_retrain`, `test_mode`, `model_type`).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from velocast.contract import PARIS, PARIS_TZ
from velocast.ml.model_types import DEFAULT_MODEL_TYPE, MODEL_TYPE_NAMES
from velocast.monitor.run import (
    BranchOutcome,
    ChampionHealth,
    DriftOutcome,
    MonitorParams,
    MonitorRun,
    PromotionOutcome,
    TrainingOutcome,
    TrainingSubmitted,
)
from velocast.orchestration import monitor_facts as ids
from velocast.orchestration.notify import DiscordFailureNotifier
from velocast.orchestration.taskflow import Output, task_defaults, typed_branch, typed_task
from velocast.orchestration.training_wait import WaitForTrainingJobOperator
from velocast.predict.run import run_day_of
from velocast.settings import get_settings

# Task bodies import the steps, the Google adapters and the sidecar hook when they run. Outputs
# travel through XCom as the dataclasses of velocast.monitor.run.

settings = get_settings()


def _run() -> MonitorRun:
    """The context of the run the current task belongs to (D from the logical date, or the time a
    manual run was triggered for)."""
    context = get_current_context()
    moment = context.get("logical_date") or context["dag_run"].run_after
    return MonitorRun(
        run_day=run_day_of(moment),
        run_id=context["run_id"],
        params=MonitorParams.of(dict(context["params"])),
        settings=get_settings(),
    )


@dag(
    dag_id="monitor_and_train",
    schedule=CronTriggerTimetable("0 0 * * 0", timezone=PARIS_TZ),
    start_date=datetime.combine(settings.monitor_start_date, time(0), tzinfo=PARIS),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(settings.monitor_task_retries),
    dagrun_timeout=timedelta(seconds=settings.monitor_training_timeout_seconds + 3600),
    params={
        "force_retrain": Param(
            False,
            type="boolean",
            title="Force retrain",
            description="Retrain whatever the champion's health.",
        ),
        "test_mode": Param(
            False,
            type="boolean",
            title="Test mode",
            description="Train on a sample (a smoke run); its model never becomes a prod champion.",
        ),
        "model_type": Param(
            DEFAULT_MODEL_TYPE,
            type="string",
            enum=list(MODEL_TYPE_NAMES),
            title="Model type",
            description="The model type to train when the run retrains.",
        ),
    },
    tags=["velocast", "monitoring", "training"],
    doc_md=__doc__,
)
def monitor_and_train() -> None:
    @typed_task(records_failure=True)
    def check_champion() -> ChampionHealth:
        """Score the served champion on the last 7 complete days of actuals, beside the last-week baseline."""
        from velocast.gcp.storage import Storage
        from velocast.gcp.warehouse import Warehouse
        from velocast.monitor.health import check_champion as check
        from velocast.orchestration.sidecar import SidecarHook

        run = _run()
        return check(run, Warehouse(run.settings), Storage(run.settings), SidecarHook())

    @typed_task(records_failure=True)
    def measure_drift(health: ChampionHealth) -> DriftOutcome:
        """Measure the drift of the recent days against the champion's reference data; store the report."""
        from velocast.gcp.storage import Storage
        from velocast.gcp.warehouse import Warehouse
        from velocast.monitor.drift_check import check_drift
        from velocast.orchestration.sidecar import SidecarHook

        run = _run()
        return check_drift(run, Warehouse(run.settings), Storage(run.settings), SidecarHook(), health)

    @typed_branch(records_failure=True)
    def choose_branch(health: ChampionHealth, drift: DriftOutcome) -> str:
        """WAIT or RETRAIN, from the champion's recent R² and the drift share (reason in the audit)."""
        from velocast.monitor.branching import Branch, BranchThresholds
        from velocast.monitor.branching import choose_branch as choose

        run = _run()
        thresholds = BranchThresholds.from_settings(run.settings)
        choice = choose(
            force=run.params.force_retrain,
            has_champion=health.has_champion,
            champion_r2=health.r2,
            drift_share=drift.share,
            thresholds=thresholds,
        )
        outcome = BranchOutcome(choice.branch.value, choice.reason.value, choice.detail, thresholds.to_dict())
        get_current_context()["ti"].xcom_push(ids.OUTCOME_XCOM_KEY, outcome)
        return ids.SUBMIT_TRAINING if choice.branch is Branch.RETRAIN else ids.WAIT

    @typed_task(records_failure=True)
    def wait() -> None:
        """The champion stays: nothing to retrain this week."""

    @typed_task(records_failure=True)
    def submit_training(health: ChampionHealth) -> TrainingSubmitted:
        """Start a training job on the sidecar: the baseline plus the last 30 days of actuals."""
        from velocast.monitor.retraining import training_request
        from velocast.orchestration.sidecar import SidecarHook

        run = _run()
        request = training_request(run, health.env)
        submission = SidecarHook().train(request)
        start, end = run.training_window()
        return TrainingSubmitted(submission.job_id, run.params.model_type, run.params.test_mode, start, end)

    wait_for_training = WaitForTrainingJobOperator(
        task_id=ids.WAIT_FOR_TRAINING,
        job_id="{{ ti.xcom_pull(task_ids='" + ids.SUBMIT_TRAINING + "').job_id }}",
        doc_md="Wait on the triggerer for the training job (no worker slot held); cancelled past a timeout.",
    )

    @typed_branch(records_failure=True)
    def choose_deployment(training: TrainingOutcome, health: ChampionHealth) -> str:
        """REJECT, SKIP or DEPLOY, as the double evaluation decided (never a test_mode prod champion)."""
        from velocast.monitor.retraining import deployment_branch
        from velocast.monitor.run import DeploymentOutcome

        branch, reason = deployment_branch(training, health.env)
        get_current_context()["ti"].xcom_push(ids.OUTCOME_XCOM_KEY, DeploymentOutcome(branch, reason))
        return branch

    @typed_task(records_failure=True)
    def reject() -> None:
        """The challenger is worse than allowed on the reference test set: the champion stays."""

    @typed_task(records_failure=True)
    def skip() -> None:
        """The challenger is not better enough to be worth a swap (or a test_mode run in prod)."""

    @typed_task(records_failure=True)
    def promote(training: TrainingOutcome, health: ChampionHealth) -> PromotionOutcome:
        """Make the challenger the champion, then wait until every sidecar worker serves it."""
        from velocast.monitor.retraining import promote_and_confirm
        from velocast.orchestration.sidecar import SidecarHook

        return promote_and_confirm(_run(), SidecarHook(), training, health.env)

    @typed_task(trigger_rule="all_done")
    def notify() -> bool:
        """Post the run's one Discord message, whatever its path; True when delivered (never fails)."""
        from velocast.monitor.messages import run_message
        from velocast.orchestration.monitor_facts import gather_facts
        from velocast.orchestration.notify import airflow_ui_url, post_message

        run = _run()
        context = get_current_context()
        facts = gather_facts(context, run)
        url = f"{airflow_ui_url(run.settings).rstrip('/')}/dags/{context['dag'].dag_id}/runs/{run.run_id}"
        return post_message(run_message(facts, run_url=url))

    @typed_task(trigger_rule="all_done", on_failure_callback=DiscordFailureNotifier())
    def record_audit(alert_sent: bool) -> str:
        """Write the run's one model_decisions row (a re-run replaces it), whatever its path."""
        from datetime import UTC

        from velocast.gcp.storage import Storage
        from velocast.gcp.warehouse import Warehouse
        from velocast.monitor.audit import audit_row, write_audit
        from velocast.orchestration.monitor_facts import gather_facts

        run = _run()
        facts = gather_facts(get_current_context(), run)
        row = audit_row(facts, alert_sent=bool(alert_sent), logged_at=datetime.now(UTC))
        return write_audit(run, Warehouse(run.settings), Storage(run.settings), row)

    @task(task_id=ids.FAIL_IF_A_TASK_FAILED, trigger_rule="one_failed", retries=0)
    def fail_if_a_task_failed() -> Any:
        """Fails the run when a task failed (the join tasks succeed on every path); skipped otherwise."""
        from velocast.errors import VelocastError

        raise VelocastError("a task of this run failed: see the audit row and the Discord message")

    health = check_champion()
    drift = measure_drift(health)
    branch = choose_branch(health, drift)
    waited = wait()
    submitted = submit_training(health)
    branch >> waited
    branch >> submitted
    submitted.xcom_arg >> wait_for_training
    training: Output[TrainingOutcome] = Output(wait_for_training.output)
    deployment = choose_deployment(training, health)
    rejected, skipped, promoted = reject(), skip(), promote(training, health)
    for follower in (rejected, skipped, promoted):
        deployment >> follower
    notified = notify()
    for upstream in (waited, rejected, skipped, promoted, drift, branch, deployment):
        upstream >> notified
    audited = record_audit(notified)
    watcher = fail_if_a_task_failed()
    for work in (health, drift, branch, waited, submitted, deployment, rejected, skipped, promoted):
        work.xcom_arg >> watcher
    wait_for_training >> watcher
    audited.xcom_arg >> watcher


monitor_and_train()
