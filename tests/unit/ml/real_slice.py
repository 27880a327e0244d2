"""Shared by the model tests: a small slice of real counts (5 counters, 6 weeks, 1 unseen counter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

PARQUET = Path("regine_nj_projetvelo") / "dataset_projet_velo.parquet"
COUNTERS = [
    "100003096-353242251",
    "100003098-101003098",
    "100006300-101006300",
    "100007049-101007049",
    "100007049-102007049",
]
UNSEEN = "100036718-103036718"  # a real counter the models are not trained on
START = pd.Timestamp("2023-02-06", tz="Europe/Paris")  # a Monday; 6 weeks, no clock change
TEST_START = START + pd.Timedelta(weeks=5)
END = START + pd.Timedelta(weeks=6)
# Small but real settings, so each fit stays well under a second or two.
FAST: dict[str, dict[str, Any]] = {"rf": {"n_estimators": 10}, "hgb": {"max_iter": 60}}


def rows(frame: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    selected: pd.DataFrame = frame.loc[mask].reset_index(drop=True)
    return selected
