"""The one Discord message of a weekly run: what happened, the numbers, and where to look.

One message per run, whatever its path: a promotion (old → new champion, both models on both test
sets), a rejection or a skip (why, the numbers), a WAIT (with the drift when it is notable), a
failure (which task, the error). Pure: ``velocast.orchestration.notify`` posts it.
"""

from __future__ import annotations

from velocast.monitor.run import MonitorFacts

MAX_CHARS = 1900
NOTABLE_DRIFT = 0.25


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _scores(facts: MonitorFacts, role: str) -> str:
    training = facts.training
    if training is None or role not in training.scores:
        return f"{role}: none"
    frames = training.scores[role]
    return (
        f"{role} R² test_baseline {_num(frames.get('test_baseline', {}).get('r2'))}, "
        f"test_current {_num(frames.get('test_current', {}).get('r2'))}"
    )


def _health(facts: MonitorFacts) -> str:
    health = facts.health
    if health is None:
        return "champion: not checked"
    if not health.has_champion:
        return "champion: none yet"
    return (
        f"champion `{health.champion_run_id}` ({health.champion_model_type}) on the last days: "
        f"R² {_num(health.r2)}, RMSE {_num(health.rmse)}, MAE {_num(health.mae)} "
        f"(last-week baseline R² {_num(health.baseline_r2)}, {health.n_rows} rows)"
    )


def _drift(facts: MonitorFacts) -> str:
    drift = facts.drift
    if drift is None:
        return "drift: not measured"
    if not drift.measured:
        return f"drift: not measured ({drift.not_measured_reason})"
    counters = (
        ""
        if drift.counter_share is None
        else f"; {len(drift.drifted_counters)}/{drift.counters_compared} counters drifted"
    )
    columns = ", ".join(drift.drifted_columns) or "none"
    return f"drift share {_num(drift.share)} (drifted: {columns}){counters}; report {drift.report_uri}"


def headline(facts: MonitorFacts) -> str:
    """The first line: the outcome of the run in a few words."""
    if facts.failed:
        return f"❌ FAILED in {', '.join(f.task_id for f in facts.failures)}"
    if facts.promotion is not None and facts.promotion.promoted:
        previous = facts.promotion.previous_run_id or "none"
        return f"🚀 DEPLOY: champion `{previous}` → `{facts.promotion.run_id}`"
    if facts.deployment is not None:
        return f"{'⛔' if facts.deployment.branch == 'reject' else '⏭️'} {facts.deployment.branch.upper()}"
    if facts.branch is not None and facts.branch.branch == "WAIT":
        drift = facts.drift
        notable = drift is not None and drift.share is not None and drift.share >= NOTABLE_DRIFT
        return "⚠️ WAIT, with notable drift" if notable else "✅ WAIT: the champion is healthy"
    return "ℹ️ run finished"


def run_message(facts: MonitorFacts, *, run_url: str) -> str:
    """The whole message (Discord's limit is 2,000 characters: trimmed to ``MAX_CHARS``)."""
    lines = [
        f"**velocast monitor_and_train** ({facts.env}) {headline(facts)}",
        f"run `{facts.run_id}` for {facts.run_day.isoformat()}"
        + (" · test_mode" if facts.params.test_mode else ""),
        _health(facts),
        _drift(facts),
    ]
    if facts.branch is not None:
        lines.append(f"branch {facts.branch.branch} ({facts.branch.reason}): {facts.branch.detail}")
    if facts.training is not None:
        lines.append(f"challenger `{facts.training.run_id}` ({facts.training.model_type})")
        lines.append(_scores(facts, "challenger"))
        lines.append(_scores(facts, "champion"))
    if facts.deployment is not None:
        lines.append(f"decision: {facts.deployment.reason}")
    for failure in facts.failures:
        lines.append(f"task `{failure.task_id}` failed: {failure.error[:600]}")
    if facts.failed:
        unchanged = all(failure.task_id != "promote" for failure in facts.failures)
        lines.append(
            "next: read the task's log, fix the cause, then clear the failed task"
            + ("; the champion is unchanged" if unchanged else "; check which champion the sidecar serves")
        )
    lines.append(run_url)
    text = "\n".join(lines)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


__all__ = ["headline", "run_message"]
