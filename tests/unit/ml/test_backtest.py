"""The rolling-origin backtest on real counts: what it forecasts from, what it scores, what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.ml.real_slice import COUNTERS, PARQUET
from velocast.data.normalize import normalize
from velocast.ml.backtest import BacktestError, BacktestResult, BacktestWindow, run_backtest

# Small but real: 5 counters, 2023-01-02 → 2023-04-03 (the March clock change inside the window).
FAST = {"max_iter": 60, "min_samples_leaf": 20, "interval_calibration_days": 7}
WINDOW = BacktestWindow.of("2023-03-13", "2023-03-13", "2023-03-30")


@pytest.fixture(scope="module")
def counts(shared_data: Path) -> pd.DataFrame:
    raw = pd.read_parquet(
        shared_data / PARQUET,
        filters=[
            ("id_compteur", "in", COUNTERS),
            ("annee_comptage", "=", 2023),
            ("mois_comptage", "in", [1, 2, 3, 4]),
        ],
    )
    frame = normalize(raw).frame
    local = frame["counted_at"].dt.tz_convert("Europe/Paris")
    keep = (local >= pd.Timestamp("2023-01-02", tz="Europe/Paris")) & (
        local < pd.Timestamp("2023-04-03", tz="Europe/Paris")
    )
    return frame.loc[keep, ["counter_id", "counter_name", "counted_at", "hourly_count"]].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def result(counts: pd.DataFrame) -> BacktestResult:
    return run_backtest(counts, WINDOW, hyperparams=FAST)


def _local_dates(frame: pd.DataFrame) -> pd.Series:
    return frame["counted_at"].dt.tz_convert("Europe/Paris").dt.date


def test_every_counted_hour_of_the_window_is_forecast_at_every_horizon(
    counts: pd.DataFrame, result: BacktestResult
) -> None:
    dates = _local_dates(counts)
    in_window = counts[(dates >= WINDOW.start.date()) & (dates < WINDOW.end.date())]
    predictions = result.predictions
    assert len(predictions) == 2 * len(in_window)
    assert sorted(predictions["horizon_days"].unique()) == [1, 2]
    for _, by_horizon in predictions.groupby("horizon_days"):
        assert by_horizon["counted_at"].tolist() == in_window["counted_at"].tolist()
        assert by_horizon["actual"].tolist() == in_window["hourly_count"].tolist()
    assert set(predictions["local_date"]) == set(
        in_window["counted_at"].dt.tz_convert("Europe/Paris").dt.date
    )
    assert predictions["history_used"].all()  # every counter has weeks of history here
    assert not predictions["recent_broken"].any()  # flagged only by drop_broken_runs models
    assert (predictions["lower"] <= predictions["prediction"]).all()
    assert (predictions["prediction"] <= predictions["upper"]).all()
    assert (predictions["lower"] >= 0).all()


def test_last_week_is_the_count_at_the_same_local_hour_seven_days_earlier(
    counts: pd.DataFrame, result: BacktestResult
) -> None:
    # Across the clock change: 2023-03-29 08:00 local (UTC+2) ← 2023-03-22 08:00 local (UTC+1).
    counter = COUNTERS[0]
    row = result.predictions[
        (result.predictions["counter_id"] == counter)
        & (result.predictions["counted_at"] == pd.Timestamp("2023-03-29 08:00", tz="Europe/Paris"))
    ]
    week_before = counts[
        (counts["counter_id"] == counter)
        & (counts["counted_at"] == pd.Timestamp("2023-03-22 08:00", tz="Europe/Paris"))
    ]["hourly_count"]
    assert len(row) == 2 and len(week_before) == 1
    assert (row["last_week"] == week_before.iloc[0]).all()


def test_forecasts_never_read_what_was_not_published_by_their_cut_off(
    counts: pd.DataFrame, result: BacktestResult
) -> None:
    # The window's last day is history for no forecast of the window (day D reads ≤ D − 3):
    # changing it changes the actuals scored, not one forecast.
    dates = _local_dates(counts)
    last_day = counts.copy()
    last = dates == pd.Timestamp("2023-03-29").date()
    last_day.loc[last, "hourly_count"] = last_day.loc[last, "hourly_count"] * 10 + 1000
    changed = run_backtest(last_day, WINDOW, hyperparams=FAST).predictions
    for column in ("prediction", "lower", "upper", "calendar_prediction"):
        assert np.array_equal(changed[column].to_numpy(), result.predictions[column].to_numpy())
    assert not np.array_equal(changed["actual"].to_numpy(), result.predictions["actual"].to_numpy())

    # A day that IS history (2023-03-20, read by the forecasts of the 23rd onwards) changes them:
    # the check above can fail (the fit gives the history stage a weight on this slice).
    stage = result.model.history_stage  # type: ignore[attr-defined]
    assert stage is not None and stage.weight > 0
    history_day = counts.copy()
    day = dates == pd.Timestamp("2023-03-20").date()
    history_day.loc[day, "hourly_count"] = history_day.loc[day, "hourly_count"] * 10 + 1000
    moved = run_backtest(history_day, WINDOW, hyperparams=FAST).predictions
    later = moved["local_date"] >= pd.Timestamp("2023-03-23").date()
    earlier = moved["local_date"] <= pd.Timestamp("2023-03-22").date()
    assert not np.array_equal(moved.loc[later, "prediction"], result.predictions.loc[later, "prediction"])
    assert np.array_equal(moved.loc[earlier, "prediction"], result.predictions.loc[earlier, "prediction"])


def test_the_three_forecasters_are_scored_on_the_same_rows(result: BacktestResult) -> None:
    metrics = result.metrics
    overall = metrics["overall"]
    scored = result.predictions[result.predictions["last_week"].notna()]
    assert overall["rows"] == len(scored)
    assert metrics["rows_without_last_week"] == len(result.predictions) - len(scored)
    actual = scored["actual"].to_numpy()
    for name, column in (
        ("model", "prediction"),
        ("calendar_only", "calendar_prediction"),
        ("last_week", "last_week"),
    ):
        error = scored[column].to_numpy() - actual
        assert overall[name]["mae"] == pytest.approx(np.mean(np.abs(error)))
        assert overall[name]["wape"] == pytest.approx(np.sum(np.abs(error)) / np.sum(actual))
        assert overall[name]["r2"] == pytest.approx(
            1 - np.sum(error**2) / np.sum((actual - actual.mean()) ** 2)
        )
    inside = (scored["lower"] <= scored["actual"]) & (scored["actual"] <= scored["upper"])
    assert overall["model"]["interval_coverage"] == pytest.approx(inside.mean())
    assert set(metrics["by_horizon"]) == {"1", "2"}
    assert list(metrics["by_week"]) == ["2023-W11", "2023-W12", "2023-W13"]
    assert sum(week["rows"] for week in metrics["by_week"].values()) == overall["rows"]
    assert metrics["window"] == {
        "train_until": "2023-03-13",
        "from": "2023-03-13",
        "to": "2023-03-30",
        "lag_days": 2,
        "horizon_days": 2,
    }
    assert metrics["hyperparams"]["history"] is True
    stage = result.model.history_stage  # type: ignore[attr-defined]
    assert metrics["history_stage"]["weight"] == stage.weight


def test_a_calendar_only_model_is_its_own_twin(counts: pd.DataFrame) -> None:
    predictions = run_backtest(counts, WINDOW, hyperparams={**FAST, "history": False}).predictions
    assert np.array_equal(predictions["prediction"].to_numpy(), predictions["calendar_prediction"].to_numpy())
    assert not predictions["history_used"].any()
    assert predictions["lower"].isna().all()


@pytest.mark.parametrize(
    ("train_until", "start", "end", "message"),
    [
        ("2023-03-13", "2023-03-12", "2023-03-20", "train_until ≤ from < to"),
        ("2023-03-13", "2023-03-20", "2023-03-20", "train_until ≤ from < to"),
        ("2023-03-13T10:00", "2023-03-13", "2023-03-20", "local date"),
        ("13/03/2023x", "2023-03-13", "2023-03-20", "not a date"),
    ],
)
def test_a_window_that_makes_no_sense_is_refused(
    train_until: str, start: str, end: str, message: str
) -> None:
    with pytest.raises(BacktestError, match=message):
        BacktestWindow.of(train_until, start, end)


def test_a_window_without_rows_is_refused(counts: pd.DataFrame) -> None:
    with pytest.raises(BacktestError, match="no counted row before 2022-01-01"):
        run_backtest(counts, BacktestWindow.of("2022-01-01", "2023-03-13", "2023-03-20"), hyperparams=FAST)
    with pytest.raises(BacktestError, match="no counted row from 2024-01-01"):
        run_backtest(counts, BacktestWindow.of("2023-03-13", "2024-01-01", "2024-01-08"), hyperparams=FAST)


def test_counts_of_a_broken_loop_are_scored_apart(counts: pd.DataFrame, result: BacktestResult) -> None:
    assert not result.predictions["actual_broken"].any()  # the real slice's loops all work
    assert result.metrics["overall_without_broken_actuals"] == result.metrics["overall"]
    # The first counter reads 0 from 2023-03-20 to 03-23 (4 days where hundreds of bikes pass).
    dark = counts.copy()
    dates = _local_dates(dark)
    out = (dark["counter_id"] == COUNTERS[0]) & (dates >= pd.Timestamp("2023-03-20").date())
    out &= dates <= pd.Timestamp("2023-03-23").date()
    dark.loc[out, "hourly_count"] = 0.0
    metrics = run_backtest(dark, WINDOW, hyperparams=FAST)
    predictions = metrics.predictions
    flagged = predictions["actual_broken"]
    assert set(predictions.loc[flagged, "counter_id"]) == {COUNTERS[0]}
    assert set(predictions.loc[flagged, "local_date"]) == {
        pd.Timestamp(f"2023-03-{d}").date() for d in (20, 21, 22, 23)
    }
    scored = predictions[predictions["last_week"].notna()]
    assert metrics.metrics["overall_without_broken_actuals"]["rows"] == int((~scored["actual_broken"]).sum())
    assert metrics.metrics["overall_without_broken_actuals"]["rows"] < metrics.metrics["overall"]["rows"]
