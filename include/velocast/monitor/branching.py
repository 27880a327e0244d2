"""WAIT or RETRAIN: the weekly run's first decision, from the champion's health and the drift.

Rules, in order (thresholds from settings, defaults in brackets), each with its reason code:

1. ``force``: the run was triggered with ``force_retrain``;
2. ``no_champion``: nothing serves yet, so the first model must be trained (bootstrap);
3. ``r2_below``: the champion's R² on the recent actuals is below ``monitor_min_r2`` [0.65];
4. ``proactive``: drift share ≥ ``monitor_drift_share`` [0.5] *and* R² below
   ``monitor_proactive_r2`` [0.70]: the model still passes but the world moved under it;
5. ``drift``: drift share ≥ ``monitor_drift_share`` on its own;
6. otherwise WAIT, reason ``healthy`` (or ``not_scored`` when the champion could not be scored on
   the recent days, which is no reason to retrain by itself).

A value exactly at a threshold: R² = 0.65 is not below; a share of exactly 0.5 drifted. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from velocast.settings import VelocastSettings

TOLERANCE = 1e-9


class Branch(StrEnum):
    WAIT = "WAIT"
    RETRAIN = "RETRAIN"


class BranchReason(StrEnum):
    FORCE = "force"
    NO_CHAMPION = "no_champion"
    R2_BELOW = "r2_below"
    PROACTIVE = "proactive"
    DRIFT = "drift"
    HEALTHY = "healthy"
    NOT_SCORED = "not_scored"


@dataclass(frozen=True)
class BranchThresholds:
    min_r2: float = 0.65
    drift_share: float = 0.5
    proactive_r2: float = 0.70

    def __post_init__(self) -> None:
        for name in ("min_r2", "drift_share", "proactive_r2"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")

    @classmethod
    def from_settings(cls, settings: VelocastSettings) -> BranchThresholds:
        return cls(
            min_r2=settings.monitor_min_r2,
            drift_share=settings.monitor_drift_share,
            proactive_r2=settings.monitor_proactive_r2,
        )

    def to_dict(self) -> dict[str, float]:
        return {"min_r2": self.min_r2, "drift_share": self.drift_share, "proactive_r2": self.proactive_r2}


@dataclass(frozen=True)
class BranchChoice:
    branch: Branch
    reason: BranchReason
    detail: str


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def choose_branch(  # noqa: PLR0911 (one return per rule)
    *,
    force: bool,
    has_champion: bool,
    champion_r2: float | None,
    drift_share: float | None,
    thresholds: BranchThresholds | None = None,
) -> BranchChoice:
    """Apply the rules of the module docstring; ``None`` (or NaN) means not measured."""
    limits = thresholds if thresholds is not None else BranchThresholds()
    r2 = None if champion_r2 is None or math.isnan(champion_r2) else champion_r2
    share = None if drift_share is None or math.isnan(drift_share) else drift_share
    facts = f"champion R² {_fmt(r2)}, drift share {_fmt(share)}"
    if force:
        return BranchChoice(
            Branch.RETRAIN, BranchReason.FORCE, f"RETRAIN: forced by the run's Params ({facts})."
        )
    if not has_champion:
        return BranchChoice(
            Branch.RETRAIN, BranchReason.NO_CHAMPION, "RETRAIN: no champion yet, the first one is trained."
        )
    low = r2 is not None and r2 < limits.min_r2 - TOLERANCE
    drifted = share is not None and share >= limits.drift_share - TOLERANCE
    if low:
        return BranchChoice(
            Branch.RETRAIN,
            BranchReason.R2_BELOW,
            f"RETRAIN: champion R² {_fmt(r2)} on the recent days is below {limits.min_r2:.2f} "
            f"(drift share {_fmt(share)}).",
        )
    if drifted and r2 is not None and r2 < limits.proactive_r2 - TOLERANCE:
        return BranchChoice(
            Branch.RETRAIN,
            BranchReason.PROACTIVE,
            f"RETRAIN: drift share {_fmt(share)} ≥ {limits.drift_share:.2f} and champion R² {_fmt(r2)} "
            f"< {limits.proactive_r2:.2f}: retrained before it fails.",
        )
    if drifted:
        return BranchChoice(
            Branch.RETRAIN,
            BranchReason.DRIFT,
            f"RETRAIN: drift share {_fmt(share)} ≥ {limits.drift_share:.2f} (champion R² {_fmt(r2)}).",
        )
    if r2 is None:
        return BranchChoice(
            Branch.WAIT,
            BranchReason.NOT_SCORED,
            f"WAIT: the champion could not be scored on the recent days; drift share {_fmt(share)}.",
        )
    return BranchChoice(
        Branch.WAIT,
        BranchReason.HEALTHY,
        f"WAIT: champion R² {_fmt(r2)} ≥ {limits.min_r2:.2f} and drift share {_fmt(share)} "
        f"< {limits.drift_share:.2f}.",
    )


__all__ = ["Branch", "BranchChoice", "BranchReason", "BranchThresholds", "choose_branch"]
