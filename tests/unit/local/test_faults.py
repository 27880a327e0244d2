"""The replay's fault injection (``/__admin/faults``), over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.unit.local.replay_http import get, where


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
