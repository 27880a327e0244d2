"""parsers: coordinates and counts in every written form; unreadable values are rejected with a reason."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.unit.data.samples import normalize_records, record
from velocast.data.normalize import normalize

# --- coordinates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"coordinates": {"lon": 2.33338, "lat": 48.83511}},  # v2.1
        {"coordinates": "48.83511,2.33338"},  # CSV export
        {"coordinates": "48.83511, 2.33338"},  # later CSV export
        {"coordinates": [48.83511, 2.33338]},  # v1 fields.coordinates
        {
            "coordinates": None,
            "geometry": {"type": "Point", "coordinates": [2.33338, 48.83511]},
        },  # v1 geometry
        {"coordinates": '{"lon": 2.33338, "lat": 48.83511}'},  # a JSON text in a CSV cell
        {"coordinates": None, "latitude": "48,83511", "longitude": "2,33338"},  # decimal commas
        {"coordinates": None, "lat": 48.83511, "lon": 2.33338},  # replay
    ],
    ids=[
        "lon-lat-object",
        "lat,lon",
        "lat, lon",
        "[lat, lon]",
        "geometry",
        "json-text",
        "comma-decimals",
        "lat-lon",
    ],
)
def test_coordinate_variants(fields: dict[str, object]) -> None:
    result = normalize_records(record(**fields))
    assert result.rejected.empty
    row = result.frame.iloc[0]
    assert (row["latitude"], row["longitude"]) == (48.83511, 2.33338)


def test_missing_coordinates_stay_null() -> None:
    result = normalize_records(record(coordinates=None), record(coordinates=""), record(coordinates={}))
    assert result.rejected.empty
    assert result.frame["latitude"].isna().all()
    assert result.frame["longitude"].isna().all()


# --- counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, 3.0, "3", "3.0", " 3 ", "+3", np.int64(3)])
def test_integral_counts(value: object) -> None:
    assert normalize_records(record(sum_counts=value)).frame["hourly_count"].tolist() == [3]


def test_null_counts_are_kept_for_validation() -> None:
    result = normalize_records(record(sum_counts=None), record(sum_counts=""))
    assert result.rejected.empty
    assert result.frame["hourly_count"].isna().all()


def test_negative_counts_are_left_to_validation() -> None:
    assert normalize_records(record(sum_counts=-2)).frame["hourly_count"].tolist() == [-2]


def test_float_count_column() -> None:
    raw = pd.DataFrame({"id_compteur": ["a"] * 4, "sum_counts": [3.0, np.nan, 3.5, np.inf]})
    result = normalize(raw)
    assert result.frame["hourly_count"].tolist() == [3, pd.NA]
    assert result.rejected["reason"].tolist() == ["non-integer count '3.5'", "count out of range 'inf'"]


@pytest.mark.parametrize(("lat", "shown"), [(float("nan"), "null"), (float("inf"), '"inf"')])
def test_half_or_infinite_coordinate_objects(lat: float, shown: str) -> None:
    # Strict JSON has no NaN/Infinity: the raw record shows null / "inf" instead.
    result = normalize_records(record(coordinates={"lat": lat, "lon": 2.3}))
    assert result.rejected["reason"].tolist() == [
        f"""unparseable coordinates '{{"lat": {shown}, "lon": 2.3}}'"""
    ]
    raw_record = json.loads(result.rejected["raw_record"].iloc[0])
    assert raw_record["coordinates"] == {"lat": json.loads(shown), "lon": 2.3}
