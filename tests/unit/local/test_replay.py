"""The replay of the Explore API v2.1, tested over HTTP against a real uvicorn process."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest

from velocast.local.replay import BASE_PATH, LABELS, ReplayConfig, create_app, weeks_to_reach_yesterday


def get(replay, endpoint: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{replay.url}{BASE_PATH}/{endpoint}", params=params, timeout=60)


def where(start: datetime, end: datetime) -> str:
    return f"date >= '{start.isoformat()}' AND date < '{end.isoformat()}'"


def expected(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return frame[(frame["date"] >= pd.Timestamp(start)) & (frame["date"] < pd.Timestamp(end))]


# --- shift --------------------------------------------------------------------------------


def test_weeks_to_reach_yesterday_is_the_fewest_whole_weeks() -> None:
    last = datetime(2024, 2, 25, 22, tzinfo=UTC)  # the packaged data: 2024-02-24 is the last full day
    assert weeks_to_reach_yesterday(last, datetime(2024, 2, 25, 12, tzinfo=UTC)) == 0
    assert weeks_to_reach_yesterday(last, datetime(2024, 2, 26, 12, tzinfo=UTC)) == 1
    assert weeks_to_reach_yesterday(last, datetime(2024, 3, 2, 12, tzinfo=UTC)) == 1
    assert weeks_to_reach_yesterday(last, datetime(2024, 3, 3, 12, tzinfo=UTC)) == 1
    assert weeks_to_reach_yesterday(last, datetime(2024, 3, 4, 0, tzinfo=UTC)) == 2
    assert weeks_to_reach_yesterday(last, datetime(2024, 2, 1, tzinfo=UTC)) == -3


def test_yesterday_is_a_complete_day_and_weekdays_are_kept(replay, counts_frame) -> None:
    health = httpx.get(f"{replay.url}/health").json()
    assert health["rows"] == len(counts_frame)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    body = get(replay, "records", where=where(yesterday, today), limit=1).json()
    counters = expected(counts_frame, yesterday, today)["id_compteur"].nunique()
    assert counters > 0
    assert body["total_count"] == 24 * counters
    original = datetime(2023, 1, 1, 3, tzinfo=UTC)  # first row of the source, a Sunday
    assert datetime.fromisoformat(health["first_date"]) == original + timedelta(weeks=replay.shift_weeks)
    assert datetime.fromisoformat(health["first_date"]).weekday() == original.weekday()


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


# --- records ------------------------------------------------------------------------------


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


def test_records_where_filters_on_shifted_dates(replay, counts_frame, base_day) -> None:
    end = base_day + timedelta(days=1)
    total = get(replay, "records", where=where(base_day, end)).json()["total_count"]
    assert total == len(expected(counts_frame, base_day, end)) > 0
    literal = f"date >= date'{base_day.date().isoformat()}' AND date < date'{end.date().isoformat()}'"
    assert get(replay, "records", where=literal).json()["total_count"] == total
    naive = f"date >= '{base_day:%Y-%m-%dT%H:%M:%S}' AND date < '{end:%Y-%m-%d}'"  # naive: the request's tz
    assert get(replay, "records", where=naive).json()["total_count"] == total
    hour = base_day + timedelta(hours=5)
    at_hour = get(replay, "records", where=f"date = '{hour.isoformat()}'").json()["total_count"]
    assert at_hour == len(expected(counts_frame, hour, hour + timedelta(hours=1)))
    bounded = f"date > '{base_day.isoformat()}' AND date <= '{hour.isoformat()}'"
    assert get(replay, "records", where=bounded).json()["total_count"] == len(
        expected(counts_frame, base_day + timedelta(hours=1), hour + timedelta(hours=1))
    )


def test_records_where_on_a_counter(replay, counts_frame, base_day) -> None:
    end = base_day + timedelta(days=2)
    counter = expected(counts_frame, base_day, end)["id_compteur"].iloc[0]
    body = get(
        replay, "records", where=f"{where(base_day, end)} and id_compteur = '{counter}'", limit=100
    ).json()
    assert body["total_count"] == 48
    assert {r["id_compteur"] for r in body["results"]} == {counter}
    other = f"id_compteur = '{counter}' AND id_compteur = 'x'"
    assert get(replay, "records", where=other).json()["total_count"] == 0


@pytest.mark.parametrize(
    "clause",
    [
        "date >= '2024-01-01' OR date < '2024-01-02'",
        "sum_counts > 3",
        "date >= 'yesterday'",
        "date >= '2024-01-01' AND",
        "id_compteur != 'x'",
        "search('Rivoli')",
    ],
)
def test_records_unsupported_where_is_a_400(replay, clause) -> None:
    response = get(replay, "records", where=clause)
    assert response.status_code == 400
    assert response.json()["error_code"] == "ODSQLError"
    assert "where" in response.json()["message"] or "date" in response.json()["message"]


def test_records_order_by_and_select(replay, base_day) -> None:
    window = where(base_day, base_day + timedelta(hours=3))
    body = get(
        replay, "records", where=window, order_by="date desc", limit=100, select="date, id_compteur"
    ).json()
    dates = [r["date"] for r in body["results"]]
    assert dates == sorted(dates, reverse=True)
    assert all(list(r) == ["date", "id_compteur"] for r in body["results"])
    body = get(replay, "records", where=window, order_by="id_compteur, date desc", limit=3).json()
    first = body["results"]
    assert first[0]["id_compteur"] == first[1]["id_compteur"] and first[0]["date"] > first[1]["date"]
    assert get(replay, "records", order_by="name").status_code == 400
    assert get(replay, "records", select="date,nope").status_code == 400


def test_records_timezone_changes_the_offset_not_the_instant(replay, base_day) -> None:
    window = where(base_day, base_day + timedelta(hours=1))
    utc = get(replay, "records", where=window, limit=1).json()["results"][0]["date"]
    paris = get(replay, "records", where=window, limit=1, timezone="Europe/Paris").json()["results"][0][
        "date"
    ]
    assert paris[-6:] in ("+01:00", "+02:00")
    assert datetime.fromisoformat(paris) == datetime.fromisoformat(utc)
    assert get(replay, "records", timezone="Mars/Olympus").status_code == 400


# --- exports ------------------------------------------------------------------------------


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


# --- faults -------------------------------------------------------------------------------


def test_rate_limit_fault(replay) -> None:
    replay.fault(mode="rate_limit", count=2, retry_after=3)
    for _ in range(2):
        response = get(replay, "records")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert int(response.headers["X-RateLimit-Limit"]) > 0
        assert int(response.headers["X-RateLimit-Reset"]) >= datetime.now(UTC).timestamp()
    assert get(replay, "records").status_code == 200
    assert replay.stats()["records"] == 3


def test_server_error_and_fail_after_faults(replay) -> None:
    replay.fault(mode="server_error", count=1)
    assert [get(replay, "records").status_code for _ in range(2)] == [500, 200]
    replay.fault(mode="fail_after", after=2)
    codes = [get(replay, "records").status_code for _ in range(4)]
    assert codes == [200, 200, 500, 500]
    replay.admin("DELETE", "/__admin/faults")
    assert get(replay, "records").status_code == 200


def test_truncated_fault_cuts_the_body(replay) -> None:
    replay.fault(mode="truncated", count=2)
    for endpoint in ("records", "exports/json"):
        response = get(replay, endpoint, limit=5)
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.text)
    assert len(get(replay, "exports/json", limit=5).json()) == 5


def test_malformed_rows_fault_adds_every_kind_of_bad_row(replay, base_day) -> None:
    end = base_day + timedelta(hours=1)
    good = get(replay, "exports/json", where=where(base_day, end)).json()
    replay.fault(mode="malformed_rows", count=1, rows=7)
    rows = get(replay, "exports/json", where=where(base_day, end)).json()
    assert rows[: len(good)] == good  # the real rows are all still there
    bad = rows[len(good) :]
    assert len(bad) == 7
    assert {-5, "abc", 3.5} <= {r["sum_counts"] for r in bad}
    assert None in {r["id_compteur"] for r in bad}
    assert "not-a-date" in {r["date"] for r in bad}
    assert 40.0 in {r["coordinates"]["lat"] for r in bad}
    outside = [
        r["date"] for r in bad if r["date"] != "not-a-date" and datetime.fromisoformat(r["date"]) >= end
    ]
    assert len(outside) == 1
    real_keys = {(r["id_compteur"], r["date"]) for r in good}
    assert not real_keys & {(r["id_compteur"], r["date"]) for r in bad}
    assert len(get(replay, "exports/json", where=where(base_day, end)).json()) == len(good)  # count=1


def test_exports_down_fault_spares_records(replay) -> None:
    replay.fault(mode="exports_down")
    assert get(replay, "exports/json", limit=1).status_code == 503
    assert get(replay, "exports/csv", limit=1).status_code == 503
    assert get(replay, "records", limit=1).status_code == 200
    stats = replay.admin("GET", "/__admin/stats").json()
    assert stats["requests"] == {"exports_json": 1, "exports_csv": 1, "records": 1}
    assert stats["faults_fired"] == {"exports_down": 2}
    assert replay.admin("DELETE", "/__admin/faults").json() == {"cleared": 1}
    assert get(replay, "exports/json", limit=1).status_code == 200


def test_unknown_fault_mode_is_rejected(replay) -> None:
    response = httpx.post(f"{replay.url}/__admin/faults", json={"mode": "earthquake"})
    assert response.status_code == 422
