"""Storage and Warehouse against the GCS and BigQuery emulators (the provider hooks' real paths)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from google.api_core.exceptions import GoogleAPIError

from velocast import contract
from velocast.data.sql import timestamp_literal
from velocast.gcp.storage import Storage, parse_gs_uri
from velocast.gcp.warehouse import Warehouse, write_contract_parquet
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]


@pytest.fixture(scope="module")
def storage(local_stack: Any, settings: VelocastSettings) -> Storage:
    return Storage(settings)


@pytest.fixture(scope="module")
def warehouse(local_stack: Any, settings: VelocastSettings) -> Warehouse:
    return Warehouse(settings)


def counts(counter_ids: list[str], hour: str, run_id: str) -> pd.DataFrame:
    n = len(counter_ids)
    return pd.DataFrame(
        {
            "counter_id": counter_ids,
            "counter_name": [None] * n,
            "site_id": [None] * n,
            "site_name": [None] * n,
            "counted_at": pd.to_datetime([hour] * n, utc=True),
            "hourly_count": pd.array(range(n), dtype="Int64"),
            "latitude": [48.85] * n,
            "longitude": [2.35] * n,
            "installation_date": [None] * n,
            "ingestion_run_id": [run_id] * n,
            "ingested_at": pd.to_datetime(["2024-01-05T00:00:00Z"] * n, utc=True),
        }
    )


def test_parse_gs_uri() -> None:
    assert parse_gs_uri("gs://bucket/a/b.parquet") == ("bucket", "a/b.parquet")
    for bad in ("s3://bucket/a", "gs://bucket", "gs:///a", "gs://bucket/"):
        with pytest.raises(ValueError, match="gs://"):
            parse_gs_uri(bad)


def test_storage_round_trip_and_prefix_delete(storage: Storage, tmp_path: Path) -> None:
    prefix = f"tests/{uuid.uuid4().hex}"
    source = tmp_path / "a.txt"
    source.write_text("velocast")
    uris = [storage.upload_file(source, f"{prefix}/{name}") for name in ("a.txt", "b.txt")]
    assert uris[0] == f"gs://{storage.settings.bucket}/{prefix}/a.txt"
    assert storage.download_file(uris[0], tmp_path / "back.txt").read_text() == "velocast"
    assert storage.delete_prefix(prefix + "/") == 2
    assert not storage.exists(uris[0])


def test_ensure_table_follows_the_contract(warehouse: Warehouse) -> None:
    raw = contract.load_contract(contract.RAW_COUNTS)
    table = warehouse.client.get_table(warehouse.ensure_table(raw))
    assert [field.name for field in table.schema] == raw.column_names
    # The API may answer with the legacy type names (INTEGER, FLOAT) for the standard ones.
    legacy = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
    assert [legacy.get(field.field_type, field.field_type) for field in table.schema] == [
        c.type for c in raw.columns
    ]
    assert [field.mode for field in table.schema] == [c.mode for c in raw.columns]
    assert table.time_partitioning.field == "counted_at"
    assert table.clustering_fields == ["counter_id"]
    # Idempotent: a second call finds the table.
    assert warehouse.ensure_table(raw) == table.full_table_id.replace(":", ".")


def test_replace_rows_is_all_or_nothing(warehouse: Warehouse, storage: Storage, tmp_path: Path) -> None:
    raw = contract.load_contract(contract.RAW_COUNTS)
    suffix = uuid.uuid4().hex[:8]
    project_dataset = warehouse.table_id(raw).rsplit(".", 1)[0]
    target = f"{project_dataset}.atomic_{suffix}"
    staging = f"{target}__staging"
    warehouse.ensure_table(raw)  # the dataset
    first = storage.upload_file(
        write_contract_parquet(
            counts(["a", "b", "c"], "2024-01-01T05:00:00Z", "r1"), raw, tmp_path / "1.parquet"
        ),
        f"tests/{suffix}/1.parquet",
    )
    warehouse.load_parquet([first], target, raw, append=False)
    day = (
        f"counted_at >= {timestamp_literal(datetime(2024, 1, 1, tzinfo=UTC))}"
        f" AND counted_at < {timestamp_literal(datetime(2024, 1, 2, tzinfo=UTC))}"
    )
    second = storage.upload_file(
        write_contract_parquet(counts(["a", "b"], "2024-01-01T06:00:00Z", "r2"), raw, tmp_path / "2.parquet"),
        f"tests/{suffix}/2.parquet",
    )
    warehouse.load_parquet([second], staging, raw, append=False)
    try:
        warehouse.replace_rows([(target, day, staging)])
        frame = warehouse.query_frame(
            f"SELECT counter_id, ingestion_run_id FROM `{target}` ORDER BY counter_id"
        )
        assert list(frame.counter_id) == ["a", "b"]
        assert set(frame.ingestion_run_id) == {"r2"}

        # The second statement pair fails (no such staging table): the first must not apply either.
        with pytest.raises(GoogleAPIError):
            warehouse.replace_rows([(target, day, staging), (target, "TRUE", f"{staging}_missing")])
        assert warehouse.scalar(f"SELECT COUNT(*) FROM `{target}`") == 2
    finally:
        warehouse.drop_table(target)
        warehouse.drop_table(staging)
        storage.delete_prefix(f"tests/{suffix}/")
