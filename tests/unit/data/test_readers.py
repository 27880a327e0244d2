"""readers: files of every format and API records become raw frames; rows go back to JSON as received."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.data.samples import DENFERT, record, utc
from velocast.data.normalize import normalize
from velocast.data.readers import read_source, records_to_frame


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


def test_raw_records_keep_value_types() -> None:
    # pandas hashing equates True, 1 and 1.0: the raw record must still show what was received.
    raw = records_to_frame([record(sum_counts=True, name=1), record(sum_counts=1, name=True)])
    rejected = normalize(raw).rejected
    assert rejected["reason"].tolist() == ["count not a number 'True'"]
    assert json.loads(rejected["raw_record"].iloc[0])["name"] == 1
