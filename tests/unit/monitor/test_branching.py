"""WAIT or RETRAIN: every rule, its precedence and its thresholds."""

from __future__ import annotations

import math

import pytest

from velocast.monitor.branching import Branch, BranchReason, BranchThresholds, choose_branch
from velocast.settings import VelocastSettings


def choose(**given: object) -> tuple[Branch, BranchReason]:
    arguments: dict[str, object] = {
        "force": False,
        "has_champion": True,
        "champion_r2": 0.85,
        "drift_share": 0.1,
    }
    arguments.update(given)
    choice = choose_branch(**arguments)  # type: ignore[arg-type]
    return choice.branch, choice.reason


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, (Branch.WAIT, BranchReason.HEALTHY)),
        ({"force": True}, (Branch.RETRAIN, BranchReason.FORCE)),
        ({"force": True, "has_champion": False}, (Branch.RETRAIN, BranchReason.FORCE)),
        ({"has_champion": False, "champion_r2": None}, (Branch.RETRAIN, BranchReason.NO_CHAMPION)),
        ({"champion_r2": 0.64}, (Branch.RETRAIN, BranchReason.R2_BELOW)),
        ({"champion_r2": 0.50, "drift_share": 0.9}, (Branch.RETRAIN, BranchReason.R2_BELOW)),
        ({"champion_r2": 0.68, "drift_share": 0.5}, (Branch.RETRAIN, BranchReason.PROACTIVE)),
        ({"champion_r2": 0.90, "drift_share": 0.5}, (Branch.RETRAIN, BranchReason.DRIFT)),
        ({"champion_r2": 0.68, "drift_share": 0.49}, (Branch.WAIT, BranchReason.HEALTHY)),
        ({"champion_r2": None, "drift_share": 0.2}, (Branch.WAIT, BranchReason.NOT_SCORED)),
        ({"champion_r2": None, "drift_share": 0.7}, (Branch.RETRAIN, BranchReason.DRIFT)),
        ({"champion_r2": math.nan, "drift_share": None}, (Branch.WAIT, BranchReason.NOT_SCORED)),
        ({"drift_share": None}, (Branch.WAIT, BranchReason.HEALTHY)),
    ],
)
def test_rules_in_order(given: dict[str, object], expected: tuple[Branch, BranchReason]) -> None:
    assert choose(**given) == expected


def test_values_at_a_threshold() -> None:
    assert choose(champion_r2=0.65) == (Branch.WAIT, BranchReason.HEALTHY)  # not below
    assert choose(champion_r2=0.70, drift_share=0.5) == (Branch.RETRAIN, BranchReason.DRIFT)  # not proactive
    # 0.1 + 0.2 + 0.2 = 0.5000000000000001 and 0.3 + 0.2 = 0.5: float noise never decides.
    assert choose(drift_share=0.3 + 0.2) == (Branch.RETRAIN, BranchReason.DRIFT)
    assert choose(champion_r2=0.45 + 0.2) == (Branch.WAIT, BranchReason.HEALTHY)


def test_thresholds_come_from_settings() -> None:
    settings = VelocastSettings(monitor_min_r2=0.8, monitor_drift_share=0.3, monitor_proactive_r2=0.9)
    limits = BranchThresholds.from_settings(settings)
    assert limits.to_dict() == {"min_r2": 0.8, "drift_share": 0.3, "proactive_r2": 0.9}
    assert choose(champion_r2=0.79, thresholds=limits) == (Branch.RETRAIN, BranchReason.R2_BELOW)
    assert choose(champion_r2=0.85, drift_share=0.3, thresholds=limits) == (
        Branch.RETRAIN,
        BranchReason.PROACTIVE,
    )
    assert choose(champion_r2=0.95, drift_share=0.29, thresholds=limits) == (
        Branch.WAIT,
        BranchReason.HEALTHY,
    )


def test_the_detail_gives_the_numbers() -> None:
    choice = choose_branch(force=False, has_champion=True, champion_r2=0.612, drift_share=0.333)
    assert "0.612" in choice.detail and "0.65" in choice.detail and "0.333" in choice.detail


@pytest.mark.parametrize("share", [0.0, 1.5, math.inf])
def test_bad_thresholds_are_refused(share: float) -> None:
    with pytest.raises(ValueError, match="drift_share"):
        BranchThresholds(drift_share=share)
