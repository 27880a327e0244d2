"""normalize: every real variant of the Paris bike-count data maps onto the raw contract's columns."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.data.samples import DATA, DENFERT, assert_contract_frame, normalize_records, record, utc
from velocast.contract import REJECTED_ROW_COLUMNS
from velocast.data.columns import DATA_COLUMNS
from velocast.data.normalize import normalize
from velocast.data.readers import read_source, records_to_frame

SAMPLES = sorted([*(DATA / "raw_export_samples").iterdir(), *(DATA / "api_samples").iterdir()])
SEBASTOPOL = DATA / "zheddhe_sebastopol_2024" / "initial_Sebastopol_N-S.csv"
PARQUET = DATA / "regine_nj_projetvelo" / "dataset_projet_velo.parquet"


# --- real files -----------------------------------------------------------------------------


def test_shared_data_is_present() -> None:
    # The real samples must be there: an empty parametrisation would silently test nothing.
    assert len(SAMPLES) == 4
    assert SEBASTOPOL.is_file()
    assert PARQUET.is_file()


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_real_sample_parses(path: Path) -> None:
    raw = read_source(path)
    result = normalize(raw)
    assert result.rejected.empty, result.rejected["reason"].tolist()
    assert len(result.frame) == len(raw) > 0
    assert_contract_frame(result.frame)
    frame = result.frame
    assert frame["counter_id"].notna().all()
    assert frame["hourly_count"].notna().all()
    assert (frame["counted_at"] == frame["counted_at"].dt.floor("h")).all()
    assert frame["latitude"].between(48.8, 48.91).all()
    assert frame["longitude"].between(2.22, 2.47).all()


def test_french_csv_export_labels() -> None:
    frame = normalize(
        read_source(DATA / "raw_export_samples" / "fredericsov_pybike__comptage-velo-donnees-compteurs.csv")
    ).frame
    assert len(frame) == 21
    first = frame.iloc[0]
    assert first["counter_id"] == DENFERT
    assert first["counter_name"] == "97 avenue Denfert Rochereau SO-NE"
    assert first["site_id"] == "100003096"
    assert first["site_name"] == "97 avenue Denfert Rochereau"
    assert first["hourly_count"] == 3  # "3.0"
    assert first["counted_at"] == utc("2021-09-01 01:00")  # 03:00+02:00
    assert (first["latitude"], first["longitude"]) == (48.83504, 2.33314)  # "48.83504,2.33314"
    assert first["installation_date"] == date(2012, 2, 22)
    assert frame["counted_at"].is_unique


def test_csv_with_bom_and_spaced_coordinates() -> None:
    raw = read_source(DATA / "raw_export_samples" / "kedio-labs_velo-city-db__paris-test.csv")
    assert raw.columns[0] == "Identifiant du compteur"  # the BOM is gone
    frame = normalize(raw).frame
    assert len(frame) == 5
    assert set(frame["counter_id"]) == {DENFERT, "300030271-353356061"}
    first = frame.iloc[0]
    assert (first["latitude"], first["longitude"]) == (48.83504, 2.33314)  # "48.83504, 2.33314"
    assert first["hourly_count"] == 68
    assert first["counted_at"] == utc("2022-07-01 05:00")


def test_api_v21_page() -> None:
    frame = normalize(
        read_source(DATA / "api_samples" / "ambiya12_paris-bike-pulse__bicycle_api_page.json")
    ).frame
    assert frame["hourly_count"].tolist() == [69, 0]
    assert frame["counted_at"].tolist() == [utc("2025-12-31 12:00"), utc("2025-12-31 21:00")]
    assert frame["latitude"].tolist() == [48.86999, 48.86999]
    assert frame["longitude"].tolist() == [2.30743, 2.30743]
    assert frame["installation_date"].isna().all()


def test_v1_export_record() -> None:
    path = DATA / "api_samples" / "vikmanatusEurelis_ai-school-training__v1_export_record.json"
    raw = read_source(path)
    assert "fields" not in raw.columns and "sum_counts" in raw.columns
    row = normalize(raw).frame.iloc[0]
    assert row["hourly_count"] == 0  # 0.0
    assert row["counted_at"] == utc("2020-10-01 02:00")  # 04:00+02:00
    assert (row["latitude"], row["longitude"]) == (48.83511, 2.33338)  # fields.coordinates is [lat, lon]
    assert row["installation_date"] == date(2012, 2, 22)


def test_sebastopol_csv_parses_without_counter_id() -> None:
    raw = read_source(SEBASTOPOL)
    result = normalize(raw)
    assert result.rejected.empty
    frame = result.frame
    assert len(frame) == len(raw) == 7375
    assert frame["counter_id"].isna().all()  # not in the file: validation quarantines it later
    assert set(frame["counter_name"]) == {"Totem 73 boulevard de Sébastopol N-S"}
    assert set(frame["site_name"]) == {"Totem 73 boulevard de Sébastopol"}
    assert frame["counted_at"].iloc[0] == utc("2024-03-01 03:00")
    assert frame["hourly_count"].iloc[0] == 19
    assert (frame["latitude"].iloc[0], frame["longitude"].iloc[0]) == (48.86377, 2.35096)
    assert frame["counted_at"].is_unique


def test_replay_format() -> None:
    # As the replay ships it: datetime64[us, UTC] dates, int64 counts, lat/lon columns.
    counted = pd.to_datetime(["2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    raw = pd.DataFrame(
        {
            "id_compteur": [DENFERT, DENFERT],
            "nom_compteur": ["97 avenue Denfert Rochereau SO-NE"] * 2,
            "id": ["100003096"] * 2,
            "name": ["97 avenue Denfert Rochereau"] * 2,
            "sum_counts": [5, 7],
            "date": counted,
            "lat": [48.83511, 48.83511],
            "lon": [2.33338, 2.33338],
        }
    )
    frame = normalize(raw).frame
    assert_contract_frame(frame)
    assert frame["counted_at"].tolist() == list(counted)
    assert frame["hourly_count"].tolist() == [5, 7]
    assert frame["latitude"].tolist() == [48.83511] * 2
    assert frame["site_id"].tolist() == ["100003096"] * 2


def test_normalize_is_idempotent() -> None:
    first = normalize(read_source(SAMPLES[0])).frame
    again = normalize(first)
    assert again.rejected.empty
    pd.testing.assert_frame_equal(again.frame, first)


# --- malformed values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"date": "not-a-date"}, "unparseable date 'not-a-date'"),
        ({"date": "2024-13-01T00:00:00+00:00"}, "unparseable date '2024-13-01T00:00:00+00:00'"),
        ({"date": 1704067200}, "unparseable date '1704067200'"),
        (
            {"date": "2024-01-01T10:30:00+00:00"},
            "date not at the start of an hour '2024-01-01T10:30:00+00:00'",
        ),
        ({"sum_counts": "3.5"}, "non-integer count '3.5'"),
        ({"sum_counts": 3.5}, "non-integer count '3.5'"),
        ({"sum_counts": "abc"}, "count not a number 'abc'"),
        ({"sum_counts": "nan"}, "count not a number 'nan'"),
        ({"sum_counts": True}, "count not a number 'True'"),
        ({"sum_counts": "1e30"}, "count out of range '1e30'"),
        ({"sum_counts": "9" * 400}, "count out of range '" + "9" * 79 + "…'"),
        ({"sum_counts": "١٢"}, "count not a number '١٢'"),  # only ASCII digits
        ({"sum_counts": "0x10"}, "count not a number '0x10'"),
        ({"date": "2024-01-01T00:00:00+99:99"}, "unparseable date '2024-01-01T00:00:00+99:99'"),
        ({"date": "9999-12-31T23:00:00+00:00"}, "unparseable date '9999-12-31T23:00:00+00:00'"),
        ({"coordinates": "48.8;2.3;1"}, "unparseable coordinates '48.8;2.3;1'"),
        ({"coordinates": "north"}, "unparseable coordinates 'north'"),
        ({"coordinates": {"lat": "x", "lon": 2.3}}, """unparseable coordinates '{"lat": "x", "lon": 2.3}'"""),
        ({"coordinates": [48.8]}, "unparseable coordinates '[48.8]'"),
        ({"coordinates": {"lat": 48.8}}, """unparseable coordinates '{"lat": 48.8}'"""),
        ({"coordinates": None, "lat": "abc", "lon": 2.3}, "unparseable latitude 'abc'"),
        ({"installation_date": "yesterday"}, "unparseable installation date 'yesterday'"),
        ({"installation_date": "2012-02-30"}, "unparseable installation date '2012-02-30'"),
    ],
)
def test_malformed_values_are_rejected_with_a_reason(fields: dict[str, object], reason: str) -> None:
    raw_record = record(**fields)
    result = normalize_records(record(), raw_record)
    assert len(result.frame) == 1
    assert result.frame.index.tolist() == [0]
    rejected = result.rejected
    assert list(rejected.columns) == list(REJECTED_ROW_COLUMNS)
    assert rejected.index.tolist() == [1]
    assert rejected["reason"].tolist() == [reason]
    assert rejected["counter_id"].tolist() == [DENFERT]
    assert json.loads(rejected["raw_record"].iloc[0]) == raw_record


def test_every_problem_of_a_row_is_named() -> None:
    result = normalize_records(record(date="soon", sum_counts="many", coordinates="here"))
    assert result.rejected["reason"].tolist() == [
        "unparseable date 'soon'; count not a number 'many'; unparseable coordinates 'here'"
    ]
    assert pd.isna(result.rejected["counted_at"].iloc[0])


def test_rejected_rows_keep_what_could_be_read() -> None:
    rejected = normalize_records(record(sum_counts="x")).rejected
    assert rejected["counted_at"].tolist() == [utc("2024-01-01 10:00")]
    assert str(rejected["counted_at"].dtype) == "datetime64[ns, UTC]"


def test_long_values_are_truncated_in_reasons() -> None:
    reason = normalize_records(record(sum_counts="x" * 500)).rejected["reason"].iloc[0]
    assert len(reason) < 120
    assert reason.startswith("count not a number 'xxx") and reason.endswith("…'")


def test_empty_input() -> None:
    result = normalize(pd.DataFrame())
    assert result.frame.empty and result.rejected.empty
    assert list(result.frame.columns) == list(DATA_COLUMNS)
    assert list(result.rejected.columns) == list(REJECTED_ROW_COLUMNS)


def test_unknown_columns_only() -> None:
    result = normalize(records_to_frame([{"foo": 1}, "not a record"]))
    assert result.rejected.empty
    assert len(result.frame) == 2
    assert result.frame["counter_id"].isna().all()


def test_raw_index_labels_are_kept() -> None:
    raw = records_to_frame([record(), record(sum_counts="bad")])
    raw.index = pd.Index([10, 20])
    result = normalize(raw)
    assert result.frame.index.tolist() == [10]
    assert result.rejected.index.tolist() == [20]


# --- never raises ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["lat", "lon", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counts=st.lists(st.text(), min_size=1, max_size=4),
    dates=st.lists(st.text(), min_size=1, max_size=4),
    coordinates=st.lists(st.text(), min_size=1, max_size=4),
)
def test_normalize_never_raises_on_arbitrary_strings(
    counts: list[str], dates: list[str], coordinates: list[str]
) -> None:
    n = max(len(counts), len(dates), len(coordinates))

    def pad(values: list[str]) -> list[str]:
        return (values * n)[:n]

    raw = pd.DataFrame(
        {
            "Identifiant du compteur": [DENFERT] * n,
            "Comptage horaire": pad(counts),
            "Date et heure de comptage": pad(dates),
            "Coordonnées géographiques": pad(coordinates),
            "Date d'installation du site de comptage": pad(dates),
        }
    )
    check_partition(raw)


@settings(max_examples=300, deadline=None)
@given(count=json_values, when=json_values, where=json_values, installed=json_values)
def test_normalize_never_raises_on_arbitrary_json_values(
    count: object, when: object, where: object, installed: object
) -> None:
    raw = records_to_frame(
        [record(sum_counts=count, date=when, coordinates=where, installation_date=installed), record()]
    )
    check_partition(raw)


def check_partition(raw: pd.DataFrame) -> None:
    result = normalize(raw)
    assert sorted([*result.frame.index, *result.rejected.index]) == list(raw.index)
    assert result.rejected["reason"].str.len().gt(0).all()
    for text in result.rejected["raw_record"]:
        json.loads(text)
    assert_contract_frame(result.frame)
