"""The replay's request parameters (where, order_by, select, timezone), over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.unit.local.replay_http import expected, get, where


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
