"""What one run of DAG 1 is, and the typed values its steps hand each other.

``IngestionRun`` is the run context every step takes: the window, Airflow's run id and the
settings. The outcomes (``ExtractOutcome``, ``TransformOutcome``, ``LoadOutcome``,
``IngestionLogRow``) are what the steps return and the DAG passes on through XCom.

They are flat frozen dataclasses of built-in values, dates and datetimes on purpose: Airflow's
serde (``airflow.sdk.serde``, what XCom uses) serialises dataclasses by their fields and rebuilds
them by class name, provided ``[core] allowed_deserialization_classes`` includes ``velocast.*``.
A nested dataclass would come back as a dict, so outcomes hold no other dataclass. The settings
never travel through XCom: each task reads its own (``IngestionRun`` is built in the task).

Light on purpose (no pandas, no Google clients): the DAG file imports these types when it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from velocast.ingest.opendata import Endpoint
from velocast.ingest.window import IngestionWindow
from velocast.settings import VelocastSettings

RunStatus = Literal["success", "rejected"]


@dataclass(frozen=True)
class IngestionRun:
    """The context of one run: what every step needs besides its own inputs."""

    window: IngestionWindow
    run_id: str
    settings: VelocastSettings


@dataclass(frozen=True)
class ExtractOutcome:
    """The window's raw records, staged as NDJSON in GCS, and how they were fetched."""

    raw_uri: str
    rows_fetched: int
    endpoint: Endpoint
    fetch_seconds: float
    started_at: datetime


@dataclass(frozen=True)
class TransformOutcome:
    """The valid and the quarantined rows, staged as Parquet in GCS, and their counts."""

    clean_uri: str
    quarantine_uri: str
    rows_fetched: int
    rows_valid: int
    rows_quarantined: int
    duplicates_dropped: int
    rejected_share: float
    days_with_data: tuple[date, ...]


@dataclass(frozen=True)
class LoadOutcome:
    """What the load replaced: the days with data, and the days the API has not published yet."""

    rows_loaded: int
    days_replaced: tuple[date, ...]
    days_without_data: tuple[date, ...]


@dataclass(frozen=True)
class IngestionLogRow:
    """The run's row in the ``ingestion_log`` table (its columns, in the contract's order)."""

    ingestion_run_id: str
    logical_date: date
    window_start: datetime
    window_end: datetime
    status: RunStatus
    source_endpoint: Endpoint
    rows_fetched: int
    rows_loaded: int
    rows_quarantined: int
    duplicates_dropped: int
    rejected_share: float
    fetch_seconds: float
    duration_seconds: float
    logged_at: datetime


__all__ = [
    "ExtractOutcome",
    "IngestionLogRow",
    "IngestionRun",
    "LoadOutcome",
    "RunStatus",
    "TransformOutcome",
]
