"""What one run of DAG 2 is, and the typed values its steps hand each other.

``PredictionRun`` is the context every step takes: the run's local Paris day ``D`` (from the logical
date), Airflow's run id and the settings. The outcomes are flat frozen dataclasses of built-in
values and dates, so they travel through XCom with Airflow's serde (``velocast.*`` is in
``[core] allowed_deserialization_classes``), like DAG 1's (``velocast.ingest.run``).

Light on purpose (no pandas, no Google clients, no Airflow): the DAG file imports these types when
it is parsed, and ``velocast.predict`` never imports Airflow (import contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from velocast.contract import PARIS
from velocast.errors import ConflictError, RequestError
from velocast.settings import VelocastSettings


class NoChampionError(ConflictError):
    """The serving sidecar has no champion: retrying cannot help, training must run first."""


class InvalidForecastPartitionError(RequestError):
    """The partition just written breaks one of its invariants (rows, values, champion)."""


def run_day_of(logical_date: datetime) -> date:
    """The run's local day ``D``: its logical date's date in Paris."""
    if logical_date.tzinfo is None:
        raise ValueError("the logical date must be timezone-aware")
    return logical_date.astimezone(PARIS).date()


@dataclass(frozen=True)
class PredictionRun:
    """The context of one run: what every step needs besides its own inputs."""

    run_day: date
    run_id: str
    settings: VelocastSettings


@dataclass(frozen=True)
class ForecastOutcome:
    """The run's forecasts, staged as Parquet in GCS, and the champion that made them."""

    staged_uri: str
    rows: int
    counters: int
    hours: int
    unknown_counters: int
    data_cutoff: datetime
    model_type: str
    model_run_id: str
    model_version: str | None


@dataclass(frozen=True)
class LoadOutcome:
    """The partition the load replaced, as validated after the write."""

    prediction_date: date
    rows_loaded: int
    model_run_id: str


@dataclass(frozen=True)
class ScoreOutcome:
    """The days scored (complete ones with forecasts) and the score rows written."""

    days_scored: tuple[date, ...]
    days_incomplete: tuple[date, ...]
    rows_written: int


__all__ = [
    "ForecastOutcome",
    "InvalidForecastPartitionError",
    "LoadOutcome",
    "NoChampionError",
    "PredictionRun",
    "ScoreOutcome",
    "run_day_of",
]
