"""The pure parts of DAG 2's steps: the rows sent to BigQuery, the partition checks, names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest

from velocast.predict import grid
from velocast.predict.run import (
    ForecastOutcome,
    InvalidForecastPartitionError,
    NoChampionError,
    PredictionRun,
    run_day_of,
)
from velocast.predict.steps import forecast_frame, model_version_of, partition_problems, run_key
from velocast.settings import get_settings

RUN_DAY = date(2024, 10, 27)  # 25 hours, and D + 1 has 24


@dataclass(frozen=True)
class FakeChampion:
    run_id: str = "run-1"
    model_type: str = "hgb"
    model_uri: str = "models:/bike_counts_hgb/7"


@dataclass(frozen=True)
class FakePrediction:
    counter_id: str
    counted_at: datetime
    predicted_count: float


@dataclass(frozen=True)
class FakePredictions:
    predictions: list[FakePrediction]
    champion: FakeChampion = FakeChampion()
    unseen_counters: list[str] = field(default_factory=list)


def a_run() -> PredictionRun:
    return PredictionRun(
        run_day=RUN_DAY, run_id="scheduled__2024-10-27T03:00:00+00:00", settings=get_settings()
    )


def a_grid() -> grid.ForecastGrid:
    cutoff = datetime(2024, 10, 26, 22, tzinfo=UTC)
    counters = [grid.ActiveCounter("A", "A name"), grid.ActiveCounter("NEW")]
    return grid.build_grid(RUN_DAY, counters, cutoff)


def served_for(forecast_grid: grid.ForecastGrid, *, unseen: list[str]) -> FakePredictions:
    return FakePredictions(
        predictions=[FakePrediction(row.counter_id, row.predicted_for, 3.5) for row in forecast_grid.rows],
        unseen_counters=unseen,
    )


def test_forecast_rows_carry_the_champion_horizon_and_unknown_flag() -> None:
    forecast_grid = a_grid()
    predicted_at = datetime(2024, 10, 27, 3, tzinfo=UTC)
    frame = forecast_frame(a_run(), forecast_grid, served_for(forecast_grid, unseen=["NEW"]), predicted_at)
    assert len(frame) == 2 * (25 + 24)
    assert set(frame.prediction_date) == {RUN_DAY}
    assert set(frame.model_run_id) == {"run-1"} and set(frame.model_version) == {"7"}
    assert frame.groupby("counter_id").unknown_counter.all().to_dict() == {"A": False, "NEW": True}
    assert frame.horizon_hours.min() == 0 and frame.horizon_hours.max() == 48
    assert list(frame.horizon_hours[:3]) == [0, 1, 2]
    assert set(frame.data_cutoff) == {datetime(2024, 10, 26, 22, tzinfo=UTC)}


def test_forecast_rows_refuse_a_short_answer() -> None:
    forecast_grid = a_grid()
    served = served_for(forecast_grid, unseen=[])
    short = FakePredictions(predictions=served.predictions[:-1])
    with pytest.raises(InvalidForecastPartitionError, match="97 predictions for 98 records"):
        forecast_frame(a_run(), forecast_grid, short, datetime.now(UTC))


def outcome(counters: int = 2, hours: int = 49) -> ForecastOutcome:
    return ForecastOutcome(
        staged_uri="gs://b/x.parquet",
        rows=counters * hours,
        counters=counters,
        hours=hours,
        unknown_counters=0,
        data_cutoff=datetime(2024, 10, 26, 22, tzinfo=UTC),
        model_type="hgb",
        model_run_id="run-1",
        model_version=None,
    )


def test_a_right_partition_has_no_problem() -> None:
    assert partition_problems({"n": 98, "keys": 98, "bad_values": 0, "run_ids": 1}, outcome()) == []


def test_every_broken_invariant_is_named() -> None:
    problems = partition_problems({"n": 99, "keys": 98, "bad_values": 2, "run_ids": 2}, outcome())
    assert problems == [
        "99 rows, expected 98 (2 counters × 49 hours)",
        "1 duplicate (counter, hour) keys",
        "2 null or negative predictions",
        "2 champion run ids, expected 1",
    ]


@pytest.mark.parametrize(
    ("uri", "version"),
    [("models:/bike_counts_hgb/7", "7"), ("gs://bucket/models/x.joblib", None), ("models:/m/champion", None)],
)
def test_model_version_comes_from_a_registered_model_uri(uri: str, version: str | None) -> None:
    assert model_version_of(uri) == version


def test_run_day_is_the_logical_date_in_paris() -> None:
    assert run_day_of(datetime(2024, 10, 26, 23, 30, tzinfo=UTC)) == date(2024, 10, 27)
    assert run_day_of(datetime(2024, 10, 27, 22, 59, tzinfo=UTC)) == date(2024, 10, 27)  # 23:59 CET
    assert run_day_of(datetime(2024, 10, 27, 23, 0, tzinfo=UTC)) == date(2024, 10, 28)
    with pytest.raises(ValueError, match="aware"):
        run_day_of(datetime(2024, 10, 27, 3))


def test_run_key_is_safe_in_table_names() -> None:
    assert run_key(a_run()) == "scheduled__2024_10_27T03_00_00_00_00"


def test_no_champion_fails_without_retry() -> None:
    from velocast.errors import RequestError

    assert issubclass(NoChampionError, RequestError)
    assert issubclass(InvalidForecastPartitionError, RequestError)
