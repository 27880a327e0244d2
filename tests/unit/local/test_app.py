"""The replay app over HTTP against a real uvicorn process: health, records and exports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.local.replay_http import expected, get, where
from velocast.local.replay.app import ReplayConfig, create_app
from velocast.local.replay.data import LABELS


def test_hours_that_have_not_ended_are_not_served(replay) -> None:
    now = datetime.now(UTC)
    assert get(replay, "records", where=f"date >= '{now.isoformat()}'").json()["total_count"] == 0
    published = get(replay, "records", where=f"date >= '{(now - timedelta(hours=3)).isoformat()}'").json()
    assert published["total_count"] > 0


def test_a_fixed_now_and_serve_future_are_configurable() -> None:
    from fastapi.testclient import TestClient

    now = datetime(2024, 3, 1, 12, tzinfo=UTC)
    app = create_app(ReplayConfig(shift_weeks=0, now=now))
    health = TestClient(app).get("/health").json()
    assert health["shift_weeks"] == 0
    assert health["served_until"] == "2024-03-01T11:00:00+00:00"
    app = create_app(ReplayConfig(now=now, serve_future=True))
    assert TestClient(app).get("/health").json()["shift_weeks"] == 1


def test_records_have_the_v2_1_shape(replay, base_day) -> None:
    body = get(replay, "records", where=where(base_day, base_day + timedelta(hours=1))).json()
    assert set(body) == {"total_count", "results"}
    assert len(body["results"]) == 10  # the default limit
    record = body["results"][0]
    assert list(record) == list(LABELS)
    assert isinstance(record["sum_counts"], int)
    assert record["date"] == base_day.isoformat()  # "YYYY-MM-DDTHH:MM:SS+00:00"
    assert record["id"] == record["id_compteur"].split("-")[0]
    assert not record["name"].endswith(("-NE", "-SO", "-N", "-S", "-E", "-O"))
    assert set(record["coordinates"]) == {"lon", "lat"}
    assert record["url_sites"] == f"https://www.eco-visio.net/Photos/{record['id']}"
    assert record["mois_annee_comptage"] == base_day.strftime("%Y-%m")
    assert record["installation_date"] is None


@pytest.mark.parametrize(
    ("limit", "offset", "status"),
    [
        (100, 0, 200),
        (101, 0, 400),
        (-1, 0, 400),
        ("abc", 0, 400),
        (100, 9900, 200),
        (100, 9901, 400),
        (1, 10000, 400),
    ],
)
def test_records_limit_and_offset_bounds(replay, limit, offset, status) -> None:
    response = get(replay, "records", limit=limit, offset=offset)
    assert response.status_code == status
    if status == 400:
        body = response.json()
        assert body["error_code"] == "InvalidRESTParameterError"
        assert body["message"]


def test_exports_json_is_streamed_and_complete(replay, counts_frame, base_day) -> None:
    end = base_day + timedelta(days=5)
    response = get(replay, "exports/json", where=where(base_day, end), order_by="date")
    assert response.status_code == 200
    assert "content-length" not in response.headers  # chunked: the body is never built whole
    rows = response.json()
    assert len(rows) == len(expected(counts_frame, base_day, end)) > 10_000
    page = get(replay, "records", where=where(base_day, end), order_by="date", limit=100).json()["results"]
    assert rows[:100] == page
    assert len(get(replay, "exports/json", where=where(base_day, end), limit=5).json()) == 5


def test_exports_csv_with_and_without_labels(replay, counts_frame, base_day) -> None:
    end = base_day + timedelta(hours=2)
    text = get(replay, "exports/csv", where=where(base_day, end), use_labels="true").text
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][:7] == [
        "Identifiant du compteur",
        "Nom du compteur",
        "Identifiant du site de comptage",
        "Nom du site de comptage",
        "Comptage horaire",
        "Date et heure de comptage",
        "Date d'installation du site de comptage",
    ]
    assert "Coordonnées géographiques" in rows[0]
    assert len(rows) - 1 == len(expected(counts_frame, base_day, end))
    coordinates = rows[1][rows[0].index("Coordonnées géographiques")]
    lat, lon = (float(v) for v in coordinates.split(","))
    assert 48.8 < lat < 48.91 and 2.2 < lon < 2.5
    plain = get(replay, "exports/csv", where=where(base_day, end), select="id_compteur,sum_counts,date").text
    header, first = plain.splitlines()[:2]
    assert header == "id_compteur;sum_counts;date"
    assert first.split(";")[2] == base_day.isoformat()
