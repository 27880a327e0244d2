"""Paris local days as UTC hours, clock changes included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest

from velocast.contract import PARIS
from velocast.predict.days import day_range, day_start, hours_in_day, local_day_of, local_hours


def test_a_winter_day_starts_at_23_utc_the_day_before() -> None:
    assert day_start(date(2024, 1, 15)) == datetime(2024, 1, 14, 23, tzinfo=UTC)
    assert day_range(date(2024, 7, 1)) == (
        datetime(2024, 6, 30, 22, tzinfo=UTC),
        datetime(2024, 7, 1, 22, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2024, 3, 30), 24), (date(2024, 3, 31), 23), (date(2024, 10, 27), 25), (date(2024, 10, 28), 24)],
)
def test_hours_in_a_day(day: date, hours: int) -> None:
    assert hours_in_day(day) == hours
    assert len(local_hours(day)) == hours


def test_the_spring_day_skips_two_oclock() -> None:
    hours = local_hours(date(2024, 3, 31))
    assert hours[0] == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert hours[-1] == datetime(2024, 3, 31, 21, tzinfo=UTC)
    assert [hour.astimezone(PARIS).hour for hour in hours] == [0, 1, *range(3, 24)]
    assert [local_day_of(hour) for hour in hours] == [date(2024, 3, 31)] * 23


def test_the_autumn_day_has_two_distinct_two_oclocks() -> None:
    hours = local_hours(date(2024, 10, 27))
    assert hours[0] == datetime(2024, 10, 26, 22, tzinfo=UTC)
    assert hours[-1] == datetime(2024, 10, 27, 22, tzinfo=UTC)
    assert len(set(hours)) == 25
    assert [hour.astimezone(PARIS).hour for hour in hours] == [0, 1, 2, 2, *range(3, 24)]
    assert all(later - earlier == timedelta(hours=1) for earlier, later in pairwise(hours))


def test_local_day_of_needs_an_aware_instant() -> None:
    assert local_day_of(datetime(2024, 1, 14, 23, tzinfo=UTC)) == date(2024, 1, 15)
    with pytest.raises(ValueError, match="timezone-aware"):
        local_day_of(datetime(2024, 1, 14, 23))
