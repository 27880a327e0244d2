"""features: local-time calendar parts, French public and Paris school holidays, counter codes."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velocast.ml.features import (
    CALENDAR_FEATURES,
    FEATURE_NAMES,
    UNKNOWN_COUNTER_CODE,
    CounterEncoder,
    build_features,
    calendar_features,
    school_calendar,
)


def utc_hours(start: str, periods: int) -> pd.Series:
    return pd.Series(pd.date_range(start, periods=periods, freq="h", tz="UTC"))


def features_on(day: str) -> pd.Series:
    """The features of noon (Paris) on a local day."""
    stamp = pd.Timestamp(f"{day} 12:00", tz="Europe/Paris").tz_convert("UTC")
    return calendar_features(pd.Series([stamp])).frame.iloc[0]


def frame_of(counters: list[str | None], start: str = "2024-01-01") -> pd.DataFrame:
    stamps = pd.date_range(start, periods=len(counters), freq="h", tz="UTC")
    return pd.DataFrame({"counter_id": pd.array(counters, dtype="string"), "counted_at": stamps})


# --- local time --------------------------------------------------------------------------------


def test_spring_clock_change_skips_two_oclock() -> None:
    # 2023-03-26: 02:00 CET becomes 03:00 CEST; UTC 23:00 (25th) is local midnight of the 26th.
    features = calendar_features(utc_hours("2023-03-25 23:00", 5)).frame
    assert features["hour"].tolist() == [0, 1, 3, 4, 5]
    assert features["weekday"].tolist() == [6] * 5  # all on Sunday the 26th, local
    assert features["day_of_year"].tolist() == [85] * 5
    assert features["is_weekend"].tolist() == [1] * 5


def test_autumn_clock_change_repeats_two_oclock() -> None:
    # 2023-10-29: 03:00 CEST becomes 02:00 CET, so local 02h happens twice (UTC 00:00 and 01:00).
    features = calendar_features(utc_hours("2023-10-28 21:00", 6)).frame
    assert features["hour"].tolist() == [23, 0, 1, 2, 2, 3]
    assert features["weekday"].tolist() == [5, 6, 6, 6, 6, 6]
    assert features["day_of_year"].tolist() == [301, 302, 302, 302, 302, 302]


def test_local_midnight_in_winter_and_summer() -> None:
    winter = calendar_features(pd.Series([pd.Timestamp("2024-01-31 23:00", tz="UTC")])).frame.iloc[0]
    summer = calendar_features(pd.Series([pd.Timestamp("2024-06-30 22:00", tz="UTC")])).frame.iloc[0]
    assert (winter["hour"], winter["month"], winter["day_of_year"]) == (0, 2, 32)
    assert (summer["hour"], summer["month"], summer["weekday"]) == (0, 7, 0)  # Monday 1 July


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(TypeError, match="tz-aware"):
        calendar_features(pd.Series(pd.date_range("2024-01-01", periods=2, freq="h")))


def test_offsets_other_than_utc_give_the_same_features() -> None:
    stamps = utc_hours("2024-03-30 20:00", 48)
    paris = stamps.dt.tz_convert("Europe/Paris")
    pd.testing.assert_frame_equal(calendar_features(stamps).frame, calendar_features(paris).frame)


# --- holidays ----------------------------------------------------------------------------------


def test_bastille_day_2024_is_a_sunday_holiday_in_the_summer_break() -> None:
    day = features_on("2024-07-14")
    assert day["is_weekend"] == 1
    assert day["is_public_holiday"] == 1
    assert day["is_school_holiday"] == 1
    assert day["is_day_off"] == 1
    assert day["days_to_public_holiday"] == 0 and day["days_from_public_holiday"] == 0
    assert day["hour_day_off"] == 12 + 24


def test_christmas_2024_is_a_weekday_holiday_in_the_christmas_break() -> None:
    day = features_on("2024-12-25")
    assert (day["weekday"], day["is_weekend"]) == (2, 0)
    assert day["is_public_holiday"] == 1
    assert day["is_school_holiday"] == 1  # zone C: 21 Dec 2024 → 6 Jan 2025
    assert day["is_day_off"] == 1


def test_ordinary_days() -> None:
    tuesday = features_on("2024-03-12")
    assert tuesday[["is_weekend", "is_public_holiday", "is_school_holiday", "is_day_off"]].sum() == 0
    assert tuesday["hour_day_off"] == 12
    saturday = features_on("2024-03-16")
    assert (saturday["is_weekend"], saturday["is_public_holiday"], saturday["is_day_off"]) == (1, 0, 1)


def test_days_to_and_from_the_nearest_public_holiday() -> None:
    assert features_on("2024-07-13")["days_to_public_holiday"] == 1
    assert features_on("2024-07-16")["days_from_public_holiday"] == 2
    # Across New Year: 30 Dec 2024 is 2 days before 1 Jan 2025 and 5 after Christmas.
    assert features_on("2024-12-30")["days_to_public_holiday"] == 2
    assert features_on("2024-12-30")["days_from_public_holiday"] == 5
    # Capped at a week.
    assert features_on("2024-03-12")["days_to_public_holiday"] == 7


def test_bridge_days() -> None:
    # Ascension is a Thursday: the Friday after is a bridge; the Monday after Easter Monday is not.
    assert features_on("2024-05-10")["is_bridge_day"] == 1
    assert features_on("2023-05-19")["is_bridge_day"] == 1
    assert features_on("2024-04-02")["is_bridge_day"] == 0
    # Tuesday 1 May 2029: the Monday before is a bridge.
    assert features_on("2029-04-30")["is_bridge_day"] == 1
    assert features_on("2024-05-09")["is_bridge_day"] == 0  # the holiday itself


def test_paris_school_holidays_are_zone_c() -> None:
    assert features_on("2024-02-12")["is_school_holiday"] == 1  # zone C winter break 10 → 26 Feb
    assert features_on("2024-02-27")["is_school_holiday"] == 0
    # 2024-03-04 was still a break in zone A (24 Feb → 11 Mar) but not in Paris.
    assert features_on("2024-03-04")["is_school_holiday"] == 0


def test_years_beyond_the_data_get_public_holidays_and_unknown_school_holidays() -> None:
    stamps = pd.Series(
        [
            pd.Timestamp(f"2031-{md} 10:00", tz="Europe/Paris").tz_convert("UTC")
            for md in ("07-14", "12-25", "03-04")
        ]
    )
    result = calendar_features(stamps)
    assert result.frame["is_public_holiday"].tolist() == [1, 1, 0]
    assert result.frame["is_school_holiday"].tolist() == [0, 0, 0]  # unknown reads as "no break"
    assert result.school_holiday_unknown_rows == 3


def test_school_table_span_is_what_the_package_knows() -> None:
    school = school_calendar()
    assert school.known_from <= np.datetime64("2023-01-01")
    assert school.known_until >= np.datetime64("2025-12-31")
    after = (school.known_until + np.timedelta64(1, "D")).astype(date)
    stamp = pd.Timestamp(after).tz_localize("Europe/Paris").tz_convert("UTC")
    assert calendar_features(pd.Series([stamp])).school_holiday_unknown_rows == 1
    stamp = pd.Timestamp(school.known_until.astype(date)).tz_localize("Europe/Paris").tz_convert("UTC")
    assert calendar_features(pd.Series([stamp])).school_holiday_unknown_rows == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.datetimes(min_value=pd.Timestamp("1971-01-01"), max_value=pd.Timestamp("2099-12-31")), max_size=30
    )
)
def test_any_timestamps_give_features_without_errors(moments: list[pd.Timestamp]) -> None:
    stamps = pd.Series(pd.to_datetime(moments), dtype="datetime64[ns]").dt.tz_localize("UTC")
    result = calendar_features(stamps)
    assert list(result.frame.columns) == list(CALENDAR_FEATURES)
    assert len(result.frame) == len(stamps)
    local = stamps.dt.tz_convert("Europe/Paris")
    assert result.frame["hour"].tolist() == local.dt.hour.tolist()
    school = school_calendar()
    days = local.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    expected_unknown = int(((days < school.known_from) | (days > school.known_until)).sum())
    assert result.school_holiday_unknown_rows == expected_unknown


def test_empty_input() -> None:
    result = calendar_features(pd.Series([], dtype="datetime64[ns, UTC]"))
    assert result.frame.empty and list(result.frame.columns) == list(CALENDAR_FEATURES)
    assert result.school_holiday_unknown_rows == 0


# --- counters ----------------------------------------------------------------------------------


def test_counter_codes_are_stable_and_sorted() -> None:
    first = CounterEncoder.fit(["b", "a", "c", "a"])
    second = CounterEncoder.fit(pd.Series(["c", "b", "a"], dtype="string"))
    assert first == second
    assert first.counters == ("a", "b", "c")
    assert first.encode(pd.Series(["c", "a", "b"])).codes.tolist() == [2, 0, 1]


def test_unseen_counters_are_coded_unknown_and_counted() -> None:
    encoder = CounterEncoder.fit(["a", "b"])
    codes = encoder.encode(pd.Series(["b", "x", "a", "x", "y", None], dtype="string"))
    assert codes.codes.tolist() == [1, -1, 0, -1, -1, -1]
    assert UNKNOWN_COUNTER_CODE == -1
    assert codes.unseen_ids == ("x", "y")
    assert codes.unseen_rows == 4  # the null id is unknown too


def test_build_features_reports_unseen_counters() -> None:
    encoder = CounterEncoder.fit(["a", "b"])
    features = build_features(frame_of(["a", "new", "b", "new"]), encoder)
    assert list(features.frame.columns) == list(FEATURE_NAMES)
    assert features.frame["counter_code"].tolist() == [0, -1, 1, -1]
    assert features.unseen_counters == ("new",)
    assert features.unseen_counter_rows == 2
    assert features.school_holiday_unknown_rows == 0


def test_build_features_keeps_the_index_and_needs_its_columns() -> None:
    frame = frame_of(["a", "b", "a"]).set_axis([10, 20, 30])
    assert build_features(frame, CounterEncoder.fit(["a", "b"])).frame.index.tolist() == [10, 20, 30]
    with pytest.raises(ValueError, match="counted_at"):
        build_features(frame.drop(columns="counted_at"), CounterEncoder.fit(["a"]))


def test_encoder_refuses_unsorted_counters() -> None:
    with pytest.raises(ValueError, match="sorted"):
        CounterEncoder(("b", "a"))
