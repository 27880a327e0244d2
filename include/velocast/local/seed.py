"""Fill the raw table with the shipped counts, as DAG 1 would have: for DAG 2's tests and bench.

The last weeks the replay has published (``velocast.local.champion.shipped_counts``) replace that
range of ``hourly_counts``, through a staged Parquet file and a load job like every write here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from velocast import contract
from velocast.contract import PARIS
from velocast.data.sql import table_ref, time_range
from velocast.gcp.storage import Storage
from velocast.gcp.warehouse import Warehouse, contract_frame
from velocast.ingest.steps import ensure_tables as ensure_raw_tables
from velocast.local.champion import shipped_counts
from velocast.settings import VelocastSettings


@dataclass(frozen=True)
class SeededCounts:
    rows: int
    counters: int
    start: datetime
    end: datetime

    @property
    def complete_days(self) -> tuple[date, date]:
        """The first and last local days the seeded range covers whole."""
        first = self.start.astimezone(PARIS).date() + timedelta(days=1)
        return first, self.end.astimezone(PARIS).date() - timedelta(days=1)


def seed_raw_counts(settings: VelocastSettings, weeks: int, *, run_id: str) -> SeededCounts:
    """Replace the raw table's rows of the shipped counts' last ``weeks`` weeks with those counts."""
    ensure_raw_tables(settings)
    warehouse = Warehouse(settings)
    raw = contract.load_contract(contract.RAW_COUNTS)
    rows = contract_frame(
        shipped_counts(settings, weeks), raw, ingestion_run_id=run_id, ingested_at=datetime.now(UTC)
    )
    start, end = rows["counted_at"].min().to_pydatetime(), rows["counted_at"].max().to_pydatetime()
    table_id = warehouse.table_id(raw)
    warehouse.run_script(
        f"DELETE FROM {table_ref(table_id)} WHERE {time_range('counted_at', start, end + timedelta(hours=1))}"
    )
    object_name = f"{settings.staging_prefix}/seed/{run_id}.parquet"
    storage = Storage(settings)
    warehouse.load_frame(rows, raw, table_id, storage=storage, object_name=object_name, append=True)
    storage.delete_prefix(object_name)
    return SeededCounts(rows=len(rows), counters=int(rows["counter_id"].nunique()), start=start, end=end)


__all__ = ["SeededCounts", "seed_raw_counts"]
