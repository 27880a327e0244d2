"""Metrics, temporal splits and the double evaluation."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from velocast.ml.evaluation import (
    DoubleEvaluation,
    Metrics,
    double_evaluate,
    evaluate,
    score,
    sliding_window_training_set,
    temporal_split,
)


@dataclass
class StubModel:
    """A predictor that records every frame it is asked about."""

    model_type: str
    rule: Callable[[pd.DataFrame], np.ndarray]
    seen: list[pd.DataFrame] = field(default_factory=list)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen.append(frame)
        return self.rule(frame)


def hourly_frame(start: str, hours: int, counters: int = 3, seed: int = 0) -> pd.DataFrame:
    """``counters`` rows per hour, shuffled (splits must not rely on the input order)."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    frame = pd.DataFrame(
        {
            "counter_id": np.tile([f"c{i}" for i in range(counters)], hours),
            "counted_at": np.repeat(times, counters),
            "hourly_count": rng.integers(0, 500, hours * counters),
        }
    )
    return frame.sample(frac=1, random_state=seed)


# --- metrics -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        ([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]),
        ([10, 20, 30, 40, 50], [12, 18, 33, 35, 55]),
        ([0, 1, 0, 1], [1, 0, 1, 0]),
        ([100.0, 200.0], [100.0, 200.0]),
    ],
)
def test_score_matches_sklearn(y_true: list[float], y_pred: list[float]) -> None:
    metrics = score(y_true, y_pred)
    assert metrics.r2 == pytest.approx(r2_score(y_true, y_pred))
    assert metrics.rmse == pytest.approx(math.sqrt(mean_squared_error(y_true, y_pred)))
    assert metrics.mae == pytest.approx(mean_absolute_error(y_true, y_pred))
    assert metrics.n_rows == len(y_true)


def test_score_known_values() -> None:
    metrics = score([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
    assert metrics.r2 == pytest.approx(0.9486081370449679)
    assert metrics.rmse == pytest.approx(math.sqrt(0.375))
    assert metrics.mae == pytest.approx(0.5)


def test_r2_is_nan_when_undefined() -> None:
    assert math.isnan(score([5.0, 5.0, 5.0], [5.0, 6.0, 4.0]).r2)
    single = score([5.0], [4.0])
    assert math.isnan(single.r2)
    assert single.mae == 1.0


def test_non_finite_predictions_give_nan_metrics() -> None:
    metrics = score([1.0, 2.0, 3.0], [1.0, np.nan, 3.0])
    assert math.isnan(metrics.r2)
    assert math.isnan(metrics.rmse)
    assert metrics.n_rows == 3


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [([], [], "empty"), ([1.0, 2.0], [1.0], "2 values"), ([1.0, np.nan], [1.0, 2.0], "non-finite")],
)
def test_score_refuses_bad_input(y_true: list[float], y_pred: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score(y_true, y_pred)


def test_metrics_to_dict_is_strict_json_and_round_trips() -> None:
    metrics = Metrics(r2=math.nan, rmse=1.5, mae=1.0, n_rows=4)
    data = json.loads(json.dumps(metrics.to_dict(), allow_nan=False))
    assert data == {"r2": None, "rmse": 1.5, "mae": 1.0, "n_rows": 4}
    rebuilt = Metrics.from_dict(data)
    assert math.isnan(rebuilt.r2)
    assert (rebuilt.rmse, rebuilt.mae, rebuilt.n_rows) == (1.5, 1.0, 4)


# --- evaluate ------------------------------------------------------------------------------------


def test_evaluate_hides_the_target_from_the_model() -> None:
    frame = hourly_frame("2024-01-01", hours=10)
    model = StubModel("stub", lambda f: np.full(len(f), 100.0))
    metrics = evaluate(model, frame)
    assert "hourly_count" not in model.seen[0].columns
    assert metrics.n_rows == len(frame)
    assert metrics.mae == pytest.approx(float(np.mean(np.abs(frame["hourly_count"] - 100.0))))


def test_evaluate_refuses_bad_frames_and_bad_models() -> None:
    model = StubModel("stub", lambda f: np.zeros(len(f)))
    with pytest.raises(ValueError, match="empty frame"):
        evaluate(model, hourly_frame("2024-01-01", hours=1).iloc[0:0])
    with pytest.raises(ValueError, match="no target column"):
        evaluate(model, hourly_frame("2024-01-01", hours=2).drop(columns="hourly_count"))
    short = StubModel("short", lambda f: np.zeros(len(f) - 1))
    with pytest.raises(ValueError, match="returned 5 predictions for 6 rows"):
        evaluate(short, hourly_frame("2024-01-01", hours=2))


# --- temporal split ------------------------------------------------------------------------------


def test_temporal_split_never_leaks() -> None:
    frame = hourly_frame("2024-01-01", hours=100, counters=7)
    train, test = temporal_split(frame)
    assert train["counted_at"].max() < test["counted_at"].min()
    assert set(train["counted_at"]).isdisjoint(set(test["counted_at"]))
    assert sorted([*train.index, *test.index]) == sorted(frame.index)
    assert len(test) == 20 * 7
    assert train["counted_at"].is_monotonic_increasing
    assert test["counted_at"].is_monotonic_increasing


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    rows_per_hour=st.lists(st.integers(min_value=1, max_value=30), min_size=2, max_size=60),
    test_fraction=st.floats(min_value=0.05, max_value=0.95),
)
def test_temporal_split_property(rows_per_hour: list[int], test_fraction: float) -> None:
    times = pd.date_range("2024-03-30", periods=len(rows_per_hour), freq="h", tz="Europe/Paris")
    frame = pd.DataFrame({"counted_at": np.repeat(times, rows_per_hour)}).sample(frac=1, random_state=1)
    frame["hourly_count"] = 1
    train, test = temporal_split(frame, test_fraction=test_fraction)
    assert not train.empty
    assert not test.empty
    assert train["counted_at"].max() < test["counted_at"].min()
    assert len(train) + len(test) == len(frame)
    # The cut is on an hour boundary, so the test share is off by less than one hour's rows.
    assert abs(len(test) - test_fraction * len(frame)) <= max(rows_per_hour) + 1


def test_temporal_split_groups_sub_hour_times_by_hour() -> None:
    frame = pd.DataFrame(
        {"counted_at": pd.to_datetime(["2024-01-01T00:00Z", "2024-01-01T00:30Z", "2024-01-01T01:15Z"])}
    )
    train, test = temporal_split(frame, test_fraction=0.5)
    assert len(train) == 2
    assert len(test) == 1


def test_temporal_split_keeps_train_non_empty_when_the_first_hour_is_huge() -> None:
    times = pd.to_datetime(["2024-01-01T00:00Z"] * 9 + ["2024-01-01T01:00Z"])
    train, test = temporal_split(pd.DataFrame({"counted_at": times}))
    assert (len(train), len(test)) == (9, 1)


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame({"counted_at": pd.to_datetime([], utc=True)}), {}, "empty"),
        (pd.DataFrame({"x": [1, 2]}), {}, "no time column"),
        (pd.DataFrame({"counted_at": pd.to_datetime(["2024-01-01T00:00Z"] * 3)}), {}, "two distinct hours"),
        (
            pd.DataFrame({"counted_at": pd.to_datetime(pd.Series(["2024-01-01", None]), utc=True)}),
            {},
            "1 rows have no",
        ),
        (hourly_frame("2024-01-01", 5), {"test_fraction": 1.0}, "test_fraction"),
        (hourly_frame("2024-01-01", 5), {"test_fraction": 0.0}, "test_fraction"),
    ],
)
def test_temporal_split_refuses_bad_input(frame: pd.DataFrame, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        temporal_split(frame, **kwargs)


# --- sliding window ------------------------------------------------------------------------------


def test_sliding_window_proportions() -> None:
    baseline = hourly_frame("2024-01-01", hours=24 * 31, counters=4, seed=1)
    recent = hourly_frame("2024-03-01", hours=24 * 30, counters=4, seed=2)
    train, test_current = sliding_window_training_set(baseline, recent)
    recent_train_rows = 24 * 24 * 4  # the first 24 of 30 days
    assert len(test_current) == 6 * 24 * 4
    assert len(train) == len(baseline) + recent_train_rows
    assert train["counted_at"].max() < test_current["counted_at"].min()
    assert test_current["counted_at"].min() == pd.Timestamp("2024-03-25", tz="UTC")
    assert train["counted_at"].is_monotonic_increasing
    # Every baseline row is kept, and the recent rows in train are the earliest ones.
    assert (train["counted_at"] < pd.Timestamp("2024-02-01", tz="UTC")).sum() == len(baseline)
    assert list(train.index) == list(range(len(train)))


def test_sliding_window_refuses_a_baseline_reaching_into_test_current() -> None:
    recent = hourly_frame("2024-03-01", hours=100)
    leaking = hourly_frame("2024-03-04", hours=10)
    with pytest.raises(ValueError, match="leak"):
        sliding_window_training_set(leaking, recent)


def test_sliding_window_refuses_empty_or_mismatched_frames() -> None:
    baseline = hourly_frame("2024-01-01", hours=10)
    recent = hourly_frame("2024-03-01", hours=10)
    with pytest.raises(ValueError, match="baseline_train is empty"):
        sliding_window_training_set(baseline.iloc[0:0], recent)
    with pytest.raises(ValueError, match="recent window is empty"):
        sliding_window_training_set(baseline, recent.iloc[0:0])
    with pytest.raises(ValueError, match=r"different columns: \['extra'\]"):
        sliding_window_training_set(baseline.assign(extra=1), recent)


# --- double evaluation ---------------------------------------------------------------------------


def test_double_evaluation_scores_both_models_on_the_same_frames() -> None:
    test_baseline = hourly_frame("2024-01-01", hours=48, seed=3)
    test_current = hourly_frame("2024-03-01", hours=48, seed=4)
    perfect_on_baseline = set(test_baseline["counted_at"])
    actual = pd.concat([test_baseline, test_current]).set_index(["counter_id", "counted_at"])["hourly_count"]

    def oracle_on_baseline(frame: pd.DataFrame) -> np.ndarray:
        truth = actual.loc[list(zip(frame["counter_id"], frame["counted_at"], strict=True))].to_numpy()
        return np.where(frame["counted_at"].isin(perfect_on_baseline), truth, 250.0)

    challenger = StubModel("hgb", oracle_on_baseline)
    champion = StubModel("rf", lambda f: np.full(len(f), 250.0))
    result = double_evaluate(challenger, champion, test_baseline, test_current)

    assert len(challenger.seen) == len(champion.seen) == 2
    for mine, theirs, source in zip(
        challenger.seen, champion.seen, (test_baseline, test_current), strict=True
    ):
        pd.testing.assert_frame_equal(mine, theirs)
        pd.testing.assert_frame_equal(mine, source.drop(columns="hourly_count"))
    assert result.challenger.test_baseline.r2 == 1.0
    assert result.challenger.test_current.r2 == pytest.approx(result.champion.test_current.r2)  # type: ignore[union-attr]
    assert result.test_baseline.n_rows == len(test_baseline)
    assert result.test_current.start == "2024-03-01T00:00:00+00:00"
    assert result.test_current.end == "2024-03-02T23:00:00+00:00"


def test_double_evaluation_without_champion_is_json_and_round_trips() -> None:
    frame = hourly_frame("2024-01-01", hours=5)
    challenger = StubModel("hgb", lambda f: np.full(len(f), np.nan))
    result = double_evaluate(challenger, None, frame, frame)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["champion"] is None
    assert data["challenger"]["model_type"] == "hgb"
    assert data["challenger"]["test_current"]["r2"] is None
    assert data["frames"]["test_baseline"]["n_rows"] == 15
    rebuilt = DoubleEvaluation.from_dict(data)
    assert rebuilt.champion is None
    assert math.isnan(rebuilt.challenger.test_current.r2)


def test_double_evaluation_refuses_empty_frames() -> None:
    frame = hourly_frame("2024-01-01", hours=5)
    model = StubModel("hgb", lambda f: np.zeros(len(f)))
    with pytest.raises(ValueError, match="test_current is empty"):
        double_evaluate(model, None, frame, frame.iloc[0:0])
    with pytest.raises(ValueError, match="test_baseline is empty"):
        double_evaluate(model, model, frame.iloc[0:0], frame)
