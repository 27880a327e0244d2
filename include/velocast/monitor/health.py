"""The champion scored on the recent actuals: the first measurement of the weekly run.

The current champion itself (what the serving sidecar serves now, asked through ``POST /predict``) is
scored on the last ``monitor_recent_days`` complete local days of actuals, never on forecasts that
an earlier champion made. The same-hour-last-week baseline is scored on the same rows (a row counts
only when it has an actual and a last-week actual; ``velocast.predict.scoring.scoring_frame``), so the
two numbers compare like with like. The rows with their predictions are staged as Parquet in GCS for
the drift step, which measures the champion's residuals.

No champion: the sidecar's ``/ready`` says so, and the health says ``has_champion`` False (the
branch then retrains). No recent actuals: ``MonitorDataError`` (ingestion is behind: retrying does
not help, DAG 1 must run first).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from velocast import contract
from velocast.data.sql import table_ref, time_range
from velocast.monitor.run import ChampionHealth, MonitorDataError, MonitorRun
from velocast.predict.scoring import LAST_WEEK, DayMetrics, scoring_frame
from velocast.predict.steps import PredictionsInfo

log = logging.getLogger(__name__)

RECENT_ROWS_OBJECT = "recent.parquet"


class WarehousePort(Protocol):
    def table_id(self, contract: contract.TableContract) -> str: ...
    def query_frame(self, sql: str) -> pd.DataFrame: ...


class StoragePort(Protocol):
    def upload_file(self, local_path: Path, object_name: str) -> str: ...


# The sidecar's answers as DAG 2 reads them (``SidecarHook``'s results satisfy both).
PredictionsPort = PredictionsInfo


class ReadinessPort(Protocol):
    @property
    def ready(self) -> bool: ...
    @property
    def env(self) -> str: ...


class ServingPort(Protocol):
    def ready(self) -> ReadinessPort: ...
    def predict(self, records: Sequence[Mapping[str, Any]]) -> PredictionsPort: ...


def raw_counts(warehouse: WarehousePort, start: datetime, end: datetime) -> pd.DataFrame:
    """The raw table's counts in ``[start, end)`` (the recent days, the week before, the reference)."""
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    return warehouse.query_frame(
        f"SELECT counter_id, counted_at, hourly_count FROM {table_ref(raw)} "
        f"WHERE {time_range('counted_at', start, end)} AND hourly_count IS NOT NULL"
    )


def prediction_records(frame: pd.DataFrame) -> list[dict[str, str]]:
    """``POST /predict`` records (normalized: counter and UTC hour) for the rows of ``frame``."""
    moments = pd.to_datetime(frame["counted_at"], utc=True)
    return [
        {"counter_id": str(counter), "counted_at": moment.isoformat()}
        for counter, moment in zip(frame["counter_id"], moments, strict=True)
    ]


def _metric_columns(metrics: DayMetrics, prefix: str) -> dict[str, float | None]:
    values = metrics.columns(prefix)
    return {name: values[name] for name in (f"{prefix}r2", f"{prefix}rmse", f"{prefix}mae")}


def check_champion(
    run: MonitorRun, warehouse: WarehousePort, storage: StoragePort, sidecar: ServingPort
) -> ChampionHealth:
    """Score the served champion on the recent actuals; stage the rows and predictions for drift."""
    start, end = run.recent_window()
    # The recent days and the week before them (the last-week baseline), in one query.
    actuals = raw_counts(warehouse, start - LAST_WEEK, end)
    if actuals.empty:
        raise MonitorDataError(
            f"no actuals in {run.settings.raw_table_id} from {(start - LAST_WEEK).isoformat()} to "
            f"{end.isoformat()}: run ingest_bike_counts for those days first"
        )
    actuals["counted_at"] = pd.to_datetime(actuals["counted_at"], utc=True)
    recent = actuals[(actuals["counted_at"] >= start) & (actuals["counted_at"] < end)].reset_index(drop=True)
    if recent.empty:
        raise MonitorDataError(
            f"no actuals in {run.settings.raw_table_id} for the recent days {start.isoformat()} to "
            f"{end.isoformat()}: run ingest_bike_counts for them first"
        )
    readiness = sidecar.ready()
    counters = int(recent["counter_id"].nunique())
    if not readiness.ready:
        log.info("no champion is served yet (%s): nothing to score", readiness.env)
        rows_uri = _stage(run, storage, recent.assign(predicted_count=np.nan))
        return ChampionHealth(
            env=readiness.env, window_start=start, window_end=end, rows_uri=rows_uri, counters=counters
        )
    served = sidecar.predict(prediction_records(recent))
    recent["predicted_count"] = [float(p.predicted_count) for p in served.predictions]
    previous = actuals[actuals["counted_at"] < start]
    frame = scoring_frame(
        recent.rename(columns={"counted_at": "predicted_for"})[
            ["counter_id", "predicted_for", "predicted_count"]
        ],
        recent,
        previous if not previous.empty else actuals.iloc[0:0],
    )
    usable = frame[frame["actual"].notna() & frame["last_week"].notna()]
    champion = served.champion
    scores: dict[str, float | None] = {}
    if not usable.empty:
        y = usable["actual"].to_numpy(dtype=np.float64)
        scores |= _metric_columns(DayMetrics.of(y, usable["predicted_count"].to_numpy(dtype=np.float64)), "")
        scores |= _metric_columns(
            DayMetrics.of(y, usable["last_week"].to_numpy(dtype=np.float64)), "baseline_"
        )
    rows_uri = _stage(run, storage, recent)
    health = ChampionHealth(
        env=readiness.env,
        window_start=start,
        window_end=end,
        champion_run_id=champion.run_id,
        champion_model_type=champion.model_type,
        champion_model_uri=champion.model_uri,
        n_rows=len(usable),
        n_rows_left_out=len(frame) - len(usable),
        rows_uri=rows_uri,
        counters=counters,
        **scores,
    )
    log.info(
        "champion %s (%s) on %d recent rows: R² %s (last-week baseline %s)",
        champion.run_id,
        champion.model_type,
        health.n_rows,
        health.r2,
        health.baseline_r2,
    )
    return health


def _stage(run: MonitorRun, storage: StoragePort, frame: pd.DataFrame) -> str:
    columns = ["counter_id", "counted_at", "hourly_count", "predicted_count"]
    with tempfile.TemporaryDirectory(prefix="velocast-monitor-") as tmp:
        path = Path(tmp) / RECENT_ROWS_OBJECT
        frame[columns].to_parquet(path, index=False)
        return storage.upload_file(path, f"{run.staging_prefix}/{RECENT_ROWS_OBJECT}")


__all__ = ["check_champion", "prediction_records", "raw_counts"]
