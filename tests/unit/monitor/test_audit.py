"""The audit row of every path: the contract's columns, the right values, nothing invented."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.unit.monitor.facts_samples import facts
from velocast import contract
from velocast.monitor.audit import audit_row

LOGGED = datetime(2024, 3, 11, 0, 5, tzinfo=UTC)
PATHS = ("wait", "reject", "skip", "deploy", "failed_training", "failed_check")


@pytest.mark.parametrize("path", PATHS)
def test_every_path_fills_exactly_the_contract(path: str) -> None:
    row = audit_row(facts(path), alert_sent=True, logged_at=LOGGED)
    table = contract.load_contract(contract.MODEL_DECISIONS)
    assert list(row) == [column.name for column in table.columns]
    for column in table.columns:
        if column.mode == "REQUIRED":
            assert row[column.name] is not None, column.name


@pytest.mark.parametrize(
    ("path", "status", "branch", "decision", "promoted"),
    [
        ("wait", "SUCCESS", "WAIT", None, False),
        ("reject", "SUCCESS", "RETRAIN", "REJECT", False),
        ("skip", "SUCCESS", "RETRAIN", "SKIP", False),
        ("deploy", "SUCCESS", "RETRAIN", "DEPLOY", True),
        ("failed_training", "FAILED", "RETRAIN", None, False),
        ("failed_check", "FAILED", None, None, False),
    ],
)
def test_outcome_columns(
    path: str, status: str, branch: str | None, decision: str | None, promoted: bool
) -> None:
    row = audit_row(facts(path), alert_sent=False, logged_at=LOGGED)
    assert (row["status"], row["branch"], row["decision"], row["promoted"]) == (
        status,
        branch,
        decision,
        promoted,
    )


def test_the_numbers_come_from_the_steps() -> None:
    row = audit_row(facts("deploy"), alert_sent=True, logged_at=LOGGED)
    assert (
        row["champion_recent_r2"] == 0.81
        and row["baseline_recent_r2"] == 0.74
        and row["recent_rows"] == 16_000
    )
    assert row["drift_share"] == pytest.approx(2 / 3) and row["drifted_columns"] == "hourly_count,daily_total"
    assert row["drifted_counter_share"] == 0.4 and row["drift_details"]["drifted_counters"] == ["c1", "c2"]
    assert (row["champion_r2_test_current"], row["challenger_r2_test_current"]) == (0.80, 0.88)
    assert (row["challenger_rmse_test_current"], row["challenger_mae_test_current"]) == (28.0, 13.5)
    assert (row["challenger_run_id"], row["previous_champion_run_id"]) == ("run-new", "run-old")
    assert row["thresholds"] == {
        "branch": {"min_r2": 0.65, "drift_share": 0.5, "proactive_r2": 0.7},
        "decision": {"min_r2_gain": 0.02},
    }
    assert row["branch_reason"].startswith("drift: ") and row["alert_sent"] is True


def test_failures_name_the_task_and_the_error() -> None:
    row = audit_row(facts("failed_training"), alert_sent=True, logged_at=LOGGED)
    assert row["failed_tasks"] == "wait_for_training" and "no data" in row["error"]
    assert row["training_job_id"] == "job-1" and row["challenger_run_id"] is None
    checked = audit_row(facts("failed_check"), alert_sent=False, logged_at=LOGGED)
    assert (
        checked["champion_run_id"] is None
        and checked["drift_share"] is None
        and checked["model_type"] == "hgb"
    )


def test_nan_is_stored_as_null_and_naive_times_are_refused() -> None:
    from dataclasses import replace

    from tests.unit.monitor.facts_samples import HEALTH

    row = audit_row(facts("wait", health=replace(HEALTH, r2=float("nan"))), alert_sent=True, logged_at=LOGGED)
    assert row["champion_recent_r2"] is None
    with pytest.raises(ValueError, match="timezone-aware"):
        audit_row(facts("wait"), alert_sent=True, logged_at=datetime(2024, 3, 11))
