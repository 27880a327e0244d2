"""Turn any known variant of the Paris bike-count data into one frame shaped like the raw contract.

Variants (see ``shared/data/paris_bike_counts/SOURCES.md``): Explore API v2.1 records, the v1 JSON
export (``fields``/``geometry``), the French CSV export labels, snake_case French column names
(including files enriched by third parties), the ``regine_nj`` parquet whose local date is split
into parts, and the API replay's own parquet.

Rules, applied the same way to every variant:

* Column names are matched after removing accents, case, spacing and punctuation, so
  ``"Coordonnées géographiques"``, ``coordonnees_geographiques`` and ``COORDONNEES GEOGRAPHIQUES``
  are one column.
* Timestamps with an offset (``+02:00``, ``Z``) are converted to UTC. **Naive timestamps (strings
  without an offset, naive datetime columns and split date parts) are Europe/Paris wall-clock
  time**: that is how the City's exports and the third-party copies write local dates. A local
  time that does not exist (spring clock change) is rejected. A local time that exists twice
  (autumn clock change) is read as summer time (CEST) the first time it occurs for a counter and
  as winter time (CET) the second time.
* Counts written ``3``, ``3.0`` or ``"3.0"`` are integers; ``3.5`` is rejected.
* Missing values (null, empty string) stay null; the validation step decides whether a null is
  allowed. Values that are present but cannot be read make the row *rejected*, with a reason.
  Nothing in here raises on bad data.

The work is vectorised: string columns are factorised and each distinct value is parsed once,
which keeps ~1 M rows to a few seconds (hours, counters and counts repeat a lot).

This module assembles the frame and the rejected rows; the jobs behind it live next to it:
``readers`` (files and records -> raw frames, rows -> JSON records), ``columns`` (which source
column provides each role), ``parsers`` (text, counts, coordinates, installation dates),
``timestamps`` (``counted_at`` and the Paris clock), ``values`` (one cell; each distinct value
parsed once) and ``rejections`` (the reasons collected per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.contract import RAW_COUNTS, REJECTED_ROW_COLUMNS, load_contract
from velocast.data.columns import DATA_COLUMNS, SourceColumns
from velocast.data.parsers import coordinate_columns, count_column, installation_date_column, text_column
from velocast.data.readers import raw_records_json
from velocast.data.rejections import Rejections
from velocast.data.timestamps import counted_at_column

# pandas dtype of each BigQuery type, so the frame loads into the contract's schema as is.
_DTYPES: Final[dict[str, Any]] = {
    "STRING": "string",
    "TIMESTAMP": "datetime64[ns, UTC]",
    "INT64": "Int64",
    "FLOAT64": "float64",
    "DATE": "object",  # datetime.date or None: pyarrow and BigQuery read it as DATE
}


@dataclass(frozen=True, eq=False)
class NormalizeResult:
    """What ``normalize`` made of a raw frame.

    ``frame`` holds the rows that could be read, with the contract's data columns (``DATA_COLUMNS``)
    and the raw frame's index labels, so ``raw.loc[frame.index]`` gives the source rows back.
    ``rejected`` holds the other rows (``REJECTED_ROW_COLUMNS``), indexed the same way.
    """

    frame: pd.DataFrame
    rejected: pd.DataFrame


def normalize(raw: pd.DataFrame) -> NormalizeResult:
    """Map a raw frame of any known variant onto the contract's data columns.

    Never raises on bad values: rows with values that cannot be read go to ``rejected``.
    """
    n = len(raw)
    columns = SourceColumns.of(raw)
    rejections = Rejections()
    out: dict[str, Any] = {}

    out["counter_id"] = text_column(columns.get("counter_id"), n)
    out["site_id"] = text_column(columns.get("site_id"), n)
    out["site_name"] = text_column(columns.get("site_name"), n)
    counter_name = text_column(columns.get("counter_name"), n)
    orientation = columns.get("orientation")
    if "counter_name" not in columns and orientation is not None:
        # Files without the counter name (Sébastopol) still name the site and the direction.
        counter_name = out["site_name"] + " " + text_column(orientation, n)
    out["counter_name"] = counter_name

    out["counted_at"] = counted_at_column(columns, out["counter_id"], n, rejections)
    out["hourly_count"] = count_column(columns.get("count"), n, rejections)
    out["latitude"], out["longitude"] = coordinate_columns(columns, n, rejections)
    out["installation_date"] = installation_date_column(columns.get("installation_date"), n, rejections)

    contract = load_contract(RAW_COUNTS)
    frame = pd.DataFrame(
        {name: out[name] if name in out else _nulls(n, contract.column(name).type) for name in DATA_COLUMNS}
    )
    for name in DATA_COLUMNS:
        dtype = _DTYPES[contract.column(name).type]
        if str(frame[name].dtype) != dtype:
            frame[name] = frame[name].astype(dtype)

    rejected_mask = rejections.mask(n)
    rejected_positions = np.flatnonzero(rejected_mask)
    rejected = pd.DataFrame(
        {
            "raw_record": pd.Series(raw_records_json(raw.iloc[rejected_positions]), dtype="string"),
            "reason": pd.Series(rejections.reasons(rejected_positions), dtype="string"),
            "counter_id": frame["counter_id"].iloc[rejected_positions].reset_index(drop=True),
            "counted_at": frame["counted_at"].iloc[rejected_positions].reset_index(drop=True),
        },
        columns=list(REJECTED_ROW_COLUMNS),
    )
    rejected.index = raw.index[rejected_positions]
    frame = frame.iloc[np.flatnonzero(~rejected_mask)]
    frame.index = raw.index[~rejected_mask]
    return NormalizeResult(frame=frame, rejected=rejected)


def empty_rejected() -> pd.DataFrame:
    """A rejected/quarantined frame with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            "raw_record": pd.Series([], dtype="string"),
            "reason": pd.Series([], dtype="string"),
            "counter_id": pd.Series([], dtype="string"),
            "counted_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        }
    )


def _nulls(n: int, bigquery_type: str) -> pd.Series:
    if bigquery_type == "DATE":
        return pd.Series([None] * n, dtype="object")
    return pd.Series([None] * n, dtype=_DTYPES[bigquery_type])
