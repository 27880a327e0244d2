"""The audit row: exactly one ``model_decisions`` row per run, whatever its path.

``audit_row`` turns what the run learnt (``MonitorFacts``: WAIT, REJECT, SKIP, DEPLOY, or a failure
of any task) into the row the contract describes. ``write_audit`` writes it idempotently per run
id: the row is staged as newline-delimited JSON in GCS (the ``thresholds`` and ``drift_details``
JSON columns keep their structure, which Parquet cannot carry), loaded into a staging table by a
load job, then swapped in for any earlier row of the same run in one transaction: a re-run or a
retried task replaces its row, never adds one.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Protocol

from velocast import contract
from velocast.monitor.run import MonitorFacts, MonitorRun

MAX_ERROR_CHARS = 1000


class WarehousePort(Protocol):
    def table_id(self, contract: contract.TableContract) -> str: ...
    def ensure_table(self, contract: contract.TableContract) -> str: ...
    def drop_table(self, table_id: str) -> None: ...
    def load_json_rows(
        self, rows: Any, contract: contract.TableContract, table_id: str, *, storage: Any, object_name: str
    ) -> int: ...
    def replace_rows(self, replacements: Any) -> None: ...


class StoragePort(Protocol):
    def delete_prefix(self, prefix: str) -> int: ...


def _finite(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _score(facts: MonitorFacts, role: str, frame: str, metric: str) -> float | None:
    if facts.training is None:
        return None
    return _finite(facts.training.scores.get(role, {}).get(frame, {}).get(metric))


def audit_row(facts: MonitorFacts, *, alert_sent: bool, logged_at: datetime) -> dict[str, Any]:
    """The ``model_decisions`` row of the run (contract column names; None for what is unknown)."""
    if logged_at.tzinfo is None:
        raise ValueError("logged_at must be timezone-aware")
    health, drift, branch, training = facts.health, facts.drift, facts.branch, facts.training
    promotion, deployment = facts.promotion, facts.deployment
    # The branch's reason extends the job's (a test_mode DEPLOY not applied in prod says so).
    decision_reason = deployment.reason if deployment else (training.decision_reason if training else None)
    thresholds: dict[str, Any] = {}
    if branch is not None:
        thresholds["branch"] = branch.thresholds
    if training is not None and training.decision_thresholds:
        thresholds["decision"] = training.decision_thresholds
    drift_details = None
    if drift is not None:
        drift_details = {
            "measured": drift.measured,
            "not_measured_reason": drift.not_measured_reason,
            "columns": drift.columns,
            "method": drift.method,
            "reference": drift.reference,
            "reference_rows": drift.reference_rows,
            "current_rows": drift.current_rows,
            "counters_compared": drift.counters_compared,
            "drifted_counters": drift.drifted_counters,
            "seconds": round(drift.seconds, 3),
        }
    first_error = facts.failures[0].error[:MAX_ERROR_CHARS] if facts.failures else None
    model_type = (
        training.model_type
        if training is not None
        else (
            health.champion_model_type if health and health.champion_model_type else facts.params.model_type
        )
    )
    return {
        "airflow_run_id": facts.run_id,
        "run_date": facts.run_day,
        "status": "FAILED" if facts.failed else "SUCCESS",
        "failed_tasks": ",".join(f.task_id for f in facts.failures) or None,
        "error": first_error,
        "test_mode": facts.params.test_mode,
        "env": facts.env,
        "model_type": model_type,
        "champion_run_id": health.champion_run_id if health else None,
        "champion_recent_r2": _finite(health.r2) if health else None,
        "champion_recent_rmse": _finite(health.rmse) if health else None,
        "champion_recent_mae": _finite(health.mae) if health else None,
        "baseline_recent_r2": _finite(health.baseline_r2) if health else None,
        "recent_rows": health.n_rows if health and health.has_champion else None,
        "drift_share": _finite(drift.share) if drift else None,
        "drifted_columns": ",".join(drift.drifted_columns) if drift and drift.measured else None,
        "drifted_counter_share": _finite(drift.counter_share) if drift else None,
        "drift_details": drift_details,
        "drift_report_uri": drift.report_uri if drift else None,
        "branch": branch.branch if branch else None,
        "branch_reason": f"{branch.reason}: {branch.detail}" if branch else None,
        "training_job_id": (
            training.job_id if training else (facts.submitted.job_id if facts.submitted else None)
        ),
        "challenger_run_id": training.run_id if training else None,
        "champion_r2_test_baseline": _score(facts, "champion", "test_baseline", "r2"),
        "champion_r2_test_current": _score(facts, "champion", "test_current", "r2"),
        "challenger_r2_test_baseline": _score(facts, "challenger", "test_baseline", "r2"),
        "challenger_r2_test_current": _score(facts, "challenger", "test_current", "r2"),
        "challenger_rmse_test_current": _score(facts, "challenger", "test_current", "rmse"),
        "challenger_mae_test_current": _score(facts, "challenger", "test_current", "mae"),
        "decision": training.decision if training else None,
        "decision_reason": decision_reason,
        "thresholds": thresholds or None,
        "promoted": bool(promotion and promotion.promoted),
        "previous_champion_run_id": promotion.previous_run_id if promotion else None,
        "alert_sent": alert_sent,
        "logged_at": logged_at,
    }


def write_audit(run: MonitorRun, warehouse: WarehousePort, storage: StoragePort, row: dict[str, Any]) -> str:
    """Replace the run's audit row (one transaction); returns the table id."""
    decisions = contract.load_contract(contract.MODEL_DECISIONS)
    table_id = warehouse.ensure_table(decisions)
    staging = f"{table_id}__staging_{run.key}"
    object_name = f"{run.staging_prefix}/audit.json"
    warehouse.load_json_rows([row], decisions, staging, storage=storage, object_name=object_name)
    try:
        run_id = str(row["airflow_run_id"]).replace("\\", "\\\\").replace("'", "\\'")
        warehouse.replace_rows([(table_id, f"airflow_run_id = '{run_id}'", staging)])
    finally:
        warehouse.drop_table(staging)
    storage.delete_prefix(object_name)
    return table_id


__all__ = ["audit_row", "write_audit"]
