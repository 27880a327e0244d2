"""The one Discord message of a run: its headline per path, the numbers, the failure, the length."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.monitor.facts_samples import DRIFT, facts
from velocast.monitor.messages import MAX_CHARS, headline, run_message
from velocast.monitor.run import TaskFailure

URL = "http://airflow/dags/monitor_and_train/runs/r"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("deploy", "DEPLOY: champion `run-old` → `run-new`"),
        ("reject", "REJECT"),
        ("skip", "SKIP"),
        ("wait", "WAIT, with notable drift"),
        ("failed_training", "FAILED in wait_for_training"),
        ("failed_check", "FAILED in check_champion"),
    ],
)
def test_headline_per_path(path: str, expected: str) -> None:
    assert expected in headline(facts(path))


def test_a_quiet_week_says_healthy() -> None:
    assert "healthy" in headline(facts("wait", drift=replace(DRIFT, share=0.0, drifted_columns=[])))


def test_promotion_message_gives_both_models_on_both_sets() -> None:
    text = run_message(facts("deploy"), run_url=URL)
    assert "challenger R² test_baseline 0.860, test_current 0.880" in text
    assert "champion R² test_baseline 0.850, test_current 0.800" in text
    assert "drift share 0.667" in text and "gs://b/drift_reports/r/report.html" in text and URL in text


def test_failure_message_names_task_error_and_next_step() -> None:
    text = run_message(facts("failed_training"), run_url=URL)
    assert "task `wait_for_training` failed: TrainingJobFailedError: job-1 failed: no data" in text
    assert "champion is unchanged" in text
    promoted_failed = facts(
        "deploy", failures=[TaskFailure("promote", "PromotionNotConfirmedError: only 1 of 2")]
    )
    assert "champion is unchanged" not in run_message(promoted_failed, run_url=URL)


def test_long_errors_fit_discord() -> None:
    text = run_message(
        facts("failed_check", failures=[TaskFailure("check_champion", "x" * 5000)]), run_url=URL
    )
    assert len(text) <= MAX_CHARS
