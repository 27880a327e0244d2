"""training_data: the sliding window that builds the training set and the two evaluation frames."""

from __future__ import annotations

import pandas as pd
import pytest

from velocast.ml.training_data import TEST_MODE_TRAIN_DAYS, prepare_current, training_frames
from velocast.ml.training_request import TrainingDataError
from velocast.settings import VelocastSettings


def frame(start: str, hours: int, counters: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    times = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    return pd.DataFrame(
        [{"counter_id": c, "counted_at": t, "hourly_count": 1} for t in times for c in counters]
    )


def test_sliding_window_frames() -> None:
    train, test = frame("2024-01-01", 80), frame("2024-01-04 08:00", 20)
    current = frame("2024-02-01", 100)
    frames = training_frames(train, test, current)
    assert len(frames.train) == len(train) + 160
    assert len(frames.test_current) == 40
    assert frames.test_baseline is test
    assert frames.data["current_rows"] == len(current)
    assert frames.data["train_end"] < frames.data["test_current_start"]


def test_without_current_data_test_current_is_test_baseline() -> None:
    train, test = frame("2024-01-01", 80), frame("2024-01-04 08:00", 20)
    frames = training_frames(train, test, None)
    assert frames.test_current is test
    assert frames.train is train


def test_current_data_inside_the_baseline_is_refused() -> None:
    train, test = frame("2024-01-01", 80), frame("2024-01-04 08:00", 20)
    with pytest.raises(TrainingDataError, match="not after the baseline"):
        training_frames(train, test, frame("2024-01-04 10:00", 50))


def test_test_mode_trains_on_the_last_days_only() -> None:
    train, test = frame("2024-01-01", 24 * 60), frame("2024-03-01", 24)
    frames = training_frames(train, test, None, test_mode=True)
    span = frames.train["counted_at"].max() - frames.train["counted_at"].min()
    assert span < pd.Timedelta(days=TEST_MODE_TRAIN_DAYS)
    assert len(frames.train) == 2 * 24 * TEST_MODE_TRAIN_DAYS


def test_current_rows_are_normalized_and_rows_without_a_count_dropped(settings: VelocastSettings) -> None:
    current = frame("2024-02-01", 3).astype({"hourly_count": "Int64"})
    current.loc[0, "hourly_count"] = pd.NA
    usable, dropped = prepare_current(current, settings)
    assert len(usable) == len(current) - 1
    assert dropped == {"rejected": 0, "no_counter_or_count": 1}


def test_current_data_without_rows_is_refused(settings: VelocastSettings) -> None:
    with pytest.raises(TrainingDataError, match="no rows"):
        prepare_current(frame("2024-02-01", 0), settings)
