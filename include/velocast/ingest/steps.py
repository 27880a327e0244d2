"""Daily ingestion of the Paris bike counts: the steps behind DAG ``ingest_bike_counts``.

Each step takes the run context (``IngestionRun``: window, run id, settings) and the typed
outcomes of the steps before it, and returns its own (``velocast.ingest.run``): small values
that Airflow passes through XCom, the rows themselves travelling as files staged in GCS.

0. ``ensure_tables``: the raw, quarantine and log tables (Terraform creates them in production);
1. ``extract``: fetch the window from the API and stage the raw records (NDJSON) in GCS;
2. ``transform``: normalize and validate; stage the valid rows and the quarantined rows
   (Parquet) in GCS; ``enforce_rejected_share`` then fails loudly if the rejected share exceeds
   the threshold, after writing the quarantine and the run's ``rejected`` log row;
3. ``load``: one transaction replaces the window's days in the raw table and the run's
   partition of the quarantine table;
4. ``report``: the run's ``success`` row in the ingestion log (``runlog``), staging clean-up.

The window itself is planned by ``velocast.ingest.window.plan_window``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from velocast import contract
from velocast.data.normalize import normalize
from velocast.data.readers import records_to_frame
from velocast.data.sql import date_literal, time_range
from velocast.data.validation import (
    TooManyRejectedRowsError,
    check_rejected_share,
    rejected_share,
    validate_counts,
)
from velocast.gcp.storage import Storage
from velocast.gcp.warehouse import Warehouse, safe_table_suffix, write_contract_parquet
from velocast.ingest.opendata import OpenDataClient
from velocast.ingest.run import (
    ExtractOutcome,
    IngestionLogRow,
    IngestionRun,
    LoadOutcome,
    TransformOutcome,
)
from velocast.ingest.runlog import record_run
from velocast.ingest.window import IngestionWindow
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)


def run_key(run: IngestionRun) -> str:
    """The run id as a suffix safe in table and object names."""
    return safe_table_suffix(run.run_id)


def staging_prefix(run: IngestionRun) -> str:
    """The GCS prefix of the run's staged files (removed by ``report``)."""
    return f"{run.settings.staging_prefix}/{run.window.logical_date.isoformat()}/{run_key(run)}"


# --- 0. tables -------------------------------------------------------------------------------
def ensure_tables(settings: VelocastSettings) -> dict[str, str]:
    """Create the raw, quarantine and log tables when missing (Terraform does it in production)."""
    warehouse = Warehouse(settings)
    names = (contract.RAW_COUNTS, contract.QUARANTINE, contract.INGESTION_LOG)
    return {name: warehouse.ensure_table(contract.load_contract(name)) for name in names}


# --- 1. extract ------------------------------------------------------------------------------
def extract(run: IngestionRun) -> ExtractOutcome:
    """Fetch the window from the Open Data API and stage its raw records (NDJSON) in GCS."""
    started = datetime.now(UTC)
    storage = Storage(run.settings)
    with (
        OpenDataClient(run.settings) as client,
        tempfile.TemporaryDirectory(prefix="velocast-extract-") as tmp,
    ):
        path = Path(tmp) / "raw.ndjson"
        summary = client.fetch_window_to_file(run.window.start, run.window.end, path)
        uri = storage.upload_file(path, f"{staging_prefix(run)}/raw.ndjson")
    log.info("fetched %s rows for %s → %s via %s", summary.rows, run.window, uri, summary.endpoint)
    return ExtractOutcome(
        raw_uri=uri,
        rows_fetched=summary.rows,
        endpoint=summary.endpoint,
        fetch_seconds=summary.seconds,
        started_at=started,
    )


# --- 2. transform ----------------------------------------------------------------------------
def read_ndjson_records(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_quarantine_frame(
    rejected: list[pd.DataFrame], window: IngestionWindow, run_id: str, now: datetime
) -> pd.DataFrame:
    columns = list(contract.REJECTED_ROW_COLUMNS)
    frames = [frame[columns] for frame in rejected if len(frame)]
    quarantine = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    quarantine["counted_at"] = pd.to_datetime(quarantine["counted_at"], utc=True)
    quarantine["logical_date"] = window.logical_date
    quarantine["ingestion_run_id"] = run_id
    quarantine["window_start"] = window.start
    quarantine["window_end"] = window.end
    quarantine["quarantined_at"] = now
    return quarantine


def transform(run: IngestionRun, extracted: ExtractOutcome) -> TransformOutcome:
    """Normalize and validate the raw records; stage the valid and the quarantined rows as Parquet."""
    window, settings = run.window, run.settings
    storage = Storage(settings)
    now = datetime.now(UTC)
    prefix = staging_prefix(run)
    with tempfile.TemporaryDirectory(prefix="velocast-transform-") as tmp:
        raw_path = storage.download_file(extracted.raw_uri, Path(tmp) / "raw.ndjson")
        records = read_ndjson_records(raw_path)
        raw = records_to_frame(records)
        normalized = normalize(raw)
        # ``raw`` lets quarantined rows carry the record as received, not its normalized form.
        validation = validate_counts(normalized.frame, window.start, window.end, settings, raw=raw)

        clean = validation.valid.copy()
        clean["ingestion_run_id"] = run.run_id
        clean["ingested_at"] = now
        quarantine = build_quarantine_frame(
            [normalized.rejected, validation.quarantined], window, run.run_id, now
        )

        raw_contract = contract.load_contract(contract.RAW_COUNTS)
        quarantine_contract = contract.load_contract(contract.QUARANTINE)
        clean_uri = storage.upload_file(
            write_contract_parquet(clean, raw_contract, Path(tmp) / "clean.parquet"),
            f"{prefix}/clean.parquet",
        )
        quarantine_uri = storage.upload_file(
            write_contract_parquet(quarantine, quarantine_contract, Path(tmp) / "quarantine.parquet"),
            f"{prefix}/quarantine.parquet",
        )
    outcome = TransformOutcome(
        clean_uri=clean_uri,
        quarantine_uri=quarantine_uri,
        rows_fetched=len(records),
        rows_valid=len(clean),
        rows_quarantined=len(quarantine),
        duplicates_dropped=validation.duplicates_dropped,
        rejected_share=rejected_share(len(records), len(quarantine)),
        days_with_data=tuple(sorted({ts.date() for ts in clean["counted_at"]})),
    )
    for result in validation.expectation_results:
        log.info("expectation %s", result)
    log.info(
        "validated %s rows: %s valid, %s quarantined, %s duplicates dropped",
        outcome.rows_fetched,
        outcome.rows_valid,
        outcome.rows_quarantined,
        outcome.duplicates_dropped,
    )
    return outcome


def enforce_rejected_share(
    run: IngestionRun, extracted: ExtractOutcome, transformed: TransformOutcome
) -> None:
    """Record a run whose rejected share is over the threshold, then fail it loudly.

    The quarantine partition is written so the rows can be inspected; the raw table is untouched.
    ``TooManyRejectedRowsError`` is a request error: the data is wrong, a retry would fail the same way.
    """
    try:
        check_rejected_share(
            transformed.rejected_share,
            run.settings,
            fetched=transformed.rows_fetched,
            quarantined=transformed.rows_quarantined,
        )
    except TooManyRejectedRowsError:
        warehouse = Warehouse(run.settings)
        quarantine_contract = contract.load_contract(contract.QUARANTINE)
        try:
            replacement, _ = _stage(
                warehouse, run, transformed.quarantine_uri, quarantine_contract, _quarantine_partition(run)
            )
            warehouse.replace_rows([replacement])
        finally:
            warehouse.drop_table(_staging_table(warehouse, run, quarantine_contract))
        record_run(run, "rejected", extracted, transformed, rows_loaded=0)
        raise


# --- 3. load ---------------------------------------------------------------------------------
def _stage(
    warehouse: Warehouse,
    run: IngestionRun,
    uri: str,
    table_contract: contract.TableContract,
    where: str,
) -> tuple[tuple[str, str, str], int]:
    """Load ``uri`` into a run-scoped staging table; return its ``replace_rows`` triple and rows."""
    target = warehouse.table_id(table_contract)
    staging = _staging_table(warehouse, run, table_contract)
    rows = warehouse.load_parquet([uri], staging, table_contract, append=False)
    return (target, where, staging), rows


def _staging_table(warehouse: Warehouse, run: IngestionRun, table_contract: contract.TableContract) -> str:
    return f"{warehouse.table_id(table_contract)}__staging_{run_key(run)}"


def _quarantine_partition(run: IngestionRun) -> str:
    return f"logical_date = {date_literal(run.window.logical_date)}"


def _replaced_days(run: IngestionRun, days: tuple[date, ...]) -> str:
    """The raw table's rows of the window's ``days`` (dates), as a WHERE clause."""
    window = run.window
    listed = ", ".join(date_literal(day) for day in days)
    return f"{time_range('counted_at', window.start, window.end)} AND DATE(counted_at) IN ({listed})"


def load(run: IngestionRun, transformed: TransformOutcome) -> LoadOutcome:
    """Replace the window's days that have data, and the run's quarantine partition, atomically.

    Days for which the API returned nothing yet (publication lag) keep their current rows:
    replacing them with nothing would lose data.
    """
    warehouse = Warehouse(run.settings)
    raw_contract = contract.load_contract(contract.RAW_COUNTS)
    quarantine_contract = contract.load_contract(contract.QUARANTINE)
    replacements: list[tuple[str, str, str]] = []
    staged = 0
    try:
        quarantine, _ = _stage(
            warehouse, run, transformed.quarantine_uri, quarantine_contract, _quarantine_partition(run)
        )
        replacements.append(quarantine)
        if transformed.days_with_data:
            where = _replaced_days(run, transformed.days_with_data)
            raw, staged = _stage(warehouse, run, transformed.clean_uri, raw_contract, where)
            replacements.insert(0, raw)
        warehouse.replace_rows(replacements)
    finally:
        # By name: a staging table may exist even when its load job failed half-way.
        for staged_contract in (raw_contract, quarantine_contract):
            warehouse.drop_table(_staging_table(warehouse, run, staged_contract))
    skipped = tuple(sorted(set(run.window.days) - set(transformed.days_with_data)))
    if skipped:
        log.warning(
            "no rows published yet for %s: their current rows are kept", [d.isoformat() for d in skipped]
        )
    log.info(
        "replaced days %s of %s with %s rows",
        [d.isoformat() for d in transformed.days_with_data],
        raw_contract.table,
        staged,
    )
    return LoadOutcome(
        rows_loaded=staged, days_replaced=transformed.days_with_data, days_without_data=skipped
    )


# --- 4. report -------------------------------------------------------------------------------
def report(
    run: IngestionRun, extracted: ExtractOutcome, transformed: TransformOutcome, loaded: LoadOutcome
) -> IngestionLogRow:
    """Record the successful run (log row and metrics), then remove its staged files."""
    row = record_run(run, "success", extracted, transformed, rows_loaded=loaded.rows_loaded)
    Storage(run.settings).delete_prefix(staging_prefix(run) + "/")
    return row


__all__ = [
    "build_quarantine_frame",
    "enforce_rejected_share",
    "ensure_tables",
    "extract",
    "load",
    "read_ndjson_records",
    "report",
    "run_key",
    "staging_prefix",
    "transform",
]
