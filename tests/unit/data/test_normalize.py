"""normalize: every real variant of the Paris bike-count data maps onto the raw contract's columns."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from velocast.data.normalize import (
    DATA_COLUMNS,
    REJECTED_COLUMNS,
    column_key,
    normalize,
    read_source,
    records_to_frame,
)

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "paris_bike_counts"
SAMPLES = sorted([*(DATA / "raw_export_samples").iterdir(), *(DATA / "api_samples").iterdir()])
SEBASTOPOL = DATA / "zheddhe_sebastopol_2024" / "initial_Sebastopol_N-S.csv"
PARQUET = DATA / "regine_nj_projetvelo" / "dataset_projet_velo.parquet"

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


def normalize_records(*records: dict[str, object]):
    return normalize(records_to_frame(list(records)))


def assert_contract_frame(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(DATA_COLUMNS)
    assert str(frame["counted_at"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["hourly_count"].dtype) == "Int64"
    assert str(frame["counter_id"].dtype) == "string"
    assert frame["latitude"].dtype == np.float64
    assert frame["longitude"].dtype == np.float64


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


# --- reading files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("page.json", json.dumps({"total_count": 1, "results": [record()]})),
        ("array.json", json.dumps([record()])),
        ("rows.ndjson", json.dumps(record()) + "\n\n"),
        (
            "rows.json",
            json.dumps(record()) + "\n" + json.dumps(record(date="2024-01-01T11:00:00+00:00")) + "\n",
        ),
        ("v1.json", json.dumps({"datasetid": "x", "recordid": "y", "fields": record()})),
        (
            "labels.csv",
            "\ufeffIdentifiant du compteur;Comptage horaire;Date et heure de comptage;"
            "Coordonnées géographiques\n"
            f"{DENFERT};12.0;2024-01-01T11:00:00+01:00;48.83511,2.33338\n",
        ),
        (
            "snake.csv",
            "identifiant_du_compteur,comptage_horaire,date_et_heure_de_comptage,latitude,longitude\n"
            f"{DENFERT},12,2024-01-01 10:00:00+00:00,48.83511,2.33338\n",
        ),
        ("noext", json.dumps([record()])),
    ],
)
def test_read_source_variants(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = normalize(read_source(path))
    assert result.rejected.empty
    row = result.frame.iloc[0]
    assert row["counter_id"] == DENFERT
    assert row["hourly_count"] == 12
    assert row["counted_at"] == utc("2024-01-01 10:00")
    assert (row["latitude"], row["longitude"]) == (48.83511, 2.33338)


def test_parquet_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    records_to_frame([record()]).astype({"sum_counts": "int64"}).drop(columns=["coordinates"]).to_parquet(
        path
    )
    assert normalize(read_source(path)).frame["hourly_count"].tolist() == [12]


def test_csv_keeps_text_as_text(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(
        "id_compteur;nom_compteur;sum_counts;date\n007;NA;1;2024-01-01T00:00:00Z\n", encoding="utf-8"
    )
    row = normalize(read_source(path)).frame.iloc[0]
    assert row["counter_id"] == "007"
    assert row["counter_name"] == "NA"


def test_records_to_frame_lifts_v1_fields_and_keeps_nested_values() -> None:
    v1 = {
        "recordid": "r",
        "fields": {"sum_counts": 1.0, "id": "site"},
        "geometry": {"type": "Point", "coordinates": [2.3, 48.8]},
    }
    frame = records_to_frame([v1, record()])
    assert {"recordid", "sum_counts", "id", "geometry", "coordinates"} <= set(frame.columns)
    assert "fields" not in frame.columns
    assert frame.loc[0, "geometry"] == {"type": "Point", "coordinates": [2.3, 48.8]}
    assert frame.loc[1, "coordinates"] == {"lon": 2.33338, "lat": 48.83511}


def test_column_names_match_case_accents_and_spacing_insensitively() -> None:
    assert column_key("\ufeffCoordonnées  Géographiques") == "coordonnees_geographiques"
    assert column_key("Date d'installation du site de comptage") == "date_d_installation_du_site_de_comptage"
    raw = pd.DataFrame(
        {
            "IDENTIFIANT DU COMPTEUR": [DENFERT],
            "comptage horaire": ["4"],
            "Date-et-heure-de-comptage": ["2024-01-01T10:00:00Z"],
            "COORDONNEES GEOGRAPHIQUES": ["48.8,2.3"],
        }
    )
    row = normalize(raw).frame.iloc[0]
    assert (row["counter_id"], row["hourly_count"], row["latitude"]) == (DENFERT, 4, 48.8)


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
    assert list(rejected.columns) == list(REJECTED_COLUMNS)
    assert rejected.index.tolist() == [1]
    assert rejected["reason"].tolist() == [reason]
    assert rejected["counter_id"].tolist() == [DENFERT]
    assert json.loads(rejected["raw_record"].iloc[0]) == raw_record


@pytest.mark.parametrize(("lat", "shown"), [(float("nan"), "null"), (float("inf"), '"inf"')])
def test_half_or_infinite_coordinate_objects(lat: float, shown: str) -> None:
    # Strict JSON has no NaN/Infinity: the raw record shows null / "inf" instead.
    result = normalize_records(record(coordinates={"lat": lat, "lon": 2.3}))
    assert result.rejected["reason"].tolist() == [
        f"""unparseable coordinates '{{"lat": {shown}, "lon": 2.3}}'"""
    ]
    raw_record = json.loads(result.rejected["raw_record"].iloc[0])
    assert raw_record["coordinates"] == {"lat": json.loads(shown), "lon": 2.3}


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
    assert list(result.rejected.columns) == list(REJECTED_COLUMNS)


def test_unknown_columns_only() -> None:
    result = normalize(records_to_frame([{"foo": 1}, "not a record"]))
    assert result.rejected.empty
    assert len(result.frame) == 2
    assert result.frame["counter_id"].isna().all()


def test_raw_records_keep_value_types() -> None:
    # pandas hashing equates True, 1 and 1.0: the raw record must still show what was received.
    raw = records_to_frame([record(sum_counts=True, name=1), record(sum_counts=1, name=True)])
    rejected = normalize(raw).rejected
    assert rejected["reason"].tolist() == ["count not a number 'True'"]
    assert json.loads(rejected["raw_record"].iloc[0])["name"] == 1


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
