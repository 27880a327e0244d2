"""What a weekly ``monitor_and_train`` run learnt, gathered by its join tasks from XCom and task states.

The join tasks (``notify``, ``record_audit``) run whatever happened before them (trigger rule
``all_done``), so they cannot take the upstream outputs as arguments: a skipped or failed task has
none. They read each known task's output from XCom (absent → None) and the states of the run's
task instances, and the errors the failed tasks recorded (``taskflow.record_failure``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from velocast.monitor.run import MonitorFacts, MonitorRun, TaskFailure
from velocast.orchestration.taskflow import FAILURE_XCOM_KEY

CHECK_CHAMPION: Final = "check_champion"
MEASURE_DRIFT: Final = "measure_drift"
CHOOSE_BRANCH: Final = "choose_branch"
WAIT: Final = "wait"
SUBMIT_TRAINING: Final = "submit_training"
WAIT_FOR_TRAINING: Final = "wait_for_training"
CHOOSE_DEPLOYMENT: Final = "choose_deployment"
REJECT: Final = "reject"
SKIP: Final = "skip"
PROMOTE: Final = "promote"
NOTIFY: Final = "notify"
RECORD_AUDIT: Final = "record_audit"
FAIL_IF_A_TASK_FAILED: Final = "fail_if_a_task_failed"
# The tasks whose failure fails the run and is reported (the join tasks and the watcher excluded).
WORK_TASKS: Final = (
    CHECK_CHAMPION,
    MEASURE_DRIFT,
    CHOOSE_BRANCH,
    WAIT,
    SUBMIT_TRAINING,
    WAIT_FOR_TRAINING,
    CHOOSE_DEPLOYMENT,
    REJECT,
    SKIP,
    PROMOTE,
)
# Branch tasks push what they decided under this key (their return value is the task to follow).
OUTCOME_XCOM_KEY: Final = "outcome"


def _pull(ti: Any, task_id: str, key: str = "return_value") -> Any:
    return ti.xcom_pull(task_ids=task_id, key=key, default=None)


def failures(ti: Any, dag_id: str, run_id: str) -> list[TaskFailure]:
    """The work tasks that failed in this run, in DAG order, with the errors they recorded."""
    states: Mapping[str, Any] = ti.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
    found = []
    for task_id in WORK_TASKS:
        if str(states.get(task_id)) == "failed":
            recorded = _pull(ti, task_id, FAILURE_XCOM_KEY) or {}
            found.append(TaskFailure(task_id, str(recorded.get("error") or "failed (see the task's log)")))
    return found


def gather_facts(context: Mapping[str, Any], run: MonitorRun) -> MonitorFacts:
    """Everything the run's tasks produced so far, and its failures."""
    ti = context["ti"]
    health = _pull(ti, CHECK_CHAMPION)
    return MonitorFacts(
        run_id=run.run_id,
        run_day=run.run_day,
        env=health.env if health is not None else run.settings.serving_env,
        params=run.params,
        health=health,
        drift=_pull(ti, MEASURE_DRIFT),
        branch=_pull(ti, CHOOSE_BRANCH, OUTCOME_XCOM_KEY),
        submitted=_pull(ti, SUBMIT_TRAINING),
        training=_pull(ti, WAIT_FOR_TRAINING),
        deployment=_pull(ti, CHOOSE_DEPLOYMENT, OUTCOME_XCOM_KEY),
        promotion=_pull(ti, PROMOTE),
        failures=failures(ti, context["dag"].dag_id, run.run_id),
    )


__all__ = [
    "CHECK_CHAMPION",
    "CHOOSE_BRANCH",
    "CHOOSE_DEPLOYMENT",
    "FAIL_IF_A_TASK_FAILED",
    "MEASURE_DRIFT",
    "NOTIFY",
    "OUTCOME_XCOM_KEY",
    "PROMOTE",
    "RECORD_AUDIT",
    "REJECT",
    "SKIP",
    "SUBMIT_TRAINING",
    "WAIT",
    "WAIT_FOR_TRAINING",
    "WORK_TASKS",
    "failures",
    "gather_facts",
]
