"""The steps of DAG 2 (``predict_bike_counts``): tables, forecast, load, score.

Each step takes the run's context (``PredictionRun``) and the adapters it talks to, and returns a
flat dataclass of ``velocast.predict.run`` (what XCom carries). The adapters are passed in, typed
by the protocols below, because ``velocast.predict`` never imports Airflow (import contract
``shared-without-airflow``) while the BigQuery/GCS adapters and the sidecar hook are built on
Airflow hooks: the DAG's task bodies build ``velocast.gcp.warehouse.Warehouse``,
``velocast.gcp.storage.Storage`` and ``velocast.orchestration.sidecar.SidecarHook`` and hand them
over. Everything the steps decide (grid, completeness, scores) is ``grid``, ``scoring`` and
``queries``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

import pandas as pd

from velocast import contract
from velocast.contract import TableContract
from velocast.data.sql import date_literal
from velocast.predict import grid, queries, scoring
from velocast.predict.run import (
    ForecastOutcome,
    InvalidForecastPartitionError,
    LoadOutcome,
    PredictionRun,
    ScoreOutcome,
)

log = logging.getLogger(__name__)


# --- the adapters the steps use (velocast.gcp and velocast.orchestration implement them) ------------
class WarehousePort(Protocol):
    def table_id(self, contract: TableContract) -> str: ...
    def ensure_table(self, contract: TableContract) -> str: ...
    def drop_table(self, table_id: str) -> None: ...
    def load_frame(
        self,
        frame: pd.DataFrame,
        contract: TableContract,
        table_id: str,
        *,
        storage: Any,
        object_name: str,
        append: bool = False,
    ) -> int: ...
    def load_parquet(
        self, uris: Sequence[str], table_id: str, contract: TableContract, *, append: bool
    ) -> int: ...
    def replace_rows(self, replacements: Sequence[tuple[str, str, str]]) -> None: ...
    def query_frame(self, sql: str) -> pd.DataFrame: ...
    def scalar(self, sql: str) -> Any: ...


class StoragePort(Protocol):
    def uri(self, object_name: str) -> str: ...
    def delete_prefix(self, prefix: str) -> int: ...


class ChampionInfo(Protocol):
    @property
    def run_id(self) -> str: ...
    @property
    def model_type(self) -> str: ...
    @property
    def model_uri(self) -> str: ...


class PredictionInfo(Protocol):
    @property
    def counter_id(self) -> str: ...
    @property
    def counted_at(self) -> datetime: ...
    @property
    def predicted_count(self) -> float: ...


class PredictionsInfo(Protocol):
    @property
    def predictions(self) -> Sequence[PredictionInfo]: ...
    @property
    def champion(self) -> ChampionInfo: ...
    @property
    def unseen_counters(self) -> Sequence[str]: ...


class ForecasterPort(Protocol):
    """What the forecast needs from the serving sidecar (``SidecarHook``)."""

    def require_champion(self) -> object: ...
    def predict(
        self, records: Sequence[Mapping[str, Any]], *, model_type: str | None = None
    ) -> PredictionsInfo: ...


# --- names -------------------------------------------------------------------------------------
def run_key(run: PredictionRun) -> str:
    """The run id as a suffix safe in table and object names."""
    return "".join(char if char.isalnum() else "_" for char in run.run_id)[:200]


def staging_prefix(run: PredictionRun) -> str:
    return f"staging/predict/{run.run_day.isoformat()}/{run_key(run)}"


def staging_table(warehouse: WarehousePort, run: PredictionRun, table: TableContract) -> str:
    return f"{warehouse.table_id(table)}__staging_{run_key(run)}"


def model_version_of(model_uri: str) -> str | None:
    """The registered version in a ``models:/name/<version>`` URI; None for any other URI."""
    parts = model_uri.split("/")
    if model_uri.startswith("models:/") and len(parts) == 3 and parts[2].isdigit():
        return parts[2]
    return None


# --- 0. tables ---------------------------------------------------------------------------------
def ensure_tables(warehouse: WarehousePort) -> dict[str, str]:
    """Create the predictions and scores tables when missing (Terraform does it in production)."""
    names = (contract.PREDICTIONS, contract.PREDICTION_SCORES)
    return {name: warehouse.ensure_table(contract.load_contract(name)) for name in names}


# --- 1. forecast -------------------------------------------------------------------------------
def forecast_grid(run: PredictionRun, warehouse: WarehousePort) -> grid.ForecastGrid:
    """Active counters and data cut-off from the raw table, then the grid of ``D`` and ``D + 1``."""
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    counters = warehouse.query_frame(queries.active_counters_sql(raw, run.run_day))
    active = [
        grid.ActiveCounter(str(counter_id), None if pd.isna(name) else str(name))
        for counter_id, name in zip(counters["counter_id"], counters["counter_name"], strict=True)
    ]
    last = warehouse.scalar(queries.data_cutoff_sql(raw, run.run_day))
    cutoff = grid.data_cutoff(None if last is None else pd.Timestamp(last).to_pydatetime(), run.run_day)
    return grid.build_grid(run.run_day, active, cutoff)


def forecast_frame(
    run: PredictionRun, forecast_grid: grid.ForecastGrid, served: PredictionsInfo, predicted_at: datetime
) -> pd.DataFrame:
    """The ``hourly_predictions`` rows of the run, in the grid's order (the sidecar keeps it)."""
    if len(served.predictions) != len(forecast_grid.rows):
        raise InvalidForecastPartitionError(
            f"the sidecar returned {len(served.predictions)} predictions "
            f"for {len(forecast_grid.rows)} records"
        )
    unseen = set(served.unseen_counters)
    champion = served.champion
    return pd.DataFrame(
        {
            "prediction_date": [run.run_day] * len(forecast_grid.rows),
            "counter_id": [row.counter_id for row in forecast_grid.rows],
            "counter_name": [row.counter_name for row in forecast_grid.rows],
            "predicted_for": pd.to_datetime([row.predicted_for for row in forecast_grid.rows], utc=True),
            "predicted_count": [float(p.predicted_count) for p in served.predictions],
            "model_type": champion.model_type,
            "model_run_id": champion.run_id,
            "model_version": model_version_of(champion.model_uri),
            "unknown_counter": [row.counter_id in unseen for row in forecast_grid.rows],
            "airflow_run_id": run.run_id,
            "predicted_at": predicted_at,
            "data_cutoff": forecast_grid.data_cutoff,
            "horizon_hours": [row.horizon_hours for row in forecast_grid.rows],
        }
    )


def forecast(
    run: PredictionRun, warehouse: WarehousePort, storage: StoragePort, sidecar: ForecasterPort
) -> ForecastOutcome:
    """Ask the champion for the grid; stage the rows as Parquet in GCS (typed by the contract).

    ``Warehouse.load_frame`` is what writes contract-typed Parquet, and it also loads it into the
    run's staging table; ``load_forecasts`` reloads that table from the Parquet (retry-safe).
    """
    forecast_grid = forecast_grid_checked(run, warehouse, sidecar)
    served = sidecar.predict(forecast_grid.records())
    frame = forecast_frame(run, forecast_grid, served, datetime.now(UTC))
    predictions = contract.load_contract(contract.PREDICTIONS)
    object_name = f"{staging_prefix(run)}/predictions.parquet"
    staged = staging_table(warehouse, run, predictions)
    warehouse.load_frame(frame, predictions, staged, storage=storage, object_name=object_name)
    unknown = int(frame.loc[frame["unknown_counter"], "counter_id"].nunique())
    log.info(
        "forecast %s rows for %s counters (%s unknown to the model) from cut-off %s",
        len(frame),
        len(forecast_grid.counter_ids),
        unknown,
        forecast_grid.data_cutoff.isoformat(),
    )
    return ForecastOutcome(
        staged_uri=storage.uri(object_name),
        rows=len(frame),
        counters=len(forecast_grid.counter_ids),
        hours=len(grid.forecast_hours(run.run_day)),
        unknown_counters=unknown,
        data_cutoff=forecast_grid.data_cutoff,
        model_type=served.champion.model_type,
        model_run_id=served.champion.run_id,
        model_version=model_version_of(served.champion.model_uri),
    )


def forecast_grid_checked(
    run: PredictionRun, warehouse: WarehousePort, sidecar: ForecasterPort
) -> grid.ForecastGrid:
    """The champion first (a run without one fails before reading anything), then the grid."""
    sidecar.require_champion()
    return forecast_grid(run, warehouse)


# --- 2. load -----------------------------------------------------------------------------------
def partition_where(run: PredictionRun) -> str:
    return f"prediction_date = {date_literal(run.run_day)}"


def load_forecasts(
    run: PredictionRun, warehouse: WarehousePort, storage: StoragePort, forecasted: ForecastOutcome
) -> LoadOutcome:
    """Replace exactly the run's ``prediction_date`` partition in one transaction, then validate it.

    The staging table is reloaded from the staged Parquet first, so a retry of this task alone
    works even though the previous try dropped the table; the Parquet is removed once loaded.
    """
    predictions = contract.load_contract(contract.PREDICTIONS)
    target = warehouse.table_id(predictions)
    staged = staging_table(warehouse, run, predictions)
    try:
        warehouse.load_parquet([forecasted.staged_uri], staged, predictions, append=False)
        warehouse.replace_rows([(target, partition_where(run), staged)])
    finally:
        warehouse.drop_table(staged)
    storage.delete_prefix(staging_prefix(run) + "/")
    return validate_partition(run, warehouse, forecasted)


def partition_problems(summary: Mapping[str, Any], forecasted: ForecastOutcome) -> list[str]:
    """What is wrong with a written partition, given its summary row (empty when it is right)."""
    expected = forecasted.counters * forecasted.hours
    problems = []
    if int(summary["n"]) != expected:
        problems.append(
            f"{summary['n']} rows, expected {expected} "
            f"({forecasted.counters} counters × {forecasted.hours} hours)"
        )
    if int(summary["keys"]) != int(summary["n"]):
        problems.append(f"{int(summary['n']) - int(summary['keys'])} duplicate (counter, hour) keys")
    if int(summary["bad_values"]):
        problems.append(f"{summary['bad_values']} null or negative predictions")
    if int(summary["run_ids"]) != 1:
        problems.append(f"{summary['run_ids']} champion run ids, expected 1")
    return problems


def validate_partition(
    run: PredictionRun, warehouse: WarehousePort, forecasted: ForecastOutcome
) -> LoadOutcome:
    """Rows = counters × hours, one row per key, no null or negative prediction, one champion run."""
    target = warehouse.table_id(contract.load_contract(contract.PREDICTIONS))
    frame = warehouse.query_frame(
        "SELECT COUNT(*) AS n, "
        "COUNT(DISTINCT CONCAT(counter_id, '|', CAST(predicted_for AS STRING))) AS keys, "
        "COUNTIF(predicted_count IS NULL OR predicted_count < 0) AS bad_values, "
        f"COUNT(DISTINCT model_run_id) AS run_ids FROM `{target}` WHERE {partition_where(run)}"
    )
    summary = {str(name): value for name, value in frame.iloc[0].items()}
    problems = partition_problems(summary, forecasted)
    if problems:
        raise InvalidForecastPartitionError(
            f"the forecasts written for {run.run_day.isoformat()} are invalid: {'; '.join(problems)}"
        )
    return LoadOutcome(
        prediction_date=run.run_day, rows_loaded=int(summary["n"]), model_run_id=forecasted.model_run_id
    )


# --- 3. score ----------------------------------------------------------------------------------
def score(run: PredictionRun, warehouse: WarehousePort, storage: StoragePort) -> ScoreOutcome:
    """Rescore the complete days among the 7 before ``D``; replace exactly those days' score rows."""
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    predictions_id = warehouse.table_id(contract.load_contract(contract.PREDICTIONS))
    scores_contract = contract.load_contract(contract.PREDICTION_SCORES)
    candidates = scoring.scored_days(run.run_day)
    completeness = warehouse.query_frame(queries.day_completeness_sql(raw, candidates))
    complete = scoring.complete_days(
        {str(name): value for name, value in record.items()} for record in completeness.to_dict("records")
    )
    scored_at = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for day in complete:
        predictions = warehouse.query_frame(queries.predictions_for_day_sql(predictions_id, day))
        if predictions.empty:
            continue
        actuals = warehouse.query_frame(queries.actuals_sql(raw, day))
        last_week = warehouse.query_frame(queries.actuals_sql(raw, day - scoring.LAST_WEEK))
        for day_score in scoring.score_day(day, predictions, actuals, last_week):
            rows.append(day_score.row(airflow_run_id=run.run_id, scored_at=scored_at))
    days = tuple(complete)
    if days:
        replace_scores(run, warehouse, storage, scores_contract, days, rows)
    incomplete = tuple(day for day in candidates if day not in complete)
    log.info("scored %s (%s rows); incomplete: %s", days, len(rows), incomplete)
    return ScoreOutcome(days_scored=days, days_incomplete=incomplete, rows_written=len(rows))


def replace_scores(
    run: PredictionRun,
    warehouse: WarehousePort,
    storage: StoragePort,
    scores_contract: TableContract,
    days: Sequence[date],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """One transaction: the complete days' score rows become ``rows`` (none when a day had no forecast)."""
    frame = pd.DataFrame(list(rows), columns=scores_contract.column_names)
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    staged = staging_table(warehouse, run, scores_contract)
    where = f"scored_date IN ({', '.join(date_literal(day) for day in days)})"
    try:
        warehouse.load_frame(
            frame,
            scores_contract,
            staged,
            storage=storage,
            object_name=f"{staging_prefix(run)}/scores.parquet",
        )
        warehouse.replace_rows([(warehouse.table_id(scores_contract), where, staged)])
    finally:
        warehouse.drop_table(staged)
        storage.delete_prefix(staging_prefix(run) + "/")


__all__ = [
    "ForecasterPort",
    "StoragePort",
    "WarehousePort",
    "ensure_tables",
    "forecast",
    "forecast_frame",
    "load_forecasts",
    "model_version_of",
    "partition_problems",
    "score",
]
