"""The deployment decision after a double evaluation: REJECT, SKIP or DEPLOY.

Rules, in order (thresholds from settings, defaults in brackets):

1. REJECT if a challenger R² is undefined (NaN: non-finite predictions or a constant target);
2. REJECT if the challenger's R² on ``test_baseline`` is below ``min_r2_baseline`` [0.60]:
   a challenger that forgot the reference data is never deployed, however good it is lately;
3. DEPLOY if there is no champion yet;
4. DEPLOY if the champion's R² on ``test_current`` is undefined (it cannot be compared, and the
   challenger has passed rule 2);
5. DEPLOY if the challenger's R² on ``test_current`` exceeds the champion's by more than
   ``min_r2_gain`` [0.02];
6. SKIP otherwise: not better enough to be worth a swap.

Values exactly at a threshold do not cross it (R² = 0.60 is not rejected; a gain of exactly 0.02
is a SKIP), up to a tolerance of 1e-9 so that float noise (0.62 - 0.60 = 0.020000000000000018)
never decides. Pure: no I/O, everything needed for the audit row is in the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from velocast.ml.evaluation import DoubleEvaluation

if TYPE_CHECKING:
    from velocast.settings import VelocastSettings

# Metric values are floats that went through arithmetic and JSON: a threshold is crossed only
# by more than this.
TOLERANCE: Final = 1e-9


class Decision(StrEnum):
    REJECT = "REJECT"
    SKIP = "SKIP"
    DEPLOY = "DEPLOY"


@dataclass(frozen=True)
class DecisionThresholds:
    min_r2_baseline: float = 0.60
    min_r2_gain: float = 0.02

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_r2_baseline):
            raise ValueError(f"min_r2_baseline must be finite, got {self.min_r2_baseline}")
        if not math.isfinite(self.min_r2_gain) or self.min_r2_gain < 0:
            raise ValueError(f"min_r2_gain must be a finite number >= 0, got {self.min_r2_gain}")

    @classmethod
    def from_settings(cls, settings: VelocastSettings) -> DecisionThresholds:
        return cls(
            min_r2_baseline=settings.decision_min_r2_baseline,
            min_r2_gain=settings.decision_min_r2_gain,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"min_r2_baseline": self.min_r2_baseline, "min_r2_gain": self.min_r2_gain}


@dataclass(frozen=True)
class DecisionResult:
    decision: Decision
    reason: str
    thresholds: DecisionThresholds
    # The R² values the rules read (None when absent or undefined), by name.
    metrics: dict[str, float | None]
    evaluation: DoubleEvaluation = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "reason": self.reason,
            "thresholds": self.thresholds.to_dict(),
            "metrics": dict(self.metrics),
            "evaluation": self.evaluation.to_dict(),
        }


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def decide(evaluation: DoubleEvaluation, thresholds: DecisionThresholds | None = None) -> DecisionResult:
    """Apply the rules of the module docstring to ``evaluation``."""
    limits = thresholds if thresholds is not None else DecisionThresholds()
    challenger = evaluation.challenger
    champion = evaluation.champion
    name = f"challenger {challenger.model_type!r}"
    c_base = challenger.test_baseline.r2
    c_cur = challenger.test_current.r2
    # NaN stands for "no champion" too; the branches below tell the two apart.
    k_cur = champion.test_current.r2 if champion is not None else math.nan
    gain = c_cur - k_cur
    metrics: dict[str, float | None] = {
        "challenger_r2_test_baseline": _or_none(c_base),
        "challenger_r2_test_current": _or_none(c_cur),
        "champion_r2_test_baseline": _or_none(champion.test_baseline.r2) if champion else None,
        "champion_r2_test_current": _or_none(k_cur),
        "r2_gain_test_current": _or_none(gain),
    }

    def result(decision: Decision, reason: str) -> DecisionResult:
        return DecisionResult(decision, reason, limits, metrics, evaluation)

    for frame, value in (("test_baseline", c_base), ("test_current", c_cur)):
        if math.isnan(value):
            return result(
                Decision.REJECT,
                f"REJECT: {name} R² on {frame} is undefined (NaN: non-finite predictions or a "
                f"constant target over {getattr(challenger, frame).n_rows} rows).",
            )
    if c_base < limits.min_r2_baseline - TOLERANCE:
        return result(
            Decision.REJECT,
            f"REJECT: {name} R² on test_baseline is {_fmt(c_base)}, below the minimum "
            f"{_fmt(limits.min_r2_baseline)}.",
        )
    passed = f"{name} passes test_baseline (R² {_fmt(c_base)} >= {_fmt(limits.min_r2_baseline)})"
    if champion is None:
        return result(
            Decision.DEPLOY,
            f"DEPLOY: there is no champion yet and {passed}; R² on test_current {_fmt(c_cur)}.",
        )
    if math.isnan(k_cur):
        return result(
            Decision.DEPLOY,
            f"DEPLOY: champion {champion.model_type!r} R² on test_current is undefined (NaN) and "
            f"{passed}; its R² on test_current is {_fmt(c_cur)}.",
        )
    comparison = (
        f"R² on test_current {_fmt(c_cur)} vs champion {champion.model_type!r} {_fmt(k_cur)}: "
        f"gain {gain:+.4f}"
    )
    if gain > limits.min_r2_gain + TOLERANCE:
        return result(
            Decision.DEPLOY,
            f"DEPLOY: {passed}; {comparison} > required {_fmt(limits.min_r2_gain)}.",
        )
    return result(
        Decision.SKIP,
        f"SKIP: {passed}, but {comparison} <= required {_fmt(limits.min_r2_gain)}.",
    )
