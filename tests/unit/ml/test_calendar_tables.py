"""The memoised calendar tables give the features a direct pandas computation gives.

The reference is the computation the tables replaced: convert every timestamp to Europe/Paris with
pandas, take its hour and local date, and compute the day features of the distinct dates in one go.
It is held equal to ``calendar_features`` on every instant of the shipped counts and on synthetic
hours around clock changes, New Year, leap days, far years and instants off the hour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.ml.real_slice import PARQUET
from velocast.data.normalize import normalize
from velocast.ml.calendar import DAY_FEATURES, SCHOOL_UNKNOWN, _day_features
from velocast.ml.features import (
    CALENDAR_FEATURES,
    DICT_ENCODE_ROWS,
    CounterEncoder,
    calendar_features,
)


def reference_calendar(counted_at: pd.Series) -> tuple[pd.DataFrame, int]:
    local = counted_at.dt.tz_convert("Europe/Paris")
    local_days = local.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    days, inverse = np.unique(local_days, return_inverse=True)
    table = _day_features(days)
    out = pd.DataFrame(index=counted_at.index)
    out["hour"] = local.dt.hour.to_numpy(dtype=np.int8)
    for name in DAY_FEATURES:
        out[name] = table[name][inverse]
    out["hour_day_off"] = (out["hour"].to_numpy(np.int16) + 24 * out["is_day_off"].to_numpy(np.int16)).astype(
        np.int8
    )
    return out[list(CALENDAR_FEATURES)], int(table[SCHOOL_UNKNOWN][inverse].sum())


def assert_same_as_reference(counted_at: pd.Series) -> None:
    expected, unknown = reference_calendar(counted_at)
    result = calendar_features(counted_at)
    pd.testing.assert_frame_equal(result.frame, expected)
    assert result.school_holiday_unknown_rows == unknown


def test_every_instant_of_the_shipped_counts(shared_data: Path) -> None:
    counted_at = normalize(pd.read_parquet(shared_data / PARQUET)).frame["counted_at"].drop_duplicates()
    assert len(counted_at) > 9_000
    assert_same_as_reference(counted_at.sample(frac=1.0, random_state=1).reset_index(drop=True))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("1999-12-20", "2001-01-10"),  # a leap year, New Year twice
        ("2023-03-25", "2023-03-27"),  # clock forward
        ("2023-10-28", "2023-10-30"),  # clock back
        ("2031-12-30", "2032-03-01"),  # beyond the school table, a leap day
        ("2099-12-25", "2100-01-02"),
    ],
)
def test_every_hour_of_spans_that_cross_the_tricky_days(start: str, end: str) -> None:
    hours = pd.Series(pd.date_range(start, end, freq="h", tz="UTC"))
    assert_same_as_reference(hours)
    # Instants inside an hour, on other units and time zones: the same local hour.
    inside = hours + pd.Timedelta(minutes=59, seconds=59, microseconds=999_999)
    assert_same_as_reference(inside)
    assert_same_as_reference(inside.astype("datetime64[us, UTC]"))
    assert_same_as_reference(hours.dt.tz_convert("America/New_York"))


@pytest.mark.parametrize("size", [1, 3, DICT_ENCODE_ROWS, DICT_ENCODE_ROWS + 1])
def test_both_counter_encodings_agree(size: int) -> None:
    encoder = CounterEncoder(("100003096-353242251", "100003098-101003098", "100006300-101006300"))
    pool = [*encoder.counters, "unseen-1", "unseen-2", None]
    values = [pool[i % len(pool)] for i in range(size)][::-1]
    for ids in (pd.Series(values, dtype="string"), pd.Series(values, dtype=object)):
        result = encoder.encode(ids)
        categorical = pd.Categorical(ids.astype("string"), categories=list(encoder.counters))
        assert np.array_equal(result.codes, np.asarray(categorical.codes, dtype=np.int32))
        unseen = {value for value in values if value is not None and value not in encoder.counters}
        assert result.unseen_ids == tuple(sorted(unseen))
        assert result.unseen_rows == sum(1 for value in values if value not in encoder.counters)


def test_years_the_holidays_package_does_not_cover_have_no_nearby_holiday() -> None:
    stamps = pd.Series(pd.to_datetime(["2100-12-31 12:00", "2150-07-14 12:00"], utc=True))
    frame = calendar_features(stamps).frame
    assert frame["is_public_holiday"].tolist() == [0, 0]
    assert frame["days_to_public_holiday"].tolist() == [7, 7]
    assert frame["days_from_public_holiday"].tolist() == [6, 7]  # Christmas 2100, then nothing
