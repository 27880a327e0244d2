"""``velocast.local.champion`` without the stack: the data it trains on and what it refuses.

Training, the registry and the sidecar loading the champion are in
``tests/integration/local/test_sidecar_process.py`` (real stack).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from velocast.errors import ConfigurationError, RequestError
from velocast.local.champion import bootstrap_champion, served_shift_weeks, shipped_counts
from velocast.local.replay.data import weeks_to_reach_yesterday
from velocast.settings import VelocastSettings

FILE_LAST = datetime(2024, 2, 25, 22, tzinfo=UTC)  # the packaged file's last hour (NOTICE.md)


def no_replay(tmp_path: Path, **updates: object) -> VelocastSettings:
    """Settings whose replay port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return VelocastSettings(env="local", state_dir=tmp_path, replay_port=port).model_copy(update=updates)


def test_without_a_running_replay_the_shift_is_the_one_it_would_apply(tmp_path: Path) -> None:
    assert served_shift_weeks(no_replay(tmp_path, replay_shift_weeks=3), FILE_LAST) == 3
    expected = weeks_to_reach_yesterday(FILE_LAST, datetime.now(UTC))
    assert served_shift_weeks(no_replay(tmp_path), FILE_LAST) == expected


def test_the_counts_are_the_last_weeks_of_the_file_dated_as_the_replay_serves_them(tmp_path: Path) -> None:
    unshifted = shipped_counts(no_replay(tmp_path, replay_shift_weeks=0), weeks=2)
    assert unshifted["counted_at"].max() == pd.Timestamp(FILE_LAST)
    assert unshifted["counted_at"].min() == pd.Timestamp(FILE_LAST) - timedelta(weeks=2) + timedelta(hours=1)
    assert unshifted["counter_id"].nunique() > 90
    assert unshifted["hourly_count"].notna().all()

    shifted = shipped_counts(no_replay(tmp_path, replay_shift_weeks=5), weeks=2)
    assert (shifted["counted_at"] - timedelta(weeks=5)).tolist() == unshifted["counted_at"].tolist()
    assert shifted["hourly_count"].tolist() == unshifted["hourly_count"].tolist()


def test_hours_the_replay_has_not_published_yet_are_left_out(tmp_path: Path) -> None:
    # Shifted 100 weeks the file ends on 2026-01-25 22:00 UTC; at noon on 2026-01-20 the replay has
    # published up to 11:00 (the hours that have ended).
    now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
    frame = shipped_counts(no_replay(tmp_path, replay_shift_weeks=100), weeks=1, now=now)
    assert frame["counted_at"].max() == pd.Timestamp("2026-01-20T11:00Z")
    assert frame["counted_at"].min() == pd.Timestamp("2026-01-13T12:00Z")


def test_a_window_before_the_file_has_no_counts(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="no counts the replay has published"):
        shipped_counts(
            no_replay(tmp_path, replay_shift_weeks=0), weeks=2, now=datetime(2020, 1, 1, tzinfo=UTC)
        )


def test_bootstrap_is_for_the_local_stack_and_needs_a_held_out_week(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="local stack"):
        bootstrap_champion(VelocastSettings(env="dev", state_dir=tmp_path))
    with pytest.raises(RequestError, match="at least 2"):
        bootstrap_champion(no_replay(tmp_path), weeks=1)
