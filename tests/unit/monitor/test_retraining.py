"""The RETRAIN path's pure parts: the request, the finished job, the branch, the promotion's confirmation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pytest

from velocast.errors import ConflictError, RequestError, UnavailableError
from velocast.monitor.retraining import (
    PromotionNotConfirmedError,
    TrainingJobFailedError,
    deployment_branch,
    promote_and_confirm,
    training_outcome,
    training_request,
)
from velocast.monitor.run import MonitorParams, MonitorRun, TrainingOutcome
from velocast.settings import VelocastSettings


def run(**settings: Any) -> MonitorRun:
    return MonitorRun(
        run_day=date(2024, 3, 31),  # the spring clock change: the window still starts at local midnight
        run_id="scheduled__2024-03-30T23:00:00+00:00",
        params=MonitorParams(force_retrain=True, test_mode=True, model_type="rf"),
        settings=VelocastSettings(**settings),
    )


def test_the_request_is_the_sliding_window_before_the_run_day() -> None:
    body = training_request(run(monitor_train_window_days=30), "prod")
    assert body == {
        "model_type": "rf",
        "env": "prod",
        "test_mode": True,
        "current_window": {"start": "2024-02-29T23:00:00+00:00", "end": "2024-03-30T23:00:00+00:00"},
    }
    with_baseline = training_request(run(monitor_baseline_uri="gs://b/elsewhere"), "dev")
    assert with_baseline["data_source"] == "gs://b/elsewhere"


def job(status: str = "succeeded", decision: str | None = "DEPLOY", **extra: Any) -> dict[str, Any]:
    metrics = {"r2": 0.8, "rmse": 30.0, "mae": 15.0, "n_rows": 100}
    return {
        "job_id": "j1",
        "status": status,
        "request": {"model_type": "hgb", "test_mode": False},
        "run_id": "run-new",
        "evaluation": {
            "challenger": {
                "model_type": "hgb",
                "test_baseline": metrics,
                "test_current": metrics | {"r2": 0.9},
            },
            "champion": None,
        },
        "deployment_decision": {
            "decision": decision,
            "reason": f"{decision}: because",
            "thresholds": {"g": 0.02},
        },
        "timings": {"total": 12.5},
        **extra,
    }


def test_a_finished_job_becomes_the_outcome() -> None:
    outcome = training_outcome(job())
    assert (outcome.run_id, outcome.decision, outcome.model_type, outcome.seconds) == (
        "run-new",
        "DEPLOY",
        "hgb",
        12.5,
    )
    assert outcome.scores["challenger"]["test_current"] == {"r2": 0.9, "rmse": 30.0, "mae": 15.0}
    assert "champion" not in outcome.scores
    assert outcome.decision_thresholds == {"g": 0.02}


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_job_that_did_not_succeed_fails_with_its_error(status: str) -> None:
    with pytest.raises(TrainingJobFailedError, match="BaselineError: gs://x does not exist") as caught:
        training_outcome(job(status, error={"type": "BaselineError", "message": "gs://x does not exist"}))
    assert isinstance(caught.value, RequestError) and "champion is unchanged" in str(caught.value)


def outcome(decision: str | None, *, test_mode: bool = False) -> TrainingOutcome:
    return TrainingOutcome(
        job_id="j1",
        status="succeeded",
        model_type="hgb",
        test_mode=test_mode,
        run_id="run-new",
        decision=decision,
        decision_reason=f"{decision}: because",
    )


@pytest.mark.parametrize(
    ("decision", "test_mode", "env", "expected"),
    [
        ("REJECT", False, "prod", "reject"),
        ("SKIP", False, "prod", "skip"),
        ("DEPLOY", False, "prod", "promote"),
        ("DEPLOY", True, "dev", "promote"),
        ("DEPLOY", True, "prod", "skip"),
    ],
)
def test_deployment_branch(decision: str, test_mode: bool, env: str, expected: str) -> None:
    branch, reason = deployment_branch(outcome(decision, test_mode=test_mode), env)
    assert branch == expected
    assert reason.startswith(f"{decision}: because")
    if test_mode and env == "prod":
        assert "never becomes a prod champion" in reason


def test_no_decision_is_a_failure() -> None:
    with pytest.raises(TrainingJobFailedError, match="no decision"):
        deployment_branch(outcome(None), "dev")


# --- the promotion's confirmation, against a scripted sidecar (the real one: tests/dags) ----------


@dataclass
class Line:
    pid: int
    served: dict[str, str]


@dataclass
class Summary:
    env: str
    workers: int
    workers_serving: list[Line]


@dataclass
class Promotion:
    previous_champion: dict[str, Any] | None


@dataclass
class ScriptedSidecar:
    answers: list[Summary]
    promoted: list[tuple[str, str, str | None]] = field(default_factory=list)

    def promote(self, model_type: str, run_id: str, *, env: str | None = None) -> Promotion:
        self.promoted.append((model_type, run_id, env))
        return Promotion({"run_id": "run-old"})

    def model_summary(self) -> Summary:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def answer(*served: str, workers: int = 2, env: str = "prod") -> Summary:
    """A /model_summary whose worker board says worker ``i + 1`` serves ``served[i]``."""
    lines = [Line(pid, {"hgb": run_id}) for pid, run_id in enumerate(served, start=1)]
    return Summary(env=env, workers=workers, workers_serving=lines)


def test_promotion_waits_for_every_worker() -> None:
    sidecar = ScriptedSidecar(
        [answer("run-old", "run-old"), answer("run-new", "run-old"), answer("run-new", "run-new")]
    )
    clock = Clock()
    result = promote_and_confirm(run(), sidecar, outcome("DEPLOY"), "prod", sleep=clock.sleep, clock=clock)
    assert sidecar.promoted == [("hgb", "run-new", "prod")]
    assert (result.promoted, result.previous_run_id, result.confirmed_workers, result.workers) == (
        True,
        "run-old",
        [1, 2],
        2,
    )


def test_a_worker_missing_from_the_board_is_not_a_confirmation() -> None:
    clock = Clock()
    sidecar = ScriptedSidecar([answer("run-new"), answer("run-new", "run-new")])
    result = promote_and_confirm(run(), sidecar, outcome("DEPLOY"), "prod", sleep=clock.sleep, clock=clock)
    assert result.confirmed_workers == [1, 2] and clock.now > 0


def test_promotion_not_served_in_time_is_retryable() -> None:
    clock = Clock()
    sidecar = ScriptedSidecar([answer("run-new", "run-old")])
    with pytest.raises(PromotionNotConfirmedError, match="only 1 of 2") as caught:
        promote_and_confirm(
            run(monitor_promotion_confirm_seconds=5),
            sidecar,
            outcome("DEPLOY"),
            "prod",
            sleep=clock.sleep,
            clock=clock,
        )
    assert isinstance(caught.value, UnavailableError) and not isinstance(caught.value, ConflictError)


def test_a_sidecar_serving_another_env_cannot_confirm() -> None:
    clock = Clock()
    sidecar = ScriptedSidecar([answer("run-x", env="dev")])
    result = promote_and_confirm(run(), sidecar, outcome("DEPLOY"), "prod", sleep=clock.sleep, clock=clock)
    assert result.promoted and result.confirmed_workers == [] and "serves dev" in (result.note or "")


def test_dates_are_utc_aware() -> None:
    start, end = run().training_window()
    assert start.tzinfo is not None and end == datetime(2024, 3, 30, 23, tzinfo=UTC)
