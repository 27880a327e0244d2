"""drift: the monitor's drift measurement, on real counts (a slice of the packaged parquet).

Weeks W0..W3 start on the Mondays 2023-05-29, 06-05, 06-12, 06-19 (Paris); W0 only provides the
"last week" predictions of W1. W1 → W2 are ordinary adjacent weeks (no holiday, no clock change).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest

from velocast.data.normalize import normalize
from velocast.errors import RequestError
from velocast.local.replay.data import default_data_path
from velocast.ml.drift import (
    DRIFT_COLUMNS,
    DriftDataError,
    DriftReport,
    drift_frame,
    measure_drift,
    reference_slice,
)

PARIS = "Europe/Paris"
W = [
    pd.Timestamp(day, tz=PARIS)
    for day in ("2023-05-29", "2023-06-05", "2023-06-12", "2023-06-19", "2023-06-26")
]


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    """Every 4th counter (26 of 101) over W0..W3, normalized, with last week's count as prediction."""
    path = default_data_path()
    ids = sorted(set(pq.read_table(path, columns=["id_compteur"]).column(0).to_pylist()))[::4]
    raw = pd.read_parquet(
        path,
        filters=[
            ("id_compteur", "in", ids),
            ("date", ">=", W[0].tz_convert("UTC")),
            ("date", "<", W[4].tz_convert("UTC")),
        ],
    )
    rows = normalize(raw).frame[["counter_id", "counted_at", "hourly_count"]].reset_index(drop=True)
    last_week = rows.assign(counted_at=rows["counted_at"] + pd.Timedelta(days=7))
    last_week = last_week.rename(columns={"hourly_count": "predicted_count"})
    return rows.merge(last_week, on=["counter_id", "counted_at"], how="left")


def week(counts: pd.DataFrame, first: int, last: int | None = None) -> pd.DataFrame:
    """Weeks W[first] .. W[last] (inclusive), Paris time."""
    local = counts["counted_at"].dt.tz_convert(PARIS)
    selected: pd.DataFrame = counts.loc[(local >= W[first]) & (local < W[(last or first) + 1])]
    return selected.reset_index(drop=True)


def without_predictions(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.drop(columns=["predicted_count"])


@pytest.fixture(scope="module")
def adjacent(counts: pd.DataFrame) -> DriftReport:
    return measure_drift(
        drift_frame(without_predictions(week(counts, 1))), drift_frame(without_predictions(week(counts, 2)))
    )


@pytest.fixture(scope="module")
def predicted(counts: pd.DataFrame) -> DriftReport:
    """W1 → W2 with last week's count as the prediction on both sides."""
    return measure_drift(drift_frame(week(counts, 1)), drift_frame(week(counts, 2)))


@pytest.fixture(scope="module")
def more_traffic(counts: pd.DataFrame) -> DriftReport:
    """W2 with 40 % more bikes than counted (predictions unchanged) against W1."""
    current = week(counts, 2).assign(hourly_count=lambda f: (f["hourly_count"] * 1.4).round())
    return measure_drift(drift_frame(week(counts, 1)), drift_frame(current))


def test_drift_frame_columns_daily_totals_and_residuals(counts: pd.DataFrame) -> None:
    rows = week(counts, 1).assign(
        hour=lambda f: f["counted_at"].dt.hour, weekday=lambda f: f["counted_at"].dt.weekday
    )
    frame = drift_frame(rows)
    assert list(frame.columns) == ["counter_id", "counted_at", *DRIFT_COLUMNS]
    assert all(frame[name].dtype == "float64" for name in DRIFT_COLUMNS)
    local_day = frame["counted_at"].dt.tz_convert(PARIS).dt.date
    one = frame[(frame["counter_id"] == frame["counter_id"].iloc[0]) & (local_day == local_day.iloc[0])]
    assert len(one) == 24
    assert (one["daily_total"] == one["hourly_count"].sum()).all()
    expected = rows["hourly_count"].astype("float64") - rows["predicted_count"].astype("float64")
    pd.testing.assert_series_equal(frame["residual"], expected, check_names=False)
    assert "residual" not in drift_frame(without_predictions(rows)).columns


def test_drift_frame_leaves_partial_days_without_total(counts: pd.DataFrame) -> None:
    rows = week(counts, 1)
    noon = W[1] + pd.Timedelta(hours=12)
    frame = drift_frame(rows[rows["counted_at"] >= noon])
    first_day = frame["counted_at"].dt.tz_convert(PARIS).dt.date == W[1].date()
    assert frame.loc[first_day, "daily_total"].isna().all()
    assert frame.loc[~first_day, "daily_total"].notna().all()


def test_daily_totals_follow_paris_days_across_the_clock_change() -> None:
    # 2023-03-26 has 23 Paris hours; the rows start at Paris midnight and stop after 12:00 on the 28th.
    hours = pd.date_range("2023-03-25 23:00", "2023-03-28 11:00", freq="h", tz="UTC", inclusive="left")
    frame = drift_frame(pd.DataFrame({"counter_id": "a", "counted_at": hours, "hourly_count": 1}))
    by_day = frame.groupby(frame["counted_at"].dt.tz_convert(PARIS).dt.date)["daily_total"]
    assert by_day.size().to_list() == [23, 24, 13]
    assert by_day.max().to_list()[:2] == [23.0, 24.0]
    assert by_day.count().to_list() == [23, 24, 0]  # the 28th is partial: no total


def test_identical_weeks_do_not_drift(counts: pd.DataFrame) -> None:
    frame = drift_frame(week(counts, 1, 2))
    result = measure_drift(frame, frame).result
    assert result.share == 0.0
    assert result.columns == DRIFT_COLUMNS
    assert max(result.column_scores.values()) < 1e-9
    assert result.counter_share == 0.0
    assert result.drifted_counters == ()
    assert result.counters_compared == 26
    assert result.reference_rows == result.current_rows == len(frame)


def test_adjacent_ordinary_weeks_do_not_drift(adjacent: DriftReport) -> None:
    result = adjacent.result
    assert result.columns == ("hourly_count", "daily_total")  # no predictions: no residual
    assert result.share == 0.0
    # Observed: hourly_count 0.018, daily_total 0.036 (normed Wasserstein); no counter of 26 drifts.
    assert max(result.column_scores.values()) < 0.06
    assert result.counter_share is not None and result.counter_share <= 0.1
    assert result.method == "wasserstein"


def test_forty_percent_more_traffic_drifts(more_traffic: DriftReport) -> None:
    result = more_traffic.result
    assert result.share == 1.0
    assert result.drifted_columns == DRIFT_COLUMNS
    assert result.drifted_count == 3
    # Observed: hourly_count 0.29, daily_total 0.46, residual 0.82; 26 counters of 26 drift.
    assert result.column_scores["hourly_count"] > 0.2
    assert result.counter_share is not None and result.counter_share >= 0.9


def test_share_is_the_measured_share(
    predicted: DriftReport, adjacent: DriftReport, more_traffic: DriftReport
) -> None:
    """0, a third, 1: never the preset's 0.5 threshold. W1 → W2 with last week's count as the
    prediction: only the residual drifts (observed 0.155; ordinary weeks move residuals most)."""
    result = predicted.result
    assert result.drifted_columns == ("residual",)
    assert result.share == pytest.approx(1 / 3)
    assert result.drifted_count == 1
    assert [adjacent.result.share, result.share, more_traffic.result.share] == [
        0.0,
        pytest.approx(1 / 3),
        1.0,
    ]


def test_a_biased_champion_moves_the_residual_only(counts: pd.DataFrame, predicted: DriftReport) -> None:
    unbiased = predicted.result
    current = week(counts, 2).assign(predicted_count=lambda f: f["predicted_count"] * 0.7)
    biased = measure_drift(drift_frame(week(counts, 1)), drift_frame(current)).result
    # Observed: residual 0.155 → 0.61; the counts' scores do not change.
    assert biased.column_scores["residual"] > 3 * unbiased.column_scores["residual"]
    assert biased.column_scores["hourly_count"] == unbiased.column_scores["hourly_count"]
    assert biased.drifted_columns == ("residual",)


def test_a_broken_counter_is_named_and_the_columns_stay(counts: pd.DataFrame, adjacent: DriftReport) -> None:
    current = without_predictions(week(counts, 2))
    volume = current.groupby("counter_id")["hourly_count"].mean().sort_values()
    broken = str(volume.index[len(volume) // 2])  # the median counter
    current.loc[current["counter_id"] == broken, "hourly_count"] = 0
    result = measure_drift(drift_frame(without_predictions(week(counts, 1))), drift_frame(current)).result
    # Observed: only the broken counter drifts; hourly_count 0.038, daily_total 0.07 (below 0.1).
    assert broken in result.drifted_counters
    assert broken not in adjacent.result.drifted_counters
    assert result.share == 0.0
    assert result.counter_share == pytest.approx(len(result.drifted_counters) / 26)


def test_calendar_columns_are_never_measured(counts: pd.DataFrame, adjacent: DriftReport) -> None:
    def with_calendar(rows: pd.DataFrame, shift: int) -> pd.DataFrame:
        local = rows["counted_at"].dt.tz_convert(PARIS)
        return drift_frame(without_predictions(rows)).assign(
            hour_of_day=local.dt.hour,
            day_of_week=(local.dt.weekday + shift) % 7,
            week_of_year=local.dt.isocalendar().week,
        )

    report = measure_drift(with_calendar(week(counts, 1), 0), with_calendar(week(counts, 2), 3))
    assert report.result.columns == adjacent.result.columns
    assert report.result.column_scores == adjacent.result.column_scores
    assert report.result.share == adjacent.result.share
    assert not {"hour_of_day", "day_of_week", "week_of_year"} & set(report.result.column_scores)
    assert "day_of_week" not in report.html and "week_of_year" not in report.html


def test_html_shows_the_columns_and_the_counters(more_traffic: DriftReport) -> None:
    assert more_traffic.html.lstrip().startswith("<!DOCTYPE html>") and len(more_traffic.html) > 10_000
    for name in (*DRIFT_COLUMNS, *more_traffic.result.drifted_counters[:3]):
        assert name in more_traffic.html


def test_result_is_json_serialisable(more_traffic: DriftReport) -> None:
    data = json.loads(json.dumps(more_traffic.result.to_dict()))
    assert data["share"] == 1.0
    assert data["columns"] == list(DRIFT_COLUMNS)
    assert data["counters_compared"] == 26
    assert data["seconds"] > 0


def test_counters_with_too_few_hours_are_not_compared(counts: pd.DataFrame) -> None:
    reference = drift_frame(without_predictions(week(counts, 1)))
    current = drift_frame(without_predictions(week(counts, 2)))
    result = measure_drift(reference, current.iloc[: 24 * 26], min_counter_hours=24 * 7).result
    assert result.counters_compared == 0
    assert result.counter_share is None
    assert result.drifted_counters == ()


def test_empty_side_is_refused(counts: pd.DataFrame) -> None:
    frame = drift_frame(week(counts, 1))
    with pytest.raises(DriftDataError, match="current drift frame is empty") as caught:
        measure_drift(frame, frame.iloc[:0])
    assert isinstance(caught.value, RequestError) and isinstance(caught.value, ValueError)
    with pytest.raises(DriftDataError, match="reference drift frame is empty"):
        measure_drift(frame.iloc[:0], frame)


def test_missing_hourly_count_is_refused(counts: pd.DataFrame) -> None:
    frame = drift_frame(week(counts, 1))
    with pytest.raises(
        DriftDataError, match=re.escape("reference drift frame: missing column(s) hourly_count")
    ):
        measure_drift(frame.drop(columns=["hourly_count"]), frame)
    with pytest.raises(DriftDataError, match="current drift frame has no hourly_count value"):
        measure_drift(frame, frame.assign(hourly_count=float("nan")))
    with pytest.raises(DriftDataError, match=re.escape("rows: missing column(s) hourly_count")):
        drift_frame(week(counts, 1).drop(columns=["hourly_count"]))


def test_naive_timestamps_are_refused(counts: pd.DataFrame) -> None:
    rows = week(counts, 1)
    with pytest.raises(DriftDataError, match="timezone-aware"):
        drift_frame(rows.assign(counted_at=rows["counted_at"].dt.tz_localize(None)))


def test_reference_slice_takes_the_same_weeks_one_year_earlier(counts: pd.DataFrame) -> None:
    # 2024-06-17 is a Monday; 364 days earlier is Monday 2023-06-19 (W3), covered by the training rows.
    start = datetime(2024, 6, 16, 22, tzinfo=UTC)  # Paris midnight
    sliced, description = reference_slice(counts, start, start + pd.Timedelta(days=7), days=14)
    assert description.startswith("same weeks one year earlier")
    assert "2023-06-16 → 2023-06-29" in description
    local = sliced["counted_at"].dt.tz_convert(PARIS)
    assert local.min() == pd.Timestamp("2023-06-16", tz=PARIS)
    assert local.max() == W[4] - pd.Timedelta(hours=1)  # the training rows end before the 14 days do
    assert set(sliced.columns) == set(counts.columns)


def test_reference_slice_falls_back_to_the_last_days(counts: pd.DataFrame) -> None:
    # One year earlier would be 2023-06-23 → 06-30: only 3 of those days are in the training rows.
    start = datetime(2024, 6, 20, 22, tzinfo=UTC)
    sliced, description = reference_slice(counts, start, start + pd.Timedelta(days=7), days=7)
    assert description.startswith("last 7 days of the training rows (they cover 3 of the 7 days")
    local = sliced["counted_at"].dt.tz_convert(PARIS)
    assert (local.min(), local.max()) == (W[3], W[4] - pd.Timedelta(hours=1))
    with pytest.raises(DriftDataError, match="training rows are empty"):
        reference_slice(counts.iloc[:0], start, start + pd.Timedelta(days=7))
