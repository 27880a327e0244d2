"""OpenDataClient against the replay server (a real uvicorn process), with injected faults."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from velocast.ingest.opendata import OpenDataClient, _midpoint
from velocast.ingest.opendata_http import OpenDataError, OpenDataUnavailableError
from velocast.settings import VelocastSettings

RETRIES = 3


def make_client(replay, **overrides: object) -> tuple[OpenDataClient, list[float]]:
    """A client of the replay whose sleeps are recorded instead of slept."""
    sleeps: list[float] = []
    options: dict[str, object] = {
        "opendata_base_url": f"{replay.url}/api/explore/v2.1",
        "http_max_retries": RETRIES,
        "http_backoff_seconds": 0.01,
        "http_max_backoff_seconds": 5.0,
        "http_timeout_seconds": 30.0,
        **overrides,
    }
    settings = VelocastSettings(**options)  # type: ignore[arg-type]
    return OpenDataClient(settings, sleep=sleeps.append, rng=random.Random(7)), sleeps


def keys(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["id_compteur"], r["date"]) for r in records]


def expected(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return frame[(frame["date"] >= pd.Timestamp(start)) & (frame["date"] < pd.Timestamp(end))]


def test_fetch_window_returns_every_record_of_the_window(replay, counts_frame, base_day) -> None:
    start, end = base_day, base_day + timedelta(days=2)
    client, sleeps = make_client(replay)
    with client:
        result = client.fetch_window(start, end)
    want = expected(counts_frame, start, end)
    assert (result.endpoint, result.requests, result.retries, sleeps) == ("exports", 1, 0, [])
    assert len(result.records) == len(want) > 0
    assert sum(r["sum_counts"] for r in result.records) == want["sum_counts"].sum()
    dates = [r["date"] for r in result.records]
    assert dates == sorted(dates) and dates[0] == start.isoformat()
    assert len(set(keys(result.records))) == len(result.records)


def test_429_twice_then_success_honours_retry_after(replay, base_day) -> None:
    replay.fault(mode="rate_limit", count=2, retry_after=1)
    client, sleeps = make_client(replay)
    result = client.fetch_window(base_day, base_day + timedelta(hours=2))
    assert (result.endpoint, result.requests, result.retries) == ("exports", 3, 2)
    assert sleeps == [1.0, 1.0]
    assert len(result.records) > 0


def test_retry_after_is_capped_by_the_max_backoff(replay, base_day) -> None:
    replay.fault(mode="rate_limit", count=1, retry_after=3600)
    client, sleeps = make_client(replay, http_max_backoff_seconds=2.0)
    assert client.fetch_window(base_day, base_day + timedelta(hours=1)).retries == 1
    assert sleeps == [2.0]


def test_500_then_success_backs_off_with_jitter(replay, base_day) -> None:
    replay.fault(mode="server_error", count=2)
    client, sleeps = make_client(replay)
    result = client.fetch_window(base_day, base_day + timedelta(hours=2))
    assert (result.endpoint, result.requests, result.retries) == ("exports", 3, 2)
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # base 0.01 s, doubled, equal jitter


def test_truncated_body_then_success(replay, counts_frame, base_day) -> None:
    start, end = base_day, base_day + timedelta(hours=6)
    replay.fault(mode="truncated", count=1)
    client, _ = make_client(replay)
    result = client.fetch_window(start, end)
    assert (result.endpoint, result.retries) == ("exports", 1)
    assert len(result.records) == len(expected(counts_frame, start, end))


def test_persistent_500_raises_unavailable(replay, base_day) -> None:
    replay.fault(mode="fail_after", after=0)
    client, sleeps = make_client(replay)
    with pytest.raises(OpenDataUnavailableError) as caught:
        client.fetch_window(base_day, base_day + timedelta(hours=1))
    error = caught.value
    assert error.status == 500
    assert error.url.endswith("/records")  # exports failed first, then the fallback did too
    assert error.url in str(error) and "500" in str(error)
    assert len(sleeps) == 2 * RETRIES
    assert replay.stats() == {"exports_json": RETRIES + 1, "records": RETRIES + 1}


def test_non_retryable_4xx_raises_with_the_status(replay, base_day) -> None:
    client, sleeps = make_client(replay, opendata_dataset="no-such-dataset")
    with pytest.raises(OpenDataError) as caught:
        client.fetch_window(base_day, base_day + timedelta(hours=1))
    assert not isinstance(caught.value, OpenDataUnavailableError)
    assert caught.value.status == 404 and sleeps == []


def test_falls_back_to_records_when_exports_are_down(replay, base_day) -> None:
    start, end = base_day, base_day + timedelta(hours=5)
    client, _ = make_client(replay)
    reference = client.fetch_window(start, end)
    replay.fault(mode="exports_down")
    result = client.fetch_window(start, end)
    assert result.endpoint == "records"
    assert result.retries == RETRIES  # the exports attempts; the records pages needed none
    assert result.records == reference.records


def test_records_fallback_splits_windows_over_the_10000_cap(replay, counts_frame, base_day) -> None:
    start = base_day + timedelta(days=35)
    end = start + timedelta(days=5)
    want = expected(counts_frame, start, end)
    assert len(want) > 10_000
    replay.fault(mode="exports_down")
    client, _ = make_client(replay)
    result = client.fetch_window(start, end)  # a page over offset + limit = 10000 would raise (HTTP 400)
    assert result.endpoint == "records"
    assert len(result.records) == len(want)
    assert len(set(keys(result.records))) == len(want)
    pages = -(-len(want) // 100)
    assert pages < replay.stats()["records"] <= pages + 4  # + the first page of each split window


def test_fetch_window_to_file_writes_ndjson(replay, counts_frame, base_day, tmp_path) -> None:
    start, end = base_day, base_day + timedelta(days=1)
    path = tmp_path / "out" / "raw.ndjson"
    replay.fault(mode="truncated", count=1)  # the retry must start the file again
    client, _ = make_client(replay)
    summary = client.fetch_window_to_file(start, end, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert (summary.endpoint, summary.retries, summary.rows) == ("exports", 1, len(lines))
    assert summary.rows == len(expected(counts_frame, start, end))
    assert summary.bytes == path.stat().st_size
    assert json.loads(lines[0]) == client.fetch_window(start, end).records[0]
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no .part left behind


def test_fetch_window_to_file_falls_back_to_records(replay, base_day, tmp_path) -> None:
    start, end = base_day, base_day + timedelta(hours=3)
    replay.fault(mode="exports_down")
    client, _ = make_client(replay)
    summary = client.fetch_window_to_file(start, end, tmp_path / "raw.ndjson")
    records = [json.loads(line) for line in (tmp_path / "raw.ndjson").read_text().splitlines()]
    assert summary.endpoint == "records" and summary.rows == len(records)
    replay.admin("DELETE", "/__admin/faults")
    assert records == client.fetch_window(start, end).records


def test_malformed_rows_are_passed_through_as_received(replay, base_day) -> None:
    start, end = base_day, base_day + timedelta(hours=1)
    client, _ = make_client(replay)
    clean = client.fetch_window(start, end).records
    replay.fault(mode="malformed_rows", count=1, rows=7)
    result = client.fetch_window(start, end)
    assert len(result.records) == len(clean) + 7 and result.retries == 0
    assert "abc" in {r["sum_counts"] for r in result.records}


def test_window_must_be_aware_and_non_empty(replay) -> None:
    client, _ = make_client(replay)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.fetch_window(datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="empty window"):
        client.fetch_window(datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))


# --- pure helpers ---------------------------------------------------------------------------


def test_midpoint_prefers_whole_hours() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert _midpoint(start, start + timedelta(days=5)) == start + timedelta(days=2, hours=12)
    assert _midpoint(start, start + timedelta(hours=3)) == start + timedelta(hours=1)
    assert _midpoint(start, start + timedelta(minutes=10)) == start + timedelta(minutes=5)
    assert _midpoint(start, start + timedelta(microseconds=10)) is None
