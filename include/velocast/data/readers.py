"""Files and API records in, raw frames out; and rows back out as the JSON records they came from.

Reading keeps values as received (no type guessing, nested objects untouched) so that ``normalize``
sees every variant as it is and a rejected row can be quarantined exactly as it was received.
Variants: see ``velocast.data.normalize``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from velocast.data.values import factorize, jsonable


def read_source(path: Path) -> pd.DataFrame:
    """Read a CSV, JSON (array, ``{"results": [...]}``, one v1 record, NDJSON) or parquet file.

    CSV separators are sniffed from the header and a UTF-8 BOM is dropped. CSV values are kept as
    text (no type guessing: ids keep their digits, ``"NA"`` stays a string); empty cells are null.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    if suffix in {".json", ".ndjson", ".jsonl", ".geojson"}:
        return records_to_frame(_json_records(_read_text(path)))
    if suffix in {".csv", ".tsv", ".txt"}:
        return _read_csv(path)
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == b"PAR1":
        return pd.read_parquet(path)
    text = _read_text(path)
    if text.lstrip()[:1] in {"[", "{"}:
        return records_to_frame(_json_records(text))
    return _read_csv(path)


def records_to_frame(records: Sequence[Any]) -> pd.DataFrame:
    """Build a raw frame from API records, lifting the v1 ``fields`` wrapper to the top level.

    Other nested values (v2.1 ``coordinates`` objects, v1 ``geometry``) are kept as they are so
    that a rejected row can be quarantined exactly as it was received.
    """
    rows = [_as_record(record) for record in records]
    # dtype=object keeps values as received (a count 3 must not turn into 3.0 next to a null).
    if not any(isinstance(row.get("fields"), Mapping) for row in rows):
        return pd.DataFrame(rows, dtype=object)
    flat: list[dict[str, Any]] = []
    for row in rows:
        fields = row.pop("fields", None)
        # Envelope keys (recordid, geometry, ...) never override a field of the same name.
        flat.append({**row, **fields} if isinstance(fields, Mapping) else row)
    return pd.DataFrame(flat, dtype=object)


def _as_record(record: Any) -> dict[str, Any]:
    if isinstance(record, Mapping):
        return dict(record)
    return {"value": record}  # keep garbage visible instead of failing the whole page


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _json_records(text: str) -> list[Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        # Newline-delimited JSON: one record per line.
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(document, list):
        return document
    if isinstance(document, Mapping):
        for key in ("results", "records"):
            if isinstance(document.get(key), list):
                return list(document[key])
        if isinstance(document.get("features"), list):  # GeoJSON export
            return [
                {**(feature.get("properties") or {}), "geometry": feature.get("geometry")}
                if isinstance(feature, Mapping)
                else feature
                for feature in document["features"]
            ]
        return [document]
    return [document]


def _read_csv(path: Path) -> pd.DataFrame:
    text = _read_text(path)
    header = text.split("\n", 1)[0]
    separator = max((";", ",", "\t", "|"), key=header.count)
    # Everything as text: ids keep their digits and "NA" stays a name; only empty cells are null.
    return pd.read_csv(io.StringIO(text), sep=separator, dtype=str, keep_default_na=False, na_values=[""])


# --------------------------------------------------------------------------------------------
# Writing rows back
# --------------------------------------------------------------------------------------------


def raw_records_json(raw: pd.DataFrame) -> list[str]:
    """Each row as the JSON object it was received as (nulls as ``null``, dates in ISO 8601)."""
    return frame_to_json_lines(raw)


def frame_to_json_lines(frame: pd.DataFrame) -> list[str]:
    """One JSON object per row.

    Each column's distinct values are encoded once; rows are then assembled with one ``%``
    template, so even a million quarantined rows take about a second.
    """
    if len(frame) == 0:
        return []
    keys: list[str] = []
    columns: list[np.ndarray] = []
    for position, name in enumerate(frame.columns):
        key = str(name)
        while key in keys:  # JSON objects need distinct keys
            key += "_"
        keys.append(key)
        codes, uniques = factorize(frame.iloc[:, position])
        encoded = [json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False) for value in uniques]
        columns.append(np.array([*encoded, "null"], dtype=object)[codes])
    template = (
        "{" + ",".join(json.dumps(key, ensure_ascii=False).replace("%", "%%") + ":%s" for key in keys) + "}"
    )
    return [template % row for row in zip(*columns, strict=True)]
