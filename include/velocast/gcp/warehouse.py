"""BigQuery through the Google provider's ``BigQueryHook`` (emulator-aware).

Writes go through files staged in GCS and load jobs (what production BigQuery does best, and
what the local emulator supports); a day range is replaced atomically by one multi-statement
transaction (DELETE the days, INSERT the staged rows), so a failure leaves the days as they were.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from velocast.contract import TableContract
from velocast.data.sql import table_ref
from velocast.gcp.hooks import EmulatorAwareBigQueryHook
from velocast.gcp.storage import Storage
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

_ARROW_TYPES: dict[str, pa.DataType] = {
    "STRING": pa.string(),
    "INT64": pa.int64(),
    "FLOAT64": pa.float64(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "DATE": pa.date32(),
    "BOOL": pa.bool_(),
}


def arrow_schema(contract: TableContract) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, _ARROW_TYPES[c.type], nullable=not c.required) for c in contract.columns]
    )


def write_contract_parquet(frame: pd.DataFrame, contract: TableContract, path: Path) -> Path:
    """Write ``frame`` as Parquet typed exactly as the contract says (column order included)."""
    missing = [name for name in contract.column_names if name not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing} of {contract.table}")
    table = pa.Table.from_pandas(
        frame[contract.column_names], schema=arrow_schema(contract), preserve_index=False
    )
    pq.write_table(table, path)
    return path


def contract_frame(frame: pd.DataFrame, contract: TableContract, **constants: Any) -> pd.DataFrame:
    """``frame`` with the ``constants`` as columns and the contract's other missing columns null."""
    rows = frame.assign(**constants)
    for column in contract.column_names:
        if column not in rows.columns:
            rows[column] = None
    return rows


def bigquery_schema(contract: TableContract) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(c.name, c.type, mode=c.mode, description=c.description) for c in contract.columns
    ]


def safe_table_suffix(text: str) -> str:
    """A table-name-safe suffix from an Airflow run id (``scheduled__2024-01-01T01:00:00+00:00``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:200]


def _json_default(value: Any) -> Any:
    """Dates and instants as BigQuery's JSON loads read them (ISO 8601)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class Warehouse:
    def __init__(self, settings: VelocastSettings) -> None:
        self.settings = settings
        self.hook = EmulatorAwareBigQueryHook(settings)
        self.client = self.hook.get_client(project_id=settings.gcp_project, location=settings.gcp_location)

    def table_id(self, contract: TableContract) -> str:
        dataset = {
            "raw": self.settings.raw_dataset,
            "predictions": self.settings.predictions_dataset,
            "audit": self.settings.audit_dataset,
        }[contract.dataset]
        return f"{self.settings.gcp_project}.{dataset}.{contract.table}"

    # --- DDL -------------------------------------------------------------------------------
    def ensure_table(self, contract: TableContract) -> str:
        """Create the dataset and the partitioned, clustered table if missing; return its id."""
        table_id = self.table_id(contract)
        dataset_id = table_id.rsplit(".", 1)[0]
        try:
            self.client.get_table(table_id)
            return table_id
        except NotFound:
            pass
        dataset = bigquery.Dataset(dataset_id)
        dataset.location = self.settings.gcp_location
        self.client.create_dataset(dataset, exists_ok=True)
        table = bigquery.Table(table_id, schema=bigquery_schema(contract))
        table.description = contract.description
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=contract.partition_field
        )
        if contract.clustering:
            table.clustering_fields = list(contract.clustering)
        self.client.create_table(table, exists_ok=True)
        log.info("created table %s", table_id)
        return table_id

    def drop_table(self, table_id: str) -> None:
        self.client.delete_table(table_id, not_found_ok=True)

    # --- loads -----------------------------------------------------------------------------
    def load_parquet(
        self, uris: Sequence[str], table_id: str, contract: TableContract, *, append: bool
    ) -> int:
        """Load staged Parquet files into ``table_id``; return the rows the job wrote."""
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=bigquery_schema(contract),
            write_disposition="WRITE_APPEND" if append else "WRITE_TRUNCATE",
            create_disposition="CREATE_IF_NEEDED",
        )
        job = self.client.load_table_from_uri(list(uris), table_id, job_config=config)
        job.result()
        return int(job.output_rows or 0)

    def load_frame(
        self,
        frame: pd.DataFrame,
        contract: TableContract,
        table_id: str,
        *,
        storage: Storage,
        object_name: str,
        append: bool = False,
    ) -> int:
        """``frame`` typed as the contract says, staged at ``object_name`` in GCS, loaded by a job."""
        with tempfile.TemporaryDirectory(prefix="velocast-load-") as tmp:
            path = write_contract_parquet(frame, contract, Path(tmp) / "rows.parquet")
            uri = storage.upload_file(path, object_name)
        return self.load_parquet([uri], table_id, contract, append=append)

    def load_json_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        contract: TableContract,
        table_id: str,
        *,
        storage: Storage,
        object_name: str,
    ) -> int:
        """``rows`` staged as newline-delimited JSON at ``object_name`` and loaded by a job into
        ``table_id`` (replacing it). JSON columns keep their structure (Parquet has no JSON type)."""
        text = "".join(json.dumps(dict(row), default=_json_default) + "\n" for row in rows)
        uri = storage.upload_bytes(text.encode("utf-8"), object_name, content_type="application/x-ndjson")
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=bigquery_schema(contract),
            write_disposition="WRITE_TRUNCATE",
            create_disposition="CREATE_IF_NEEDED",
        )
        job = self.client.load_table_from_uri([uri], table_id, job_config=config)
        job.result()
        return int(job.output_rows or 0)

    def run_script(self, sql: str) -> None:
        self.client.query(sql, location=self.settings.gcp_location).result()

    def replace_rows(
        self,
        replacements: Sequence[tuple[str, str, str]],
    ) -> None:
        """Atomically, for each ``(target_table, where_clause, staging_table)``: delete the rows
        of ``target_table`` matching ``where_clause`` and insert every row of ``staging_table``.

        One transaction covers all of them: either every target changes or none does.
        """
        statements = ["BEGIN TRANSACTION;"]
        for target, where, staging in replacements:
            statements.append(f"DELETE FROM {table_ref(target)} WHERE {where};")
            statements.append(f"INSERT INTO {table_ref(target)} SELECT * FROM {table_ref(staging)};")
        statements.append("COMMIT TRANSACTION;")
        self.run_script("\n".join(statements))

    # --- reads -----------------------------------------------------------------------------
    def query_frame(self, sql: str) -> pd.DataFrame:
        job = self.client.query(sql, location=self.settings.gcp_location)
        # The emulator has no BigQuery Storage API; the REST path works everywhere.
        frame: pd.DataFrame = job.result().to_dataframe(create_bqstorage_client=False)
        return frame

    def scalar(self, sql: str) -> Any:
        rows = list(self.client.query(sql, location=self.settings.gcp_location).result())
        return rows[0][0] if rows else None
