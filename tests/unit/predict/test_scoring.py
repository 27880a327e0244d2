"""Scoring a day: forecasts of record, the last-week baseline on the same rows, metrics, completeness."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from velocast.contract import PARIS, PREDICTION_SCORES, load_contract
from velocast.gcp.warehouse import write_contract_parquet
from velocast.predict.days import local_hours
from velocast.predict.scoring import (
    complete_days,
    forecasts_of_record,
    is_complete_day,
    score_day,
    scored_days,
    wape,
)

SCORED_AT = datetime(2024, 6, 8, 2, 5, tzinfo=UTC)


def _predictions(day: date, counters: list[str], values: np.ndarray, **columns: object) -> pd.DataFrame:
    hours = local_hours(day)
    frame = pd.DataFrame(
        {
            "counter_id": np.repeat(counters, len(hours)),
            "predicted_for": hours * len(counters),
            "predicted_count": values,
        }
    )
    defaults: dict[str, object] = {
        "prediction_date": day,
        "model_type": "hgb",
        "model_run_id": "run-b",
        "model_version": "3",
    }
    return frame.assign(**{**defaults, **columns})


def _actuals(day: date, counters: list[str], values: np.ndarray) -> pd.DataFrame:
    hours = local_hours(day)
    return pd.DataFrame(
        {
            "counter_id": np.repeat(counters, len(hours)),
            "counted_at": hours * len(counters),
            "hourly_count": values,
        }
    )


def _reference(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R², RMSE, MAE and WAPE written out with numpy, independent of the code under test."""
    error = true - pred
    return {
        "r2": 1 - float(np.sum(error**2)) / float(np.sum((true - true.mean()) ** 2)),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "wape": float(np.sum(np.abs(error)) / np.sum(np.abs(true))),
    }


def test_scores_equal_an_independent_numpy_recomputation() -> None:
    day, counters = date(2024, 6, 8), ["c1", "c2", "c3"]
    rng = np.random.default_rng(7)
    actual = rng.integers(0, 400, size=72)
    last_week = rng.integers(0, 400, size=72)
    forecast = actual + rng.normal(0, 30, size=72)
    (found,) = score_day(
        day,
        _predictions(day, counters, forecast),
        _actuals(day, counters, actual),
        _actuals(day - timedelta(days=7), counters, last_week),
    )
    row = found.row(airflow_run_id="scheduled__2024-06-08", scored_at=SCORED_AT)
    expected_model = _reference(actual.astype(float), forecast)
    expected_baseline = _reference(actual.astype(float), last_week.astype(float))
    for name, value in expected_model.items():
        assert row[name] == pytest.approx(value, rel=1e-12)
    for name, value in expected_baseline.items():
        assert row[f"baseline_{name}"] == pytest.approx(value, rel=1e-12)
    assert (row["n_rows"], row["n_rows_left_out"]) == (72, 0)
    assert (row["scored_date"], row["model_type"], row["model_run_id"], row["model_version"]) == (
        day,
        "hgb",
        "run-b",
        "3",
    )
    assert (row["airflow_run_id"], row["scored_at"]) == ("scheduled__2024-06-08", SCORED_AT)


def test_the_row_has_exactly_the_contract_columns() -> None:
    day = date(2024, 6, 8)
    (found,) = score_day(
        day,
        _predictions(day, ["c1"], np.arange(24.0)),
        _actuals(day, ["c1"], np.arange(24)),
        _actuals(day - timedelta(days=7), ["c1"], np.arange(24)),
    )
    row = found.row(airflow_run_id="r", scored_at=SCORED_AT)
    assert list(row) == load_contract(PREDICTION_SCORES).column_names
    assert row["baseline_rmse"] == 0.0
    with pytest.raises(ValueError, match="timezone-aware"):
        found.row(airflow_run_id="r", scored_at=datetime(2024, 6, 8))


def test_rows_without_a_last_week_actual_are_left_out_of_both_scores() -> None:
    day, counters = date(2024, 6, 8), ["c1", "new"]
    rng = np.random.default_rng(1)
    actual = rng.integers(1, 100, size=48)
    forecast = rng.uniform(0, 100, size=48)
    last_week = _actuals(day - timedelta(days=7), ["c1"], rng.integers(1, 100, size=24))
    last_week = last_week.drop(index=[5])  # a gap last week
    (found,) = score_day(
        day, _predictions(day, counters, forecast), _actuals(day, counters, actual), last_week
    )
    assert (found.n_rows, found.n_rows_left_out) == (23, 25)
    kept = np.r_[0:5, 6:24]
    assert found.model.metrics.mae == pytest.approx(float(np.mean(np.abs(actual[kept] - forecast[kept]))))
    baseline = last_week["hourly_count"].to_numpy(dtype=float)
    assert found.baseline.metrics.mae == pytest.approx(float(np.mean(np.abs(actual[kept] - baseline))))


def test_rows_without_an_actual_are_left_out_too() -> None:
    day = date(2024, 6, 8)
    actuals = _actuals(day, ["c1"], np.arange(24)).iloc[:20]
    (found,) = score_day(
        day,
        _predictions(day, ["c1"], np.arange(24.0)),
        actuals,
        _actuals(day - timedelta(days=7), ["c1"], np.arange(24)),
    )
    assert (found.n_rows, found.n_rows_left_out) == (20, 4)


def test_wape_with_zero_actuals_is_undefined_and_stored_as_null() -> None:
    assert math.isnan(wape([0, 0, 0], [1, 2, 3]))
    assert wape([0, 10], [5, 5]) == pytest.approx(1.0)
    assert math.isnan(wape([1, 2], [1, float("nan")]))
    with pytest.raises(ValueError, match="empty"):
        wape([], [])
    with pytest.raises(ValueError, match="2 values"):
        wape([1, 2], [1])
    day = date(2024, 6, 8)
    (found,) = score_day(
        day,
        _predictions(day, ["c1"], np.full(24, 2.0)),
        _actuals(day, ["c1"], np.zeros(24, dtype=int)),
        _actuals(day - timedelta(days=7), ["c1"], np.zeros(24, dtype=int)),
    )
    row = found.row(airflow_run_id="r", scored_at=SCORED_AT)
    assert row["wape"] is None
    assert row["baseline_wape"] is None
    assert row["r2"] is None  # constant actuals: R² undefined
    assert row["mae"] == pytest.approx(2.0)
    assert row["baseline_mae"] == 0.0


def test_the_latest_run_is_the_forecast_of_record_per_counter_and_hour() -> None:
    day = date(2024, 6, 8)
    day_ahead = _predictions(
        day, ["c1", "c2"], np.full(48, 50.0), prediction_date=day - timedelta(days=1), model_run_id="run-a"
    )
    same_day = _predictions(day, ["c1"], np.full(24, 10.0), model_run_id="run-b", model_version="4")
    predictions = pd.concat([day_ahead, same_day], ignore_index=True)
    of_record = forecasts_of_record(predictions)
    assert len(of_record) == 48
    assert set(of_record.loc[of_record["counter_id"] == "c1", "model_run_id"]) == {"run-b"}
    assert set(of_record.loc[of_record["counter_id"] == "c2", "model_run_id"]) == {"run-a"}
    actual = np.full(48, 10)
    scores = score_day(
        day,
        predictions,
        _actuals(day, ["c1", "c2"], actual),
        _actuals(day - timedelta(days=7), ["c1", "c2"], actual),
    )
    assert [(s.model_run_id, s.model_version, s.n_rows) for s in scores] == [
        ("run-a", "3", 24),
        ("run-b", "4", 24),
    ]
    assert scores[1].model.metrics.mae == 0.0
    assert scores[0].model.metrics.mae == 40.0


def test_forecasts_of_other_days_are_ignored() -> None:
    day = date(2024, 6, 8)
    predictions = pd.concat(
        [
            _predictions(day, ["c1"], np.ones(24)),
            _predictions(day + timedelta(days=1), ["c1"], np.ones(24), prediction_date=day),
        ],
        ignore_index=True,
    )
    (found,) = score_day(
        day,
        predictions,
        _actuals(day, ["c1"], np.ones(24)),
        _actuals(day - timedelta(days=7), ["c1"], np.ones(24)),
    )
    assert found.n_rows + found.n_rows_left_out == 24


def test_the_baseline_follows_the_local_clock_across_the_autumn_change() -> None:
    # 2024-11-03 (24 h) looks back to 2024-10-27 (25 h): the same wall-clock hour, the first 02:00.
    day, week_before = date(2024, 11, 3), date(2024, 10, 27)
    last_week = _actuals(week_before, ["c1"], np.arange(25) * 10)
    actual = np.arange(24) * 10 + 1
    (found,) = score_day(
        day, _predictions(day, ["c1"], actual.astype(float)), _actuals(day, ["c1"], actual), last_week
    )
    expected_baseline = np.r_[0, 10, 20, np.arange(4, 25) * 10]  # 02:00 → first reading (20), then 03:00 = 40
    assert found.n_rows == 24
    assert found.baseline.metrics.mae == pytest.approx(float(np.mean(np.abs(actual - expected_baseline))))
    hours = local_hours(day)
    # 168 UTC hours back would pair midnight with 01:00 a week earlier: the wrong hour.
    assert (hours[0] - timedelta(days=7)).astimezone(PARIS).hour == 1


def test_the_autumn_day_scores_25_rows_and_the_spring_echo_leaves_out_two_oclock() -> None:
    autumn = date(2024, 10, 27)
    (found,) = score_day(
        autumn,
        _predictions(autumn, ["c1"], np.ones(25)),
        _actuals(autumn, ["c1"], np.arange(25)),
        _actuals(autumn - timedelta(days=7), ["c1"], np.arange(24)),
    )
    assert (found.n_rows, found.n_rows_left_out) == (25, 0)
    echo = date(2024, 4, 7)  # a week after the spring day, whose 02:00 did not exist
    (found,) = score_day(
        echo,
        _predictions(echo, ["c1"], np.ones(24)),
        _actuals(echo, ["c1"], np.arange(24)),
        _actuals(echo - timedelta(days=7), ["c1"], np.arange(23)),
    )
    assert (found.n_rows, found.n_rows_left_out) == (23, 1)


def test_a_run_with_nothing_to_score_gets_no_row() -> None:
    day = date(2024, 6, 8)
    empty_week = _actuals(day - timedelta(days=7), ["other"], np.ones(24))
    assert (
        score_day(day, _predictions(day, ["c1"], np.ones(24)), _actuals(day, ["c1"], np.ones(24)), empty_week)
        == []
    )


def test_inconsistent_inputs_are_refused() -> None:
    day = date(2024, 6, 8)
    predictions = _predictions(day, ["c1"], np.ones(24))
    actuals = _actuals(day, ["c1"], np.ones(24))
    with pytest.raises(ValueError, match="duplicate"):
        score_day(day, predictions, pd.concat([actuals, actuals.iloc[:1]]), actuals)
    mixed = predictions.assign(model_type=["hgb"] * 12 + ["rf"] * 12)
    with pytest.raises(ValueError, match="several model_type"):
        score_day(day, mixed, actuals, _actuals(day - timedelta(days=7), ["c1"], np.ones(24)))
    with pytest.raises(ValueError, match="lack columns"):
        score_day(day, predictions.drop(columns=["model_run_id"]), actuals, actuals)


@pytest.mark.parametrize(
    ("day", "hours", "complete"),
    [
        (date(2024, 3, 31), {"a": 23, "b": 23}, True),
        (date(2024, 3, 31), {"a": 23, "b": 22}, False),
        (date(2024, 10, 27), {"a": 25}, True),
        (date(2024, 10, 27), {"a": 24}, False),
        (date(2024, 6, 1), {"a": 24, "silent": 0}, False),
        (date(2024, 6, 1), {}, False),
    ],
)
def test_is_complete_day(day: date, hours: dict[str, int], complete: bool) -> None:
    assert is_complete_day(day, hours) is complete


def test_complete_days_from_query_rows() -> None:
    rows = [
        {"scored_date": date(2024, 3, 30), "counter_id": "a", "hours": 24},
        {"scored_date": "2024-03-31", "counter_id": "a", "hours": 23},
        {"scored_date": datetime(2024, 4, 1), "counter_id": "a", "hours": 24},
        {"scored_date": date(2024, 4, 1), "counter_id": "b", "hours": 3},
    ]
    assert complete_days(rows) == [date(2024, 3, 30), date(2024, 3, 31)]


def test_scored_days_are_the_seven_before_the_run() -> None:
    assert scored_days(date(2024, 6, 8)) == [date(2024, 6, day) for day in range(1, 8)]


def test_score_rows_load_as_the_contract_types(tmp_path: Path) -> None:
    day = date(2024, 6, 8)
    (found,) = score_day(
        day,
        _predictions(day, ["c1"], np.full(24, 2.0), model_version=None),
        _actuals(day, ["c1"], np.zeros(24, dtype=int)),
        _actuals(day - timedelta(days=7), ["c1"], np.arange(24)),
    )
    contract = load_contract(PREDICTION_SCORES)
    frame = pd.DataFrame([found.row(airflow_run_id="r", scored_at=SCORED_AT)])
    table = pq.read_table(write_contract_parquet(frame, contract, tmp_path / "scores.parquet"))
    assert table.column_names == contract.column_names
    assert table.column("wape").to_pylist() == [None]
    assert table.column("model_version").to_pylist() == [None]
    assert table.column("n_rows").to_pylist() == [24]
