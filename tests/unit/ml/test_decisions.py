"""The REJECT / SKIP / DEPLOY rules of the weekly double evaluation."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velocast.ml.decisions import Decision, DecisionThresholds, decide
from velocast.ml.evaluation import DoubleEvaluation, FrameInfo, Metrics, ModelScores
from velocast.settings import VelocastSettings


def metrics(r2: float) -> Metrics:
    return Metrics(r2=r2, rmse=10.0, mae=5.0, n_rows=100)


def evaluation(
    challenger_baseline: float,
    challenger_current: float,
    champion_baseline: float | None = None,
    champion_current: float | None = None,
) -> DoubleEvaluation:
    champion = None
    if champion_current is not None:
        base = champion_baseline if champion_baseline is not None else 0.8
        champion = ModelScores("rf", metrics(base), metrics(champion_current))
    return DoubleEvaluation(
        challenger=ModelScores("hgb", metrics(challenger_baseline), metrics(challenger_current)),
        champion=champion,
        test_baseline=FrameInfo(100, "2024-01-01T00:00:00+00:00", "2024-01-31T23:00:00+00:00"),
        test_current=FrameInfo(100, "2024-03-01T00:00:00+00:00", "2024-03-06T23:00:00+00:00"),
    )


def test_reject_below_the_baseline_minimum_even_if_better_lately() -> None:
    result = decide(evaluation(0.55, 0.95, champion_current=0.70))
    assert result.decision is Decision.REJECT
    assert "0.5500" in result.reason
    assert "0.6000" in result.reason
    assert "test_baseline" in result.reason


def test_deploy_when_there_is_no_champion() -> None:
    result = decide(evaluation(0.70, 0.65))
    assert result.decision is Decision.DEPLOY
    assert "no champion" in result.reason
    assert result.metrics["champion_r2_test_current"] is None
    assert result.metrics["r2_gain_test_current"] is None


def test_deploy_with_enough_gain_on_test_current() -> None:
    result = decide(evaluation(0.80, 0.85, champion_current=0.80))
    assert result.decision is Decision.DEPLOY
    assert "0.8500" in result.reason
    assert "0.8000" in result.reason
    assert "+0.0500" in result.reason
    assert result.metrics["r2_gain_test_current"] == pytest.approx(0.05)


@pytest.mark.parametrize("challenger_current", [0.81, 0.79, 0.50])
def test_skip_when_not_better_enough(challenger_current: float) -> None:
    result = decide(evaluation(0.80, challenger_current, champion_current=0.80))
    assert result.decision is Decision.SKIP
    assert "0.0200" in result.reason


def test_baseline_r2_exactly_at_the_minimum_passes() -> None:
    assert decide(evaluation(0.60, 0.70)).decision is Decision.DEPLOY
    assert decide(evaluation(0.60 - 1e-6, 0.70)).decision is Decision.REJECT


def test_gain_exactly_at_the_margin_is_a_skip() -> None:
    # 0.62 - 0.60 is 0.020000000000000018 in floats: the tolerance keeps it at the boundary.
    assert decide(evaluation(0.70, 0.62, champion_current=0.60)).decision is Decision.SKIP
    assert decide(evaluation(0.70, 0.6201, champion_current=0.60)).decision is Decision.DEPLOY


@pytest.mark.parametrize(
    ("challenger_baseline", "challenger_current", "frame"),
    [(math.nan, 0.9, "test_baseline"), (0.9, math.nan, "test_current")],
)
def test_a_nan_challenger_r2_is_rejected(
    challenger_baseline: float, challenger_current: float, frame: str
) -> None:
    for champion_current in (None, 0.5):
        result = decide(
            evaluation(challenger_baseline, challenger_current, champion_current=champion_current)
        )
        assert result.decision is Decision.REJECT
        assert f"on {frame} is undefined" in result.reason


def test_a_nan_champion_r2_lets_a_valid_challenger_deploy() -> None:
    result = decide(evaluation(0.75, 0.70, champion_current=math.nan))
    assert result.decision is Decision.DEPLOY
    assert "champion 'rf' R² on test_current is undefined" in result.reason


def test_thresholds_come_from_settings() -> None:
    settings = VelocastSettings(decision_min_r2_baseline=0.8, decision_min_r2_gain=0.1)
    thresholds = DecisionThresholds.from_settings(settings)
    assert thresholds == DecisionThresholds(min_r2_baseline=0.8, min_r2_gain=0.1)
    assert decide(evaluation(0.75, 0.9), thresholds).decision is Decision.REJECT
    assert decide(evaluation(0.85, 0.85, champion_current=0.80), thresholds).decision is Decision.SKIP
    assert decide(evaluation(0.85, 0.95, champion_current=0.80), thresholds).decision is Decision.DEPLOY


def test_default_thresholds_match_the_settings_defaults() -> None:
    assert DecisionThresholds.from_settings(VelocastSettings()) == DecisionThresholds()


@pytest.mark.parametrize(("baseline", "gain"), [(math.nan, 0.02), (0.6, -0.01), (0.6, math.inf)])
def test_invalid_thresholds_are_refused(baseline: float, gain: float) -> None:
    with pytest.raises(ValueError, match="min_r2"):
        DecisionThresholds(min_r2_baseline=baseline, min_r2_gain=gain)


def test_result_is_strict_json_with_everything_for_the_audit() -> None:
    result = decide(evaluation(0.9, math.nan, champion_current=0.8))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["decision"] == "REJECT"
    assert data["thresholds"] == {"min_r2_baseline": 0.6, "min_r2_gain": 0.02}
    assert data["metrics"]["challenger_r2_test_current"] is None
    assert data["metrics"]["champion_r2_test_current"] == 0.8
    assert data["evaluation"]["challenger"]["test_current"]["r2"] is None
    assert data["evaluation"]["champion"]["model_type"] == "rf"
    assert data["reason"] == result.reason


def test_decision_survives_a_json_round_trip_of_the_evaluation() -> None:
    original = evaluation(0.8, 0.9, champion_current=0.85)
    rebuilt = DoubleEvaluation.from_dict(json.loads(json.dumps(original.to_dict())))
    assert rebuilt == original
    assert decide(rebuilt).to_dict() == decide(original).to_dict()


r2_values = st.floats(min_value=-2, max_value=1, allow_nan=False)


@given(r2_values, r2_values, st.one_of(st.none(), r2_values))
def test_decision_follows_the_rules(c_base: float, c_cur: float, k_cur: float | None) -> None:
    result = decide(evaluation(c_base, c_cur, champion_current=k_cur))
    if c_base < 0.60 - 1e-9:
        expected = Decision.REJECT
    elif k_cur is None or c_cur - k_cur > 0.02 + 1e-9:
        expected = Decision.DEPLOY
    else:
        expected = Decision.SKIP
    assert result.decision is expected
    assert result.reason.startswith(expected.value)
