"""``MonitorFacts`` of each path of the weekly run, for the audit and message tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from velocast.monitor.run import (
    BranchOutcome,
    ChampionHealth,
    DeploymentOutcome,
    DriftOutcome,
    MonitorFacts,
    MonitorParams,
    PromotionOutcome,
    TaskFailure,
    TrainingOutcome,
    TrainingSubmitted,
)

START, END = datetime(2024, 3, 3, 23, tzinfo=UTC), datetime(2024, 3, 10, 23, tzinfo=UTC)
HEALTH = ChampionHealth(
    env="prod",
    window_start=START,
    window_end=END,
    champion_run_id="run-old",
    champion_model_type="hgb",
    champion_model_uri="models:/m/1",
    n_rows=16_000,
    n_rows_left_out=20,
    r2=0.81,
    rmse=31.0,
    mae=16.0,
    baseline_r2=0.74,
    baseline_rmse=40.0,
    baseline_mae=20.0,
    rows_uri="gs://b/recent.parquet",
    counters=99,
)
DRIFT = DriftOutcome(
    measured=True,
    share=2 / 3,
    drifted_columns=["hourly_count", "daily_total"],
    columns=["hourly_count", "daily_total", "residual"],
    counter_share=0.4,
    drifted_counters=["c1", "c2"],
    counters_compared=5,
    method="wasserstein",
    reference="last 28 days",
    reference_rows=60_000,
    current_rows=16_000,
    report_uri="gs://b/drift_reports/r/report.html",
    seconds=3.2,
)
THRESHOLDS = {"min_r2": 0.65, "drift_share": 0.5, "proactive_r2": 0.7}
SCORES: dict[str, Any] = {
    "challenger": {
        "test_baseline": {"r2": 0.86, "rmse": 29.0, "mae": 14.0},
        "test_current": {"r2": 0.88, "rmse": 28.0, "mae": 13.5},
    },
    "champion": {
        "test_baseline": {"r2": 0.85, "rmse": 30.0, "mae": 15.0},
        "test_current": {"r2": 0.80, "rmse": 33.0, "mae": 16.0},
    },
}


def facts(path: str, **changes: Any) -> MonitorFacts:
    base: dict[str, Any] = {
        "run_id": "scheduled__2024-03-10T23:00:00+00:00",
        "run_day": date(2024, 3, 11),
        "env": "prod",
        "params": MonitorParams(),
        "health": HEALTH,
        "drift": DRIFT,
    }
    retrain = {
        "branch": BranchOutcome("RETRAIN", "drift", "RETRAIN: drift share 0.667 ≥ 0.50", THRESHOLDS),
        "submitted": TrainingSubmitted("job-1", "hgb", False, START, END),
    }

    def trained(decision: str) -> TrainingOutcome:
        return TrainingOutcome(
            job_id="job-1",
            status="succeeded",
            model_type="hgb",
            test_mode=False,
            run_id="run-new",
            decision=decision,
            decision_reason=f"{decision}: the reason",
            decision_thresholds={"min_r2_gain": 0.02},
            scores=SCORES,
            seconds=20.0,
        )

    if path == "wait":
        base["branch"] = BranchOutcome("WAIT", "healthy", "WAIT: fine", THRESHOLDS)
    elif path in ("reject", "skip"):
        base |= retrain | {
            "training": trained(path.upper()),
            "deployment": DeploymentOutcome(path, f"{path.upper()}: the reason"),
        }
    elif path == "deploy":
        base |= retrain | {
            "training": trained("DEPLOY"),
            "deployment": DeploymentOutcome("promote", "DEPLOY: the reason"),
            "promotion": PromotionOutcome(True, "run-new", "hgb", "prod", "run-old", [11, 12], 2, 1.5),
        }
    elif path == "failed_training":
        base |= retrain | {
            "failures": [TaskFailure("wait_for_training", "TrainingJobFailedError: job-1 failed: no data")]
        }
    elif path == "failed_check":
        base = {
            **base,
            "health": None,
            "drift": None,
            "failures": [TaskFailure("check_champion", "SidecarUnavailableError: down")],
        }
    return MonitorFacts(**(base | changes))
