"""The data a training runs on: the current rows made usable, and the sliding window.

``prepare_current`` normalizes the current actuals (raw or normalized rows, any variant
``velocast.data.normalize`` reads), keeps the rows that have a counter and a count, and refuses
data that is mostly unreadable (``settings.max_rejected_share``). ``training_frames`` builds the
challenger's training set and the two evaluation frames: with current data, ``train`` = baseline
train + the first 80 % (by time) of the current window and ``test_current`` = its last 20 %;
without, ``train`` = baseline train and ``test_current`` = ``test_baseline``. In test mode only the
last ``TEST_MODE_TRAIN_DAYS`` days are trained on.

No I/O: ``velocast.ml.training`` loads the frames and hands them over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from velocast.data.normalize import normalize
from velocast.ml.evaluation import DEFAULT_TEST_FRACTION, FrameInfo, sliding_window_training_set
from velocast.ml.model_base import TARGET
from velocast.ml.training_request import TrainingDataError
from velocast.settings import VelocastSettings

TEST_MODE_TRAIN_DAYS: Final = 28
# How many rejection reasons an error message quotes.
QUOTED_REASONS: Final = 3


def prepare_current(raw: pd.DataFrame, settings: VelocastSettings) -> tuple[pd.DataFrame, dict[str, int]]:
    """Normalized current rows with a counter and a count; refuses data that is mostly unreadable."""
    if raw.empty:
        raise TrainingDataError("the current data has no rows")
    result = normalize(raw)
    rejected = len(result.rejected)
    share = rejected / len(raw)
    if share > settings.max_rejected_share:
        reasons = "; ".join(result.rejected["reason"].astype(str).head(QUOTED_REASONS))
        raise TrainingDataError(
            f"{rejected} of {len(raw)} current rows cannot be read ({share:.1%} > the allowed "
            f"{settings.max_rejected_share:.1%}), e.g.: {reasons}"
        )
    frame = result.frame
    usable = frame["counter_id"].notna() & frame[TARGET].notna()
    frame = frame[usable].reset_index(drop=True)
    if frame.empty:
        raise TrainingDataError(f"none of the {len(raw)} current rows has both a counter and a count")
    return frame, {"rejected": rejected, "no_counter_or_count": int((~usable).sum())}


@dataclass(frozen=True)
class TrainingFrames:
    train: pd.DataFrame
    test_baseline: pd.DataFrame
    test_current: pd.DataFrame
    data: dict[str, Any]


def _window(frame: pd.DataFrame, name: str) -> dict[str, Any]:
    info = FrameInfo.of(frame)
    return {f"{name}_rows": info.n_rows, f"{name}_start": info.start, f"{name}_end": info.end}


def training_frames(
    baseline_train: pd.DataFrame,
    test_baseline: pd.DataFrame,
    current: pd.DataFrame | None,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    test_mode: bool = False,
) -> TrainingFrames:
    """The sliding window: the challenger's training set and the two evaluation frames."""
    if baseline_train.empty or test_baseline.empty:
        raise TrainingDataError("the baseline is empty: recreate it (velocast baseline)")
    data: dict[str, Any] = {}
    if current is None:
        train, test_current = baseline_train, test_baseline
        data["current_rows"] = 0
    else:
        baseline_end = pd.to_datetime(test_baseline["counted_at"], utc=True).max()
        current_start = pd.to_datetime(current["counted_at"], utc=True).min()
        # Current rows inside the baseline's span would be trained on and then scored on
        # test_baseline: the evaluation would flatter the challenger.
        if current_start <= baseline_end:
            raise TrainingDataError(
                f"the current data starts at {current_start.isoformat()}, not after the baseline, "
                f"which ends at {baseline_end.isoformat()}"
            )
        columns = list(baseline_train.columns)
        missing = sorted(set(columns) - set(current.columns))
        if missing:
            raise TrainingDataError(f"the current data lacks the baseline's columns {missing}")
        try:
            train, test_current = sliding_window_training_set(baseline_train, current[columns], test_fraction)
        except ValueError as error:
            raise TrainingDataError(str(error)) from None
        data["current_rows"] = len(current)
    if test_mode:
        end = pd.to_datetime(train["counted_at"], utc=True).max()
        recent = pd.to_datetime(train["counted_at"], utc=True) > end - pd.Timedelta(days=TEST_MODE_TRAIN_DAYS)
        train = train[recent].reset_index(drop=True)
    data |= {
        "baseline_train_rows": len(baseline_train),
        "test_mode_train_days": TEST_MODE_TRAIN_DAYS if test_mode else 0,
    }
    data |= (
        _window(train, "train")
        | _window(test_baseline, "test_baseline")
        | _window(test_current, "test_current")
    )
    data["counters"] = int(train["counter_id"].nunique())
    return TrainingFrames(train=train, test_baseline=test_baseline, test_current=test_current, data=data)


__all__ = ["TEST_MODE_TRAIN_DAYS", "TrainingFrames", "prepare_current", "training_frames"]
