"""Shared by the tests of ``velocast.data``: a valid API record, the real samples' folder, checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from velocast.data.columns import DATA_COLUMNS
from velocast.data.normalize import NormalizeResult, normalize
from velocast.data.readers import records_to_frame

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "paris_bike_counts"

DENFERT = "100003096-353242251"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def record(**overrides: object) -> dict[str, object]:
    """A valid Explore API v2.1 record."""
    base: dict[str, object] = {
        "id_compteur": DENFERT,
        "nom_compteur": "97 avenue Denfert Rochereau SO-NE",
        "id": "100003096",
        "name": "97 avenue Denfert Rochereau",
        "sum_counts": 12,
        "date": "2024-01-01T10:00:00+00:00",
        "coordinates": {"lon": 2.33338, "lat": 48.83511},
        "installation_date": "2012-02-22",
    }
    base.update(overrides)
    return base


def normalize_records(*records: dict[str, object]) -> NormalizeResult:
    return normalize(records_to_frame(list(records)))


def assert_contract_frame(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(DATA_COLUMNS)
    assert str(frame["counted_at"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["hourly_count"].dtype) == "Int64"
    assert str(frame["counter_id"].dtype) == "string"
    assert frame["latitude"].dtype == np.float64
    assert frame["longitude"].dtype == np.float64
