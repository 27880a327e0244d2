"""The forecast grid: active counters × every local hour of D and D + 1, with horizons from the cut-off."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from velocast.contract import PARIS
from velocast.errors import NotFoundError
from velocast.predict.days import day_start
from velocast.predict.grid import (
    ActiveCounter,
    NoRecentCountsError,
    build_grid,
    data_cutoff,
    forecast_hours,
    lookback_start,
)

COUNTERS = [ActiveCounter("c1", "Rivoli E-O"), ActiveCounter("c2")]


@pytest.mark.parametrize(
    ("run_day", "hours"),
    [
        (date(2024, 3, 30), 24 + 23),  # D+1 is the spring day
        (date(2024, 3, 31), 23 + 24),  # D is the spring day
        (date(2024, 10, 26), 24 + 25),  # D+1 is the autumn day
        (date(2024, 10, 27), 25 + 24),  # D is the autumn day
        (date(2024, 6, 1), 48),
    ],
)
def test_the_grid_covers_every_local_hour_of_d_and_d_plus_one(run_day: date, hours: int) -> None:
    grid = build_grid(run_day, COUNTERS, day_start(run_day))
    assert len(grid.rows) == len(COUNTERS) * hours
    for counter in COUNTERS:
        instants = [row.predicted_for for row in grid.rows if row.counter_id == counter.counter_id]
        assert len(set(instants)) == hours
        assert instants == sorted(instants)
        assert instants[0] == day_start(run_day)
        assert instants[-1] == day_start(run_day + timedelta(days=2)) - timedelta(hours=1)
    assert {row.forecast_day for row in grid.rows} == {run_day, run_day + timedelta(days=1)}
    for row in grid.rows:
        assert row.predicted_for.astimezone(PARIS).date() == row.forecast_day


def test_the_autumn_repeated_hour_is_two_rows_with_distinct_instants() -> None:
    grid = build_grid(date(2024, 10, 27), COUNTERS[:1], day_start(date(2024, 10, 27)))
    two_oclock = [row.predicted_for for row in grid.rows if row.predicted_for.astimezone(PARIS).hour == 2]
    assert two_oclock[:2] == [datetime(2024, 10, 27, 0, tzinfo=UTC), datetime(2024, 10, 27, 1, tzinfo=UTC)]
    assert [row.horizon_hours for row in grid.rows[:5]] == [0, 1, 2, 3, 4]


def test_horizons_count_hours_from_the_cutoff_to_the_predicted_hour() -> None:
    run_day = date(2024, 3, 31)
    # Data up to the end of 2024-03-29 (Paris): 23:00 UTC, a full day plus one hour before D starts.
    cutoff = datetime(2024, 3, 29, 23, tzinfo=UTC)
    grid = build_grid(run_day, COUNTERS[:1], cutoff)
    horizons = [row.horizon_hours for row in grid.rows]
    assert horizons[0] == 24  # D starts at 2024-03-30 23:00 UTC
    assert horizons == list(range(24, 24 + 23 + 24))  # consecutive UTC hours: no gap at the clock change
    assert all(row.predicted_for == cutoff + timedelta(hours=row.horizon_hours) for row in grid.rows)
    assert grid.data_cutoff == cutoff


def test_records_are_the_sidecars_normalized_shape() -> None:
    grid = build_grid(date(2024, 6, 1), COUNTERS, day_start(date(2024, 6, 1)))
    records = grid.records()
    assert records[0] == {
        "counter_id": "c1",
        "counted_at": "2024-05-31T22:00:00+00:00",
        "counter_name": "Rivoli E-O",
    }
    assert records[48] == {"counter_id": "c2", "counted_at": "2024-05-31T22:00:00+00:00"}
    assert grid.counter_ids == ["c1", "c2"]


def test_data_cutoff_is_the_end_of_the_last_counted_hour() -> None:
    assert data_cutoff(datetime(2024, 3, 30, 22, tzinfo=UTC), date(2024, 3, 31)) == datetime(
        2024, 3, 30, 23, tzinfo=UTC
    )
    with pytest.raises(NoRecentCountsError, match="ingest_bike_counts") as raised:
        data_cutoff(None, date(2024, 3, 31))
    assert isinstance(raised.value, NotFoundError)
    with pytest.raises(ValueError, match="whole UTC hour"):
        data_cutoff(datetime(2024, 3, 30, 22, 30, tzinfo=UTC), date(2024, 3, 31))
    with pytest.raises(ValueError, match="timezone-aware"):
        data_cutoff(datetime(2024, 3, 30, 22), date(2024, 3, 31))


def test_a_cutoff_inside_the_run_day_is_refused() -> None:
    run_day = date(2024, 6, 1)
    with pytest.raises(ValueError, match="before its own"):
        build_grid(run_day, COUNTERS, day_start(run_day) + timedelta(hours=1))
    with pytest.raises(ValueError, match="whole UTC hour"):
        build_grid(run_day, COUNTERS, day_start(run_day) - timedelta(minutes=30))
    with pytest.raises(ValueError, match="timezone-aware"):
        build_grid(run_day, COUNTERS, datetime(2024, 5, 31, 0))


def test_no_counter_or_a_repeated_counter_is_refused() -> None:
    run_day = date(2024, 6, 1)
    with pytest.raises(NoRecentCountsError, match="no active counter"):
        build_grid(run_day, [], day_start(run_day))
    with pytest.raises(ValueError, match=r"\['c1'\]"):
        build_grid(run_day, [*COUNTERS, ActiveCounter("c1")], day_start(run_day))


def test_forecast_hours_and_lookback() -> None:
    assert len(forecast_hours(date(2024, 10, 26))) == 49
    assert lookback_start(date(2024, 6, 1)) == date(2024, 5, 18)
