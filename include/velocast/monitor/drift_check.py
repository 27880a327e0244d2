"""Drift of the recent days against the champion's reference data, with Evidently (``velocast.ml.drift``).

**Reference**: the ``monitor_reference_days`` days of actuals just before the recent days, from the
raw table: the sliding window a weekly-retrained champion was fitted on, and the slice of the
calendar closest to the recent days (two periods months apart differ by season: in the shipped
Paris data, early-January weeks average 46 bikes an hour, February weeks 74). When the raw table
does not hold at least 7 of those days (a fresh deployment), the reference data set's held-out part
(``test_baseline``, ``velocast.ml.reference_data``) cut to a comparable calendar slice
(``velocast.ml.drift.reference_slice``) stands in.

**Current**: the recent rows the champion check staged, with the champion's predictions; the
reference gets the champion's predictions too, so that its residuals are compared.

**Measured**: hourly counts, per-counter daily totals and residuals (the share of drifted columns is
Evidently's ``DriftedColumnsCount`` value, never its threshold), and per counter whether its count
distribution drifted. The HTML report goes to ``gs://<bucket>/drift_reports/<run>/report.html``.
Residuals on days the champion was fitted on are smaller than on days it never saw, so a residual
drift alone (a third of the columns) never makes the share reach the retraining threshold.

No reference at all: the outcome says it was not measured and why; the branch then decides on the
champion's health alone.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from velocast.ml.drift import DriftDataError, drift_frame, measure_drift, reference_slice
from velocast.ml.reference_data import BaselineError, load_test_baseline
from velocast.monitor.health import PredictionsPort, WarehousePort, prediction_records, raw_counts
from velocast.monitor.run import ChampionHealth, DriftOutcome, MonitorRun

log = logging.getLogger(__name__)


class StoragePort(Protocol):
    def download_file(self, uri: str, local_path: Path) -> Path: ...
    def upload_bytes(self, data: bytes, object_name: str, *, content_type: str) -> str: ...


class PredictorPort(Protocol):
    def predict(self, records: Sequence[Mapping[str, Any]]) -> PredictionsPort: ...


def read_recent_rows(storage: StoragePort, uri: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="velocast-monitor-") as tmp:
        return pd.read_parquet(storage.download_file(uri, Path(tmp) / "recent.parquet"))


MIN_REFERENCE_DAYS = 7


def reference_rows(
    run: MonitorRun, warehouse: WarehousePort, health: ChampionHealth
) -> tuple[pd.DataFrame, str]:
    """The reference rows and a sentence saying which they are (module docstring)."""
    start, end = health.window_start, health.window_end
    days = run.settings.monitor_reference_days
    before = raw_counts(warehouse, start - timedelta(days=days), start)
    if not before.empty:
        moments = pd.to_datetime(before["counted_at"], utc=True)
        covered = moments.dt.floor("D").nunique()
        if covered >= MIN_REFERENCE_DAYS:
            return before, (
                f"the {days} days of actuals before the recent days ({covered} days with counts, "
                f"{moments.min().isoformat()} to {moments.max().isoformat()}, {len(before)} rows)"
            )
    reference_data = load_test_baseline(run.settings, run.settings.monitor_baseline_uri)
    return reference_slice(reference_data, start, end, days=days)


def check_drift(
    run: MonitorRun,
    warehouse: WarehousePort,
    storage: StoragePort,
    sidecar: PredictorPort,
    health: ChampionHealth,
) -> DriftOutcome:
    """Measure the drift and store the report; ``measured`` False (with the reason) without reference data."""
    started = time.perf_counter()
    if health.rows_uri is None:
        return DriftOutcome(measured=False, not_measured_reason="the champion check staged no recent rows")
    try:
        reference, description = reference_rows(run, warehouse, health)
    except (BaselineError, DriftDataError) as error:
        log.warning("drift not measured: %s", error)
        return DriftOutcome(measured=False, not_measured_reason=str(error))
    recent = read_recent_rows(storage, health.rows_uri)
    reference = reference[["counter_id", "counted_at", "hourly_count"]].reset_index(drop=True)
    if health.has_champion:
        served = sidecar.predict(prediction_records(reference))
        reference["predicted_count"] = [float(p.predicted_count) for p in served.predictions]
    else:
        recent = recent.drop(columns=["predicted_count"], errors="ignore")
    try:
        report = measure_drift(drift_frame(reference), drift_frame(recent))
    except DriftDataError as error:
        log.warning("drift not measured: %s", error)
        return DriftOutcome(measured=False, not_measured_reason=str(error))
    uri = storage.upload_bytes(
        report.html.encode("utf-8"), run.drift_report_object, content_type="text/html; charset=utf-8"
    )
    result = report.result
    log.info(
        "drift share %.3f (%s drifted), %s of %d counters drifted; report %s",
        result.share,
        ", ".join(result.drifted_columns) or "no column",
        "n/a" if result.counter_share is None else f"{result.counter_share:.3f}",
        result.counters_compared,
        uri,
    )
    return DriftOutcome(
        measured=True,
        share=result.share,
        drifted_columns=list(result.drifted_columns),
        columns=list(result.columns),
        counter_share=result.counter_share,
        drifted_counters=list(result.drifted_counters),
        counters_compared=result.counters_compared,
        method=result.method,
        reference=description,
        reference_rows=result.reference_rows,
        current_rows=result.current_rows,
        report_uri=uri,
        seconds=time.perf_counter() - started,
    )


__all__ = ["check_drift", "read_recent_rows"]
