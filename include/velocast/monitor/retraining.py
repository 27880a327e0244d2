"""The RETRAIN path: the training request, the finished job read back, REJECT/SKIP/DEPLOY, promotion.

The sidecar's training job (``POST /train``) trains a challenger on the baseline plus the sliding
window of the last ``monitor_train_window_days`` days of actuals (a BigQuery window, not rows),
scores challenger and champion on the same two test sets and decides (``velocast.ml.decisions``).
This module turns the run into that request, the finished job into a ``TrainingOutcome``, the
decision into the branch to follow, and a DEPLOY into a confirmed promotion: ``POST
/promote_champion``, then ``GET /model_summary`` until every live sidecar worker (its worker board,
``velocast_serving.workers``) serves the new run id.

``test_mode`` (a smoke run on a sample) never promotes in ``prod``: its DEPLOY goes to SKIP with
that reason (the registry would refuse it anyway).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from velocast.errors import ConflictError, RequestError, UnavailableError
from velocast.monitor.run import MonitorRun, PromotionOutcome, TrainingOutcome

log = logging.getLogger(__name__)

REJECT, SKIP, PROMOTE = "reject", "skip", "promote"


class TrainingJobFailedError(RequestError):
    """The training job failed: the champion is untouched; the job's error says why."""


class TrainingJobTimeoutError(ConflictError):
    """The training job ran longer than allowed and was cancelled."""


class PromotionNotConfirmedError(UnavailableError):
    """The promotion was written but not every sidecar worker served it in time (retried)."""


def training_request(run: MonitorRun, env: str) -> dict[str, Any]:
    """The ``POST /train`` body: the run's model type and test mode, the env, the sliding window."""
    start, end = run.training_window()
    body: dict[str, Any] = {
        "model_type": run.params.model_type,
        "env": env,
        "test_mode": run.params.test_mode,
        "current_window": {"start": start.isoformat(), "end": end.isoformat()},
    }
    if run.settings.monitor_baseline_uri:
        body["data_source"] = run.settings.monitor_baseline_uri
    return body


def _scores(evaluation: dict[str, Any] | None) -> dict[str, dict[str, dict[str, float | None]]]:
    scores: dict[str, dict[str, dict[str, float | None]]] = {}
    for role in ("challenger", "champion"):
        model = (evaluation or {}).get(role)
        if not model:
            continue
        scores[role] = {
            frame: {name: model[frame].get(name) for name in ("r2", "rmse", "mae")}
            for frame in ("test_baseline", "test_current")
            if isinstance(model.get(frame), dict)
        }
    return scores


def training_outcome(job: dict[str, Any]) -> TrainingOutcome:
    """A finished job (``GET /train/{id}``) as the run records it; raises if it did not succeed."""
    request = job.get("request") or {}
    job_id, status = str(job["job_id"]), str(job["status"])
    if status != "succeeded":
        error = job.get("error") or {}
        message = error.get("message") or f"the training job ended {status}"
        raise TrainingJobFailedError(
            f"training job {job_id} {status}: {error.get('type', 'error')}: {message} "
            "(the champion is unchanged)"
        )
    decision = job.get("deployment_decision") or {}
    timings = job.get("timings") or {}
    return TrainingOutcome(
        job_id=job_id,
        status=status,
        model_type=str(request.get("model_type") or (job.get("registry_entry") or {}).get("model_type")),
        test_mode=bool(request.get("test_mode", False)),
        run_id=job.get("run_id"),
        decision=decision.get("decision"),
        decision_reason=decision.get("reason"),
        decision_thresholds=dict(decision.get("thresholds") or {}),
        scores=_scores(job.get("evaluation")),
        seconds=timings.get("total"),
    )


def deployment_branch(outcome: TrainingOutcome, env: str) -> tuple[str, str]:
    """The task to follow (``reject``, ``skip`` or ``promote``) and why."""
    reason = outcome.decision_reason or ""
    if outcome.decision == "REJECT":
        return REJECT, reason
    if outcome.decision == "DEPLOY":
        if outcome.test_mode and env == "prod":
            return SKIP, f"{reason} Not promoted: a test_mode model never becomes a prod champion."
        return PROMOTE, reason
    if outcome.decision == "SKIP":
        return SKIP, reason
    raise TrainingJobFailedError(f"training job {outcome.job_id} gave no decision (got {outcome.decision!r})")


class PromoterPort(Protocol):
    def promote(self, model_type: str, run_id: str, *, env: str | None = None) -> Any: ...
    def model_summary(self) -> Any: ...


def promote_and_confirm(
    run: MonitorRun,
    sidecar: PromoterPort,
    outcome: TrainingOutcome,
    env: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PromotionOutcome:
    """Promote the challenger, then wait until each sidecar worker serves it (bounded)."""
    if outcome.run_id is None:
        raise TrainingJobFailedError(f"training job {outcome.job_id} succeeded without a run id")
    started = clock()
    promotion = sidecar.promote(outcome.model_type, outcome.run_id, env=env)
    previous = (promotion.previous_champion or {}).get("run_id")
    deadline = started + run.settings.monitor_promotion_confirm_seconds
    confirmed: list[int] = []
    note: str | None = None
    while True:
        summary = sidecar.model_summary()
        workers = max(1, int(summary.workers))
        if summary.env != env:
            # The sidecar serves another env: the registry changed, nothing it serves can confirm it.
            note = f"the sidecar serves {summary.env}, not {env}: not confirmed by serving"
            break
        # Every live worker's line on the sidecar's worker board (velocast_serving.workers).
        last_seen = {line.pid: line.served.get(outcome.model_type) for line in summary.workers_serving}
        confirmed = sorted(pid for pid, run_id in last_seen.items() if run_id == outcome.run_id)
        if len(confirmed) >= workers and len(confirmed) == len(last_seen):
            log.info("promoted %s (was %s); workers %s serve it", outcome.run_id, previous, confirmed)
            break
        if clock() >= deadline:
            raise PromotionNotConfirmedError(
                f"{outcome.run_id} is the {env} champion in the registry, but after "
                f"{run.settings.monitor_promotion_confirm_seconds:.0f} s only {len(confirmed)} of {workers} "
                f"sidecar worker(s) serve it (workers: {last_seen})"
            )
        sleep(0.25)
    return PromotionOutcome(
        promoted=True,
        run_id=outcome.run_id,
        model_type=outcome.model_type,
        env=env,
        previous_run_id=previous,
        confirmed_workers=confirmed,
        workers=workers,
        seconds=clock() - started,
        note=note,
    )


__all__ = [
    "PROMOTE",
    "REJECT",
    "SKIP",
    "PromotionNotConfirmedError",
    "TrainingJobFailedError",
    "TrainingJobTimeoutError",
    "deployment_branch",
    "promote_and_confirm",
    "training_outcome",
    "training_request",
]
