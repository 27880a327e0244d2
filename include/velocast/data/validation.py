"""Validate normalized hourly counts against the raw contract with Great Expectations 1.x.

The expectation suite is derived from the ``hourly_counts`` contract:

* every REQUIRED column read from the source (``counter_id``, ``counted_at``, ``hourly_count``)
  is not null;
* every INT64 column holds integers, and ``hourly_count`` is not negative;
* the partition field (``counted_at``) lies in the ingested window ``[window_start, window_end)``;
* ``latitude``/``longitude`` lie in the Paris bounding box from the settings (nulls are allowed);
* the primary key (``counter_id``, ``counted_at``) is unique.

Rows are routed with GX's per-row ``unexpected_index_list`` (``result_format="COMPLETE"``): a row
that fails any expectation is quarantined with every failed rule named in its reason. Exact
duplicates (same key and count) are dropped first and counted; the copies of a key that remain
have conflicting counts and are all quarantined.

GX is imported lazily (it takes several seconds), with analytics disabled through
``GX_ANALYTICS_ENABLED=False`` and the ephemeral, in-memory Data Context, so nothing is written to
disk and nothing is sent anywhere. The context, batch definition and suite are built once per
process; the window and the bounding box are suite parameters supplied at validation time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from velocast.contract import RAW_COUNTS, REJECTED_ROW_COLUMNS, load_contract
from velocast.data.columns import DATA_COLUMNS
from velocast.data.normalize import empty_rejected
from velocast.data.readers import frame_to_json_lines, raw_records_json
from velocast.errors import RequestError
from velocast.settings import VelocastSettings

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation import Expectation

DUPLICATE_REASON: Final = "duplicate (counter_id, counted_at) with conflicting counts"

# Domain rules the contract states in prose; checked against the contract when the suite is built.
_NON_NEGATIVE: Final = ("hourly_count",)
_LATITUDE: Final = "latitude"
_LONGITUDE: Final = "longitude"
_COUNT: Final = "hourly_count"
# An integer as pandas prints it: "3", "-3", and "3.0" once the column is float for speed.
_INTEGER_TEXT: Final = r"^-?\d+(?:\.0*)?$"
_SUITE_NAME: Final = "velocast_hourly_counts"


class TooManyRejectedRowsError(RequestError):
    """More rows were rejected than ``max_rejected_share`` allows: the load must not go ahead."""

    def __init__(self, share: float, threshold: float, fetched: int | None, quarantined: int | None) -> None:
        self.share = share
        self.threshold = threshold
        self.fetched = fetched
        self.quarantined = quarantined
        counts = (
            f" ({quarantined} of {fetched} rows)" if fetched is not None and quarantined is not None else ""
        )
        super().__init__(
            f"rejected share {share:.2%}{counts} exceeds the threshold {threshold:.2%} "
            "(VELOCAST_MAX_REJECTED_SHARE)"
        )


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of the suite, summarised."""

    expectation: str  # GX type, e.g. "expect_column_values_to_not_be_null"
    column: str  # column, or columns joined with ", "
    rule: str  # the plain-words reason given to the rows that fail it
    success: bool
    unexpected_count: int


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """``valid`` keeps the input's columns and index; ``quarantined`` has ``REJECTED_ROW_COLUMNS``."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    duplicates_dropped: int
    expectation_results: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return self.quarantined.empty


@dataclass(frozen=True)
class _Rule:
    key: str  # stored in the expectation's meta to find its result again
    columns: tuple[str, ...]
    reason: str  # str.format template over the suite parameters
    expectation: Expectation


@dataclass(frozen=True)
class _Runtime:
    batch_definition: BatchDefinition[Any]
    suite: ExpectationSuite
    rules: dict[str, _Rule]
    lock: threading.Lock


def validate_counts(
    frame: pd.DataFrame,
    window_start: datetime,
    window_end: datetime,
    settings: VelocastSettings,
    *,
    raw: pd.DataFrame | None = None,
) -> ValidationReport:
    """Split a normalized frame into valid and quarantined rows.

    ``window_start``/``window_end`` are UTC (a naive value is read as UTC). ``raw``, when given, is
    the frame ``frame`` was normalized from (same index labels): quarantined rows then carry the
    record as received; without it they carry the normalized row as JSON.
    """
    missing = [name for name in DATA_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks contract columns {missing}; normalize it first")
    if raw is not None and not raw.index.is_unique:
        raise ValueError("raw must have a unique index to map quarantined rows back to it")
    start, end = _utc(window_start), _utc(window_end)
    runtime = _runtime()

    # Exact duplicates carry no information: keep the first copy of each.
    contract = load_contract(RAW_COUNTS)
    exact = frame.duplicated(subset=[*contract.primary_key, _COUNT], keep="first").to_numpy()
    kept = frame.iloc[np.flatnonzero(~exact)]

    gx_frame = _gx_frame(kept, runtime.rules.values())
    parameters: dict[str, Any] = {
        "window_start": start,
        "window_end": end,
        "lat_min": settings.paris_lat_min,
        "lat_max": settings.paris_lat_max,
        "lon_min": settings.paris_lon_min,
        "lon_max": settings.paris_lon_max,
    }
    with runtime.lock:
        batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": gx_frame})
        result = batch.validate(
            runtime.suite, result_format={"result_format": "COMPLETE"}, expectation_parameters=parameters
        )

    texts = {
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        **{name: parameters[name] for name in ("lat_min", "lat_max", "lon_min", "lon_max")},
    }
    by_rule: dict[str, tuple[ExpectationOutcome, np.ndarray]] = {}
    for expectation_result in result.results:
        config = expectation_result.expectation_config
        if config is None or expectation_result.exception_info.get("raised_exception"):
            raise RuntimeError(f"great_expectations could not evaluate {config}: {expectation_result}")
        rule = runtime.rules[str(config.meta["rule"])]
        details = expectation_result.result
        outcome = ExpectationOutcome(
            expectation=str(config.type),
            column=", ".join(rule.columns),
            rule=rule.reason.format(**texts),
            success=bool(expectation_result.success),
            unexpected_count=int(details.get("unexpected_count") or 0),
        )
        positions = np.asarray(details.get("unexpected_index_list") or [], dtype=np.intp)
        by_rule[rule.key] = (outcome, positions)

    # Each row gets a bit per failed rule; the distinct bit patterns are few, so are the reasons.
    outcomes: list[ExpectationOutcome] = []
    failures = np.zeros(len(kept), dtype=np.int64)
    for bit, key in enumerate(runtime.rules):
        outcome, positions = by_rule[key]
        outcomes.append(outcome)
        failures[positions] |= 1 << bit
    bad = failures != 0
    patterns, which = np.unique(failures[bad], return_inverse=True)
    texts_by_pattern = [
        "; ".join(o.rule for bit, o in enumerate(outcomes) if int(pattern) >> bit & 1) for pattern in patterns
    ]
    reasons = [texts_by_pattern[i] for i in which.tolist()]
    quarantined = _quarantine(kept, np.flatnonzero(bad), reasons, raw)
    return ValidationReport(
        valid=kept.iloc[np.flatnonzero(~bad)],
        quarantined=quarantined,
        duplicates_dropped=int(exact.sum()),
        expectation_results=outcomes,
    )


def rejected_share(fetched: int, quarantined: int) -> float:
    """Share of fetched rows that were rejected (0.0 when nothing was fetched)."""
    return quarantined / fetched if fetched > 0 else 0.0


def check_rejected_share(
    share: float, settings: VelocastSettings, *, fetched: int | None = None, quarantined: int | None = None
) -> None:
    """Raise ``TooManyRejectedRowsError`` when ``share`` exceeds ``settings.max_rejected_share``."""
    if share > settings.max_rejected_share:
        raise TooManyRejectedRowsError(share, settings.max_rejected_share, fetched, quarantined)


# --------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _gx_frame(frame: pd.DataFrame, rules: Any) -> pd.DataFrame:
    """The columns the suite reads, with dtypes GX's pandas engine handles vectorised.

    GX compares numbers vectorised only for numpy int/float columns (nullable ``Int64`` goes
    through a per-value Python function), so INT64 columns are handed over as float64.
    A RangeIndex makes ``unexpected_index_list`` positional.
    """
    contract = load_contract(RAW_COUNTS)
    names = sorted({name for rule in rules for name in rule.columns}, key=DATA_COLUMNS.index)
    columns: dict[str, Any] = {}
    for name in names:
        series = frame[name].reset_index(drop=True)
        kind = contract.column(name).type
        if kind in {"INT64", "FLOAT64"}:
            columns[name] = pd.to_numeric(series, errors="coerce").astype("float64")
        elif kind == "TIMESTAMP":
            columns[name] = pd.to_datetime(series, utc=True, errors="coerce")
        else:
            columns[name] = series
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))


def _quarantine(
    kept: pd.DataFrame, positions: np.ndarray, reasons: Sequence[str], raw: pd.DataFrame | None
) -> pd.DataFrame:
    if positions.size == 0:
        return empty_rejected()
    rows = kept.iloc[positions]
    records = raw_records_json(raw.loc[rows.index]) if raw is not None else _normalized_json(rows)
    quarantined = pd.DataFrame(
        {
            "raw_record": pd.Series(records, dtype="string"),
            "reason": pd.Series(reasons, dtype="string"),
            "counter_id": rows["counter_id"].astype("string").reset_index(drop=True),
            "counted_at": pd.to_datetime(rows["counted_at"], utc=True, errors="coerce").reset_index(
                drop=True
            ),
        },
        columns=list(REJECTED_ROW_COLUMNS),
    )
    quarantined.index = rows.index
    return quarantined


def _normalized_json(rows: pd.DataFrame) -> list[str]:
    """The normalized rows as JSON (timestamps ISO 8601 in UTC, dates as YYYY-MM-DD)."""
    return frame_to_json_lines(rows[list(DATA_COLUMNS)])


@cache
def _runtime() -> _Runtime:
    """The process-wide GX objects: ephemeral context, pandas data source, suite."""
    # Documented switch, read by GX; set before the import so nothing is ever sent.
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    # GX is imported here, not at module level: importing it takes seconds (DAG parsing must not pay).
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # No tqdm bars in task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("velocast")
    batch_definition = source.add_dataframe_asset(name="hourly_counts").add_batch_definition_whole_dataframe(
        "whole_frame"
    )
    rules = _rules()
    suite = gx.ExpectationSuite(name=_SUITE_NAME, expectations=[rule.expectation for rule in rules])
    return _Runtime(
        batch_definition=batch_definition,
        suite=suite,
        rules={rule.key: rule for rule in rules},
        lock=threading.Lock(),
    )


def _rules() -> list[_Rule]:
    """The suite, derived from the ``hourly_counts`` contract."""
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )
    from great_expectations.expectations.core.expect_column_values_to_match_regex import (
        ExpectColumnValuesToMatchRegex,
    )
    from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
        ExpectColumnValuesToNotBeNull,
    )
    from great_expectations.expectations.core.expect_compound_columns_to_be_unique import (
        ExpectCompoundColumnsToBeUnique,
    )

    contract = load_contract(RAW_COUNTS)
    rules: list[_Rule] = []

    def add(key: str, columns: tuple[str, ...], reason: str, expectation: Expectation) -> None:
        expectation.meta = {"rule": key}
        rules.append(_Rule(key=key, columns=columns, reason=reason, expectation=expectation))

    for column in contract.columns:
        if column.name not in DATA_COLUMNS:
            continue  # ingestion_run_id / ingested_at are added by the loader
        if column.required:
            add(
                f"{column.name}_not_null",
                (column.name,),
                f"{column.name} is null",
                ExpectColumnValuesToNotBeNull(column=column.name),
            )
        if column.type == "INT64":
            add(
                f"{column.name}_integer",
                (column.name,),
                f"{column.name} is not an integer",
                ExpectColumnValuesToMatchRegex(column=column.name, regex=_INTEGER_TEXT),
            )
    for name in _NON_NEGATIVE:
        contract.column(name)  # fails loudly if the contract renames it
        add(
            f"{name}_non_negative",
            (name,),
            f"{name} is negative",
            ExpectColumnValuesToBeBetween(column=name, min_value=0),
        )
    window_column = contract.partition_field
    add(
        f"{window_column}_in_window",
        (window_column,),
        f"{window_column} outside window [{{window_start}}, {{window_end}})",
        ExpectColumnValuesToBeBetween(
            column=window_column,
            min_value={"$PARAMETER": "window_start"},
            max_value={"$PARAMETER": "window_end"},
            strict_max=True,
        ),
    )
    for name, low, high in ((_LATITUDE, "lat_min", "lat_max"), (_LONGITUDE, "lon_min", "lon_max")):
        contract.column(name)
        add(
            f"{name}_in_paris",
            (name,),
            f"{name} outside Paris bounding box [{{{low}}}, {{{high}}}]",
            ExpectColumnValuesToBeBetween(
                column=name, min_value={"$PARAMETER": low}, max_value={"$PARAMETER": high}
            ),
        )
    add(
        "primary_key_unique",
        contract.primary_key,
        DUPLICATE_REASON,
        ExpectCompoundColumnsToBeUnique(column_list=list(contract.primary_key)),
    )
    return rules
