"""Fixtures of the model tests: the real slice of ``real_slice``, normalized, split by time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.unit.ml.real_slice import COUNTERS, END, PARQUET, START, TEST_START, UNSEEN, rows
from velocast.data.normalize import normalize


@pytest.fixture(scope="module")
def slice_frame(shared_data: Path) -> pd.DataFrame:
    """5 (+1 unseen) counters × 6 weeks of real counts, normalized."""
    raw = pd.read_parquet(
        shared_data / PARQUET,
        filters=[
            ("id_compteur", "in", [*COUNTERS, UNSEEN]),
            ("annee_comptage", "=", 2023),
            ("mois_comptage", "in", [2, 3]),
        ],
    )
    frame = normalize(raw).frame
    local = frame["counted_at"].dt.tz_convert("Europe/Paris")
    return rows(frame, (local >= START) & (local < END))


@pytest.fixture(scope="module")
def train(slice_frame: pd.DataFrame) -> pd.DataFrame:
    local = slice_frame["counted_at"].dt.tz_convert("Europe/Paris")
    return rows(slice_frame, (local < TEST_START) & (slice_frame["counter_id"] != UNSEEN))


@pytest.fixture(scope="module")
def test_frame(slice_frame: pd.DataFrame) -> pd.DataFrame:
    local = slice_frame["counted_at"].dt.tz_convert("Europe/Paris")
    return rows(slice_frame, local >= TEST_START)
