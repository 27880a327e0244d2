"""validate_counts: the GX suite derived from the contract routes every bad row to quarantine."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from velocast.contract import REJECTED_ROW_COLUMNS
from velocast.data.columns import DATA_COLUMNS
from velocast.data.normalize import normalize
from velocast.data.readers import read_source, records_to_frame
from velocast.data.validation import (
    DUPLICATE_REASON,
    TooManyRejectedRowsError,
    check_rejected_share,
    rejected_share,
    validate_counts,
)
from velocast.settings import VelocastSettings

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "paris_bike_counts"

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 4, tzinfo=UTC)
WINDOW = "counted_at outside window [2024-01-01T00:00:00+00:00, 2024-01-04T00:00:00+00:00)"
LATITUDE = "latitude outside Paris bounding box [48.8, 48.91]"
LONGITUDE = "longitude outside Paris bounding box [2.22, 2.47]"


@pytest.fixture(scope="module")
def settings() -> VelocastSettings:
    # Explicit values: the tests must not depend on VELOCAST_* variables of the environment.
    return VelocastSettings(
        max_rejected_share=0.05,
        paris_lat_min=48.80,
        paris_lat_max=48.91,
        paris_lon_min=2.22,
        paris_lon_max=2.47,
    )


def record(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id_compteur": "100003096-353242251",
        "nom_compteur": "97 avenue Denfert Rochereau SO-NE",
        "id": "100003096",
        "name": "97 avenue Denfert Rochereau",
        "sum_counts": 12,
        "date": "2024-01-01T10:00:00+00:00",
        "coordinates": {"lon": 2.33338, "lat": 48.83511},
    }
    base.update(overrides)
    return base


def hour(h: int) -> str:
    return f"2024-01-02T{h:02d}:00:00+00:00"


def frame_of(*records: dict[str, object]) -> pd.DataFrame:
    result = normalize(records_to_frame(list(records)))
    assert result.rejected.empty
    return result.frame


def validate(frame: pd.DataFrame, settings: VelocastSettings, **kwargs: object):
    return validate_counts(frame, START, END, settings, **kwargs)  # type: ignore[arg-type]


def reasons(report) -> dict[int, str]:
    return dict(zip(report.quarantined.index, report.quarantined["reason"], strict=True))


def test_clean_frame_passes(settings: VelocastSettings) -> None:
    frame = frame_of(*(record(date=hour(h), sum_counts=h) for h in range(24)))
    report = validate(frame, settings)
    assert report.success
    pd.testing.assert_frame_equal(report.valid, frame)
    assert report.quarantined.empty
    assert list(report.quarantined.columns) == list(REJECTED_ROW_COLUMNS)
    assert report.duplicates_dropped == 0
    assert all(outcome.success and outcome.unexpected_count == 0 for outcome in report.expectation_results)


def test_suite_is_derived_from_the_contract(settings: VelocastSettings) -> None:
    report = validate(frame_of(record()), settings)
    summary = [(o.expectation, o.column) for o in report.expectation_results]
    assert summary == [
        ("expect_column_values_to_not_be_null", "counter_id"),
        ("expect_column_values_to_not_be_null", "counted_at"),
        ("expect_column_values_to_not_be_null", "hourly_count"),
        ("expect_column_values_to_match_regex", "hourly_count"),
        ("expect_column_values_to_be_between", "hourly_count"),
        ("expect_column_values_to_be_between", "counted_at"),
        ("expect_column_values_to_be_between", "latitude"),
        ("expect_column_values_to_be_between", "longitude"),
        ("expect_compound_columns_to_be_unique", "counter_id, counted_at"),
    ]
    assert [o.rule for o in report.expectation_results] == [
        "counter_id is null",
        "counted_at is null",
        "hourly_count is null",
        "hourly_count is not an integer",
        "hourly_count is negative",
        WINDOW,
        LATITUDE,
        LONGITUDE,
        DUPLICATE_REASON,
    ]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"id_compteur": None}, "counter_id is null"),
        ({"date": None}, "counted_at is null"),
        ({"sum_counts": None}, "hourly_count is null"),
        ({"sum_counts": -1}, "hourly_count is negative"),
        ({"date": "2023-12-31T23:00:00+00:00"}, WINDOW),
        ({"date": "2024-01-04T00:00:00+00:00"}, WINDOW),  # the end is exclusive
        ({"date": "2024-02-01T00:00:00+00:00"}, WINDOW),
        ({"coordinates": {"lat": 48.95, "lon": 2.33}}, LATITUDE),
        ({"coordinates": {"lat": 48.70, "lon": 2.33}}, LATITUDE),
        ({"coordinates": {"lat": 48.85, "lon": 2.50}}, LONGITUDE),
        ({"coordinates": {"lat": 2.33, "lon": 48.85}}, f"{LATITUDE}; {LONGITUDE}"),  # swapped
    ],
)
def test_each_expectation_catches_its_case(
    bad: dict[str, object], reason: str, settings: VelocastSettings
) -> None:
    frame = frame_of(record(date=hour(1)), record(**{"date": hour(2), **bad}), record(date=hour(3)))
    report = validate(frame, settings)
    assert reasons(report) == {1: reason}
    assert report.valid.index.tolist() == [0, 2]
    failed = [o for o in report.expectation_results if not o.success]
    assert [o.unexpected_count for o in failed] == [1] * len(failed)
    assert {o.rule for o in failed} == set(reason.split("; "))
    assert set(json.loads(report.quarantined["raw_record"].iloc[0])) == set(DATA_COLUMNS)


def test_non_integer_counts(settings: VelocastSettings) -> None:
    # normalize never produces these, but a frame from elsewhere may hold floats.
    frame = frame_of(record(date=hour(1)), record(date=hour(2)), record(date=hour(3)))
    frame["hourly_count"] = [1.0, 2.5, -3.5]
    assert reasons(validate(frame, settings)) == {
        1: "hourly_count is not an integer",
        2: "hourly_count is not an integer; hourly_count is negative",
    }


def test_window_start_is_inclusive_and_naive_windows_are_utc(settings: VelocastSettings) -> None:
    frame = frame_of(record(date="2024-01-01T00:00:00+00:00"), record(date="2024-01-03T23:00:00+00:00"))
    assert validate(frame, settings).success
    naive = validate_counts(frame, datetime(2024, 1, 1), datetime(2024, 1, 4), settings)
    assert naive.success
    paris = validate_counts(
        frame, pd.Timestamp("2024-01-01 01:00", tz="Europe/Paris").to_pydatetime(), END, settings
    )
    assert paris.success  # 01:00 Paris is 00:00 UTC


def test_window_is_a_parameter_not_baked_into_the_cached_suite(settings: VelocastSettings) -> None:
    frame = frame_of(record(date="2024-01-10T00:00:00+00:00"))
    first = validate_counts(frame, START, END, settings)
    second = validate_counts(
        frame, datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 1, 11, tzinfo=UTC), settings
    )
    assert not first.success and second.success


def test_bounding_box_comes_from_settings(settings: VelocastSettings) -> None:
    frame = frame_of(record(coordinates={"lat": 48.95, "lon": 2.33}))
    assert not validate(frame, settings).success
    wider = settings.model_copy(update={"paris_lat_max": 49.0})
    report = validate(frame, wider)
    assert report.success
    assert "latitude outside Paris bounding box [48.8, 49.0]" in [o.rule for o in report.expectation_results]


def test_null_coordinates_are_allowed(settings: VelocastSettings) -> None:
    assert validate(frame_of(record(coordinates=None)), settings).success


def test_every_failed_rule_is_named(settings: VelocastSettings) -> None:
    frame = frame_of(
        record(id_compteur=None, sum_counts=-5, date="2025-01-01T00:00:00+00:00", coordinates=None)
    )
    assert reasons(validate(frame, settings)) == {
        0: f"counter_id is null; hourly_count is negative; {WINDOW}"
    }


def test_exact_duplicates_are_dropped_and_counted(settings: VelocastSettings) -> None:
    frame = frame_of(record(date=hour(1)), record(date=hour(1)), record(date=hour(1)), record(date=hour(2)))
    report = validate(frame, settings)
    assert report.success
    assert report.duplicates_dropped == 2
    assert report.valid.index.tolist() == [0, 3]


def test_conflicting_duplicates_are_all_quarantined(settings: VelocastSettings) -> None:
    frame = frame_of(
        record(date=hour(1), sum_counts=5),
        record(date=hour(1), sum_counts=6),
        record(date=hour(1), sum_counts=5),  # exact copy of the first: dropped
        record(date=hour(2), sum_counts=5),
        record(date=hour(1), sum_counts=5, id_compteur="other counter"),
    )
    report = validate(frame, settings)
    assert report.duplicates_dropped == 1
    assert reasons(report) == {0: DUPLICATE_REASON, 1: DUPLICATE_REASON}
    assert report.valid.index.tolist() == [3, 4]


def test_quarantine_columns_and_raw_records(settings: VelocastSettings) -> None:
    records = [record(date=hour(1)), record(date=hour(2), sum_counts=-4)]
    raw = records_to_frame(records)
    frame = normalize(raw).frame
    report = validate(frame, settings, raw=raw)
    quarantined = report.quarantined
    assert list(quarantined.columns) == list(REJECTED_ROW_COLUMNS)
    assert quarantined.index.tolist() == [1]
    assert json.loads(quarantined["raw_record"].iloc[0]) == records[1]  # as received
    assert quarantined["counter_id"].tolist() == ["100003096-353242251"]
    assert quarantined["counted_at"].tolist() == [pd.Timestamp(hour(2))]
    assert str(quarantined["counted_at"].dtype) == "datetime64[ns, UTC]"

    normalized = json.loads(validate(frame, settings).quarantined["raw_record"].iloc[0])
    assert normalized["hourly_count"] == -4
    assert normalized["counted_at"] == "2024-01-02T02:00:00+00:00"
    assert set(normalized) == set(DATA_COLUMNS)


def test_valid_keeps_the_normalized_columns_and_index(settings: VelocastSettings) -> None:
    frame = frame_of(record(date=hour(1)), record(date=hour(2)))
    frame.index = pd.Index([7, 9])
    report = validate(frame, settings)
    assert report.valid.index.tolist() == [7, 9]
    assert list(report.valid.columns) == list(DATA_COLUMNS)
    assert report.valid.dtypes.equals(frame.dtypes)


def test_empty_frame(settings: VelocastSettings) -> None:
    report = validate(normalize(pd.DataFrame()).frame, settings)
    assert report.success and report.valid.empty and report.duplicates_dropped == 0


def test_frame_must_be_normalized(settings: VelocastSettings) -> None:
    with pytest.raises(ValueError, match="lacks contract columns"):
        validate(pd.DataFrame({"counter_id": ["a"]}), settings)


def test_sebastopol_rows_are_quarantined_for_their_missing_counter_id(settings: VelocastSettings) -> None:
    frame = normalize(read_source(DATA / "zheddhe_sebastopol_2024" / "initial_Sebastopol_N-S.csv")).frame
    report = validate_counts(
        frame, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC), settings
    )
    in_week = frame["counted_at"] < pd.Timestamp("2024-03-08", tz="UTC")
    assert report.valid.empty
    assert set(report.quarantined["reason"]) == {
        "counter_id is null",
        f"counter_id is null; {_window(3, 1, 3, 8)}",
    }
    assert (report.quarantined["reason"] == "counter_id is null").sum() == in_week.sum()


def _window(m1: int, d1: int, m2: int, d2: int) -> str:
    start, end = f"2024-{m1:02d}-{d1:02d}T00:00:00+00:00", f"2024-{m2:02d}-{d2:02d}T00:00:00+00:00"
    return f"counted_at outside window [{start}, {end})"


def test_real_parquet_slice_is_valid(settings: VelocastSettings) -> None:
    raw = pd.read_parquet(DATA / "regine_nj_projetvelo" / "dataset_projet_velo.parquet")
    raw = raw[
        (raw["annee_comptage"] == 2023)
        & (raw["mois_comptage"] == 10)
        & (raw["jour_comptage"].between(27, 31))
    ]
    frame = normalize(raw).frame
    report = validate_counts(
        frame, datetime(2023, 10, 26, 22, tzinfo=UTC), datetime(2023, 11, 1, tzinfo=UTC), settings
    )
    assert report.success, report.quarantined["reason"].value_counts()
    assert len(report.valid) == len(raw)


def test_gx_runs_ephemeral_and_quiet(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: VelocastSettings,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    validate(frame_of(record()), settings)
    assert list(tmp_path.iterdir()) == []  # no gx/ project, no uncommitted/ results
    assert os.environ["GX_ANALYTICS_ENABLED"] == "False"
    assert "Calculating Metrics" not in capfd.readouterr().err  # no progress bars in task logs


# --- rejected share -------------------------------------------------------------------------


def test_rejected_share() -> None:
    assert rejected_share(0, 0) == 0.0
    assert rejected_share(200, 10) == 0.05
    assert rejected_share(4, 4) == 1.0


def test_check_rejected_share(settings: VelocastSettings) -> None:
    check_rejected_share(0.0, settings)
    check_rejected_share(0.05, settings)  # at the threshold is still fine
    with pytest.raises(TooManyRejectedRowsError) as caught:
        check_rejected_share(rejected_share(200, 15), settings, fetched=200, quarantined=15)
    error = caught.value
    assert (error.share, error.threshold, error.fetched, error.quarantined) == (0.075, 0.05, 200, 15)
    assert str(error) == (
        "rejected share 7.50% (15 of 200 rows) exceeds the threshold 5.00% (VELOCAST_MAX_REJECTED_SHARE)"
    )
    with pytest.raises(TooManyRejectedRowsError, match=r"rejected share 100.00% exceeds"):
        check_rejected_share(1.0, settings)
