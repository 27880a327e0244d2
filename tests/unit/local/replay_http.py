"""Helpers shared by the replay tests: data requests to the running replay and their expected answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pandas as pd

from velocast.local.replay.app import BASE_PATH


def get(replay: Any, endpoint: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{replay.url}{BASE_PATH}/{endpoint}", params=params, timeout=60)


def where(start: datetime, end: datetime) -> str:
    return f"date >= '{start.isoformat()}' AND date < '{end.isoformat()}'"


def expected(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return frame[(frame["date"] >= pd.Timestamp(start)) & (frame["date"] < pd.Timestamp(end))]
