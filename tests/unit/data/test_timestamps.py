"""timestamps: every date form becomes UTC; naive and split local dates are Europe/Paris wall-clock time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.unit.data.samples import DATA, normalize_records, record, utc
from velocast.data.normalize import normalize

PARQUET = DATA / "regine_nj_projetvelo" / "dataset_projet_velo.parquet"


@pytest.fixture(scope="module")
def parquet_slice() -> pd.DataFrame:
    raw = pd.read_parquet(PARQUET)
    # Both clock changes of 2023, a winter and a summer day, for every counter.
    days = [(2023, 1, 15), (2023, 3, 26), (2023, 7, 1), (2023, 10, 29)]
    keep = np.zeros(len(raw), dtype=bool)
    for year, month, day in days:
        keep |= (
            (raw["annee_comptage"] == year) & (raw["mois_comptage"] == month) & (raw["jour_comptage"] == day)
        ).to_numpy()
    return raw[keep]


def test_parquet_local_date_parts_become_utc(parquet_slice: pd.DataFrame) -> None:
    result = normalize(parquet_slice)
    assert result.rejected.empty
    frame = result.frame
    assert len(frame) == len(parquet_slice)
    assert frame.index.equals(parquet_slice.index)  # maps back to the raw rows
    assert frame[["counter_id", "counted_at"]].duplicated().sum() == 0
    assert frame["site_id"].isna().all()
    local = parquet_slice.assign(counted_at=frame["counted_at"], counter=frame["counter_id"])

    def at(month: int, day: int, hour: int) -> set[pd.Timestamp]:
        rows = local[
            (local["mois_comptage"] == month)
            & (local["jour_comptage"] == day)
            & (local["heure_comptage"] == hour)
        ]
        return set(rows["counted_at"])

    assert at(1, 15, 8) == {utc("2023-01-15 07:00")}  # CET, +01:00
    assert at(7, 1, 8) == {utc("2023-07-01 06:00")}  # CEST, +02:00
    assert at(3, 26, 3) == {utc("2023-03-26 01:00")}  # right after the spring gap
    assert at(10, 29, 2) == {utc("2023-10-29 00:00")}  # the repeated hour, first time: summer time
    assert at(10, 29, 3) == {utc("2023-10-29 02:00")}
    assert frame["hourly_count"].dtype == "Int64"


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-09-01T03:00:00+02:00", "2021-09-01 01:00"),
        ("2021-12-01T03:00:00+01:00", "2021-12-01 02:00"),
        ("2025-12-31T12:00:00Z", "2025-12-31 12:00"),
        ("2024-03-01 03:00:00+00:00", "2024-03-01 03:00"),
        ("2024-03-01T03:00:00+0000", "2024-03-01 03:00"),
        ("2024-03-01T03:00:00.000+01:00", "2024-03-01 02:00"),
        # Naive values are Europe/Paris wall-clock time.
        ("2024-07-01T08:00:00", "2024-07-01 06:00"),
        ("2024-01-15 08:00:00", "2024-01-15 07:00"),
        ("2024-01-15", "2024-01-14 23:00"),
    ],
)
def test_timestamps_become_utc(text: str, expected: str) -> None:
    assert normalize_records(record(date=text)).frame["counted_at"].tolist() == [utc(expected)]


def test_dst_days_with_offsets() -> None:
    texts = [
        "2024-03-31T01:00:00+01:00",
        "2024-03-31T03:00:00+02:00",  # one hour later: 02:00 local does not exist
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:00:00+01:00",  # the same wall-clock hour again, one hour later
    ]
    frame = normalize_records(*(record(date=t) for t in texts)).frame
    assert frame["counted_at"].tolist() == [
        utc("2024-03-31 00:00"),
        utc("2024-03-31 01:00"),
        utc("2024-10-27 00:00"),
        utc("2024-10-27 01:00"),
    ]


def test_dst_days_in_local_time() -> None:
    result = normalize_records(
        record(date="2024-03-31 01:00:00"),
        record(date="2024-03-31 02:00:00"),  # does not exist in Paris
        record(date="2024-03-31 03:00:00"),
        record(date="2024-10-27 02:00:00"),  # exists twice: summer time first...
        record(date="2024-10-27 02:00:00"),  # ...then winter time
        record(date="2024-10-27 02:00:00", id_compteur="other"),  # another counter: summer time
    )
    assert result.frame["counted_at"].tolist() == [
        utc("2024-03-31 00:00"),
        utc("2024-03-31 01:00"),
        utc("2024-10-27 00:00"),
        utc("2024-10-27 01:00"),
        utc("2024-10-27 00:00"),
    ]
    assert result.rejected["reason"].tolist() == [
        "nonexistent local time '2024-03-31 02:00:00' (Europe/Paris clock change)"
    ]
    assert result.rejected.index.tolist() == [1]


def test_datetime_columns() -> None:
    aware = pd.DataFrame(
        {"id_compteur": ["a"], "date": pd.to_datetime(["2024-07-01T10:00:00+02:00"], utc=True)}
    )
    naive = pd.DataFrame({"id_compteur": ["a"], "date": pd.to_datetime(["2024-07-01T10:00:00"])})
    assert normalize(aware).frame["counted_at"].tolist() == [utc("2024-07-01 08:00")]
    assert normalize(naive).frame["counted_at"].tolist() == [utc("2024-07-01 08:00")]  # Paris


def test_date_parts() -> None:
    raw = pd.DataFrame(
        {
            "id_compteur": ["a"] * 5,
            "annee_comptage": [2023, 2023, 2023, 2023, None],
            "mois_comptage": [1, 3, 2, 1, None],
            "jour_comptage": [1, 26, 30, 1, None],
            "heure_comptage": [4, 2, 1, 24, None],
            "comptage_horaire": [1, 2, 3, 4, 5],
        }
    )
    result = normalize(raw)
    assert result.frame["counted_at"].iloc[0] == utc("2023-01-01 03:00")
    assert pd.isna(result.frame.loc[4, "counted_at"])  # no date at all: null, for validation
    assert dict(zip(result.rejected.index, result.rejected["reason"], strict=True)) == {
        1: "nonexistent local time '2023-3-26 2h' (Europe/Paris clock change)",
        2: "unparseable date parts '2023-2-30 1h'",
        3: "unparseable date parts '2023-1-1 24h'",
    }
