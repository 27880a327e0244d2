"""The replay's data: the packaged parquet and the whole-week shift that makes yesterday exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.unit.local.replay_http import expected, get, where
from velocast.local.replay.data import default_data_path, weeks_to_reach_yesterday


def test_default_data_path_is_the_packaged_parquet() -> None:
    # velocast.local.replay.data (a module) must not shadow velocast/local/data/ (the shipped files).
    path = default_data_path()
    assert path.is_file()
    assert path.parts[-4:] == ("velocast", "local", "data", "bike_counts.parquet")


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
