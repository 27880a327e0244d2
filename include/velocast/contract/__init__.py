"""Table contracts: BigQuery schemas, partitioning and keys, defined once as JSON.

The same JSON files feed the ingestion code, the validation suite and Terraform
(``terraform/bigquery.tf`` reads them with ``jsondecode(file(...))``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final
from zoneinfo import ZoneInfo

RAW_COUNTS = "hourly_counts"
QUARANTINE = "hourly_counts_quarantine"
INGESTION_LOG = "ingestion_log"
PREDICTIONS = "hourly_predictions"
MODEL_DECISIONS = "model_decisions"
PREDICTION_SCORES = "prediction_scores"

# The City's clock: local days and hours, holidays and the DAG schedules are Europe/Paris wall-clock
# time; every stored instant is UTC.
PARIS_TZ: Final = "Europe/Paris"
PARIS: Final = ZoneInfo(PARIS_TZ)

# The quarantine table's columns that come from the rejected row itself (the others describe the run).
REJECTED_ROW_COLUMNS: Final[tuple[str, ...]] = ("raw_record", "reason", "counter_id", "counted_at")

# Every table the DAGs write, by contract name (what Terraform must create).
ALL_TABLES = (RAW_COUNTS, QUARANTINE, INGESTION_LOG, PREDICTIONS, MODEL_DECISIONS, PREDICTION_SCORES)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    mode: str
    description: str

    @property
    def required(self) -> bool:
        return self.mode == "REQUIRED"


@dataclass(frozen=True)
class TableContract:
    table: str
    dataset: str
    description: str
    partition_field: str
    clustering: tuple[str, ...]
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.table} has no column {name!r}")

    def bigquery_schema(self) -> list[dict[str, str]]:
        """The schema as BigQuery's JSON ``fields`` list (what load jobs and Terraform take)."""
        return [
            {"name": c.name, "type": c.type, "mode": c.mode, "description": c.description}
            for c in self.columns
        ]


def _raw_json(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def load_contract(name: str) -> TableContract:
    data = _raw_json(name)
    return TableContract(
        table=data["table"],
        dataset=data["dataset"],
        description=data["description"],
        partition_field=data["time_partitioning"]["field"],
        clustering=tuple(data.get("clustering", [])),
        primary_key=tuple(data.get("primary_key", [])),
        columns=tuple(Column(**field) for field in data["schema"]),
    )
