"""tracking, without a tracking server: the champion aliases and the metric names of a run."""

from __future__ import annotations

import math

import pytest

from velocast.ml.evaluation import DoubleEvaluation, FrameInfo, Metrics, ModelScores
from velocast.ml.registry_entries import UnknownEnvironmentError
from velocast.ml.tracking import champion_alias, evaluation_metrics


def test_champion_aliases() -> None:
    assert champion_alias("PROD") == "champion"
    assert champion_alias("dev") == "champion-dev"
    with pytest.raises(UnknownEnvironmentError):
        champion_alias("staging")


def scores(model_type: str, r2_current: float) -> ModelScores:
    return ModelScores(
        model_type,
        Metrics(r2=0.8, rmse=10.0, mae=5.0, n_rows=100),
        Metrics(r2=r2_current, rmse=12.0, mae=6.0, n_rows=40),
    )


def test_evaluation_metrics_name_the_role_the_frame_and_the_metric() -> None:
    frame = FrameInfo(100, None, None)
    alone = DoubleEvaluation(scores("hgb", 0.7), None, frame, frame)
    assert evaluation_metrics(alone) == {
        "challenger.test_baseline.r2": 0.8,
        "challenger.test_baseline.rmse": 10.0,
        "challenger.test_baseline.mae": 5.0,
        "challenger.test_baseline.n_rows": 100.0,
        "challenger.test_current.r2": 0.7,
        "challenger.test_current.rmse": 12.0,
        "challenger.test_current.mae": 6.0,
        "challenger.test_current.n_rows": 40.0,
    }
    # An undefined metric is left out rather than logged as NaN.
    both = DoubleEvaluation(scores("hgb", 0.7), scores("rf", math.nan), frame, frame)
    logged = evaluation_metrics(both)
    assert logged["champion.test_baseline.r2"] == 0.8
    assert "champion.test_current.r2" not in logged
    assert logged["champion.test_current.rmse"] == 12.0
