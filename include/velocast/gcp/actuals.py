"""Recent actuals read from the raw BigQuery table, for code that runs outside Airflow.

The serving sidecar's training jobs take ``current_window`` (a reference to rows in
``bike_traffic_raw.hourly_counts``) instead of the rows themselves, so DAG 3 passes a window
through XCom, never a frame. The sidecar does not import Airflow, so this module uses the
BigQuery client library directly (the emulator when ``BIGQUERY_EMULATOR_HOST`` is set).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import pandas as pd
from google.cloud import bigquery
from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from velocast.contract import RAW_COUNTS, load_contract
from velocast.data.sql import table_ref, time_range
from velocast.gcp.clients import bigquery_client
from velocast.settings import VelocastSettings

# A training window longer than this is a mistake (the baseline holds the long history).
MAX_WINDOW: Final = timedelta(days=92)


class ActualsWindow(BaseModel):
    """``[start, end)`` in UTC of the raw table's ``counted_at``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> ActualsWindow:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
        if self.end - self.start > MAX_WINDOW:
            raise ValueError(
                f"the window spans {(self.end - self.start).days} days; at most {MAX_WINDOW.days} are allowed"
            )
        return self


def actuals_query(settings: VelocastSettings, window: ActualsWindow) -> str:
    columns = ", ".join(load_contract(RAW_COUNTS).column_names)
    return (
        f"SELECT {columns} FROM {table_ref(settings.raw_table_id)} "
        f"WHERE {time_range('counted_at', window.start, window.end)} "
        "ORDER BY counted_at, counter_id"
    )


def read_actuals(
    settings: VelocastSettings, window: ActualsWindow, *, client: bigquery.Client | None = None
) -> pd.DataFrame:
    """The raw table's rows in ``window`` (normalized shape: ``counter_id``, ``counted_at``, ...)."""
    client = client if client is not None else bigquery_client(settings)
    job = client.query(actuals_query(settings, window))
    return job.result().to_dataframe(create_bqstorage_client=False)


__all__ = ["MAX_WINDOW", "ActualsWindow", "actuals_query", "read_actuals"]
