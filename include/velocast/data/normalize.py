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
"""

from __future__ import annotations

import io
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.contract import RAW_COUNTS, load_contract

PARIS_TZ: Final = "Europe/Paris"

# Columns the loader adds; everything else in the contract comes from the source.
LOAD_COLUMNS: Final[tuple[str, ...]] = ("ingestion_run_id", "ingested_at")
DATA_COLUMNS: Final[tuple[str, ...]] = tuple(
    name for name in load_contract(RAW_COUNTS).column_names if name not in LOAD_COLUMNS
)
REJECTED_COLUMNS: Final[tuple[str, ...]] = ("raw_record", "reason", "counter_id", "counted_at")

# pandas dtype of each BigQuery type, so the frame loads into the contract's schema as is.
_DTYPES: Final[dict[str, Any]] = {
    "STRING": "string",
    "TIMESTAMP": "datetime64[ns, UTC]",
    "INT64": "Int64",
    "FLOAT64": "float64",
    "DATE": "object",  # datetime.date or None: pyarrow and BigQuery read it as DATE
}

# Source columns per role, as normalised keys (see ``column_key``); the first one present wins.
# The contract's own names come first so that normalising a normalised frame is a no-op.
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "counter_id": ("counter_id", "id_compteur", "identifiant_du_compteur"),
    "counter_name": ("counter_name", "nom_compteur", "nom_du_compteur"),
    "site_id": ("site_id", "id", "identifiant_du_site_de_comptage"),
    "site_name": ("site_name", "name", "nom_du_site_de_comptage"),
    "count": ("hourly_count", "sum_counts", "comptage_horaire"),
    "date": ("counted_at", "date", "date_et_heure_de_comptage"),
    "installation_date": ("installation_date", "date_d_installation_du_site_de_comptage"),
    "coordinates": ("coordinates", "coordonnees_geographiques", "geo_point_2d"),
    "geometry": ("geometry", "geo_shape"),
    "latitude": ("latitude", "lat", "coordinates_lat"),
    "longitude": ("longitude", "lon", "lng", "coordinates_lon"),
    "orientation": ("orientation_compteur",),
    "year": ("annee_comptage",),
    "month": ("mois_comptage",),
    "day": ("jour_comptage",),
    "hour": ("heure_comptage",),
}

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d{1,30}", re.ASCII)
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+", re.ASCII)
_PAIR = re.compile(
    r"[(\[]?\s*([^,;\s()\[\]]+)\s*[,;\s]\s*([^,;\s()\[\]]+)\s*[)\]]?",
    re.ASCII,
)
# An offset after a time of day; a bare date such as 2024-01-01 must not read as offset "-01".
_HAS_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_LEADING_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:$|[T\s])", re.ASCII)
_INT64_LIMIT: Final = 2**63


@dataclass(frozen=True, eq=False)
class NormalizeResult:
    """What ``normalize`` made of a raw frame.

    ``frame`` holds the rows that could be read, with the contract's data columns (``DATA_COLUMNS``)
    and the raw frame's index labels, so ``raw.loc[frame.index]`` gives the source rows back.
    ``rejected`` holds the other rows (``REJECTED_COLUMNS``), indexed the same way.
    """

    frame: pd.DataFrame
    rejected: pd.DataFrame


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


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
# Normalising
# --------------------------------------------------------------------------------------------


def column_key(name: object) -> str:
    """``"Coordonnées géographiques"`` -> ``"coordonnees_geographiques"`` (BOM, accents, case, spacing)."""
    ascii_text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^0-9a-z]+", "_", ascii_text.lower()).strip("_")


def _resolve_columns(columns: Sequence[object]) -> dict[str, int]:
    """Role -> position of the source column that provides it."""
    positions: dict[str, int] = {}
    for position, name in enumerate(columns):
        positions.setdefault(column_key(name), position)
    resolved: dict[str, int] = {}
    for role, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in positions:
                resolved[role] = positions[alias]
                break
    return resolved


# The source values of some row positions: a column, or a function building them on demand.
_Quotable = pd.Series | Callable[[np.ndarray], list[Any]]


class _Rejections:
    """Reasons collected per row position; only bad rows ever cost Python time."""

    def __init__(self) -> None:
        self._reasons: dict[int, list[str]] = {}

    def add(self, mask: np.ndarray, source: _Quotable, describe: Callable[[str], str]) -> None:
        """Reject the rows in ``mask``; ``describe`` gets the quoted source value of each."""
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            return
        values = source.iloc[positions].tolist() if isinstance(source, pd.Series) else source(positions)
        for position, value in zip(positions.tolist(), values, strict=True):
            self._reasons.setdefault(position, []).append(describe(_quote(value)))

    def mask(self, n: int) -> np.ndarray:
        rejected = np.zeros(n, dtype=bool)
        if self._reasons:
            rejected[list(self._reasons)] = True
        return rejected

    def reasons(self, positions: np.ndarray) -> list[str]:
        return ["; ".join(self._reasons[p]) for p in positions.tolist()]


def normalize(raw: pd.DataFrame) -> NormalizeResult:
    """Map a raw frame of any known variant onto the contract's data columns.

    Never raises on bad values: rows with values that cannot be read go to ``rejected``.
    """
    n = len(raw)
    roles = _resolve_columns(list(raw.columns))

    def column(role: str) -> pd.Series | None:
        if role not in roles:
            return None
        series = raw.iloc[:, roles[role]]
        return series.reset_index(drop=True)

    rejections = _Rejections()
    out: dict[str, Any] = {}

    out["counter_id"] = _text(column("counter_id"), n)
    out["site_id"] = _text(column("site_id"), n)
    out["site_name"] = _text(column("site_name"), n)
    counter_name = _text(column("counter_name"), n)
    orientation = column("orientation")
    if "counter_name" not in roles and orientation is not None:
        # Files without the counter name (Sébastopol) still name the site and the direction.
        counter_name = out["site_name"] + " " + _text(orientation, n)
    out["counter_name"] = counter_name

    out["counted_at"] = _counted_at(column, roles, out["counter_id"], n, rejections)
    out["hourly_count"] = _counts(column("count"), n, rejections)
    out["latitude"], out["longitude"] = _coordinates(column, n, rejections)
    out["installation_date"] = _installation_dates(column("installation_date"), n, rejections)

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
        columns=list(REJECTED_COLUMNS),
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
        codes, uniques = _factorize(frame.iloc[:, position])
        encoded = [json.dumps(_jsonable(value), ensure_ascii=False, allow_nan=False) for value in uniques]
        columns.append(np.array([*encoded, "null"], dtype=object)[codes])
    template = (
        "{" + ",".join(json.dumps(key, ensure_ascii=False).replace("%", "%%") + ":%s" for key in keys) + "}"
    )
    return [template % row for row in zip(*columns, strict=True)]


# --------------------------------------------------------------------------------------------
# Column parsers. Each works on a RangeIndex'd series and returns per-row arrays.
# --------------------------------------------------------------------------------------------


def _nulls(n: int, bigquery_type: str) -> pd.Series:
    if bigquery_type == "DATE":
        return pd.Series([None] * n, dtype="object")
    return pd.Series([None] * n, dtype=_DTYPES[bigquery_type])


def _factorize(series: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Codes and distinct values (nulls get code -1).

    Hashing equates ``True``, ``1`` and ``1.0``, so columns mixing types (and unhashable values
    such as dicts) are not deduplicated: every row is its own value.
    """
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) not in {
        "mixed",
        "mixed-integer",
    }:
        try:
            codes, uniques = pd.factorize(series, use_na_sentinel=True)
            return np.asarray(codes), list(uniques)
        except TypeError:
            pass
    codes = np.where(pd.isna(series).to_numpy(), -1, np.arange(len(series)))
    return codes.astype(np.intp), series.tolist()


def _map_distinct(series: pd.Series, parse: Callable[[Any], Any]) -> tuple[np.ndarray, list[Any]]:
    """Parse each distinct value once; return row codes and the parsed distinct values."""
    codes, uniques = _factorize(series)
    return codes, [parse(value) for value in uniques]


def _take(codes: np.ndarray, parsed: Sequence[Any], fill: Any, dtype: Any = object) -> np.ndarray:
    table = np.empty(len(parsed) + 1, dtype=dtype)
    for i, value in enumerate(parsed):
        table[i] = value
    table[-1] = fill  # code -1 (null) picks the last slot
    taken: np.ndarray = table[codes]
    return taken


def _text(series: pd.Series | None, n: int) -> pd.Series:
    if series is None:
        return pd.Series(pd.array([None] * n, dtype="string"))
    codes, parsed = _map_distinct(series, _text_of)
    values = _take(codes, parsed, None)
    return pd.Series(pd.array(values, dtype="string"))


def _text_of(value: Any) -> str | None:  # noqa: PLR0911 (one return per input type)
    if _is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return str(value)


# --- counts ---------------------------------------------------------------------------------

_NOT_A_NUMBER = "count not a number {}"
_NON_INTEGER = "non-integer count {}"
_OUT_OF_RANGE = "count out of range {}"


def _counts(series: pd.Series | None, n: int, rejections: _Rejections) -> pd.Series:
    if series is None:
        return pd.Series(pd.array([None] * n, dtype="Int64"))
    dtype = series.dtype
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return series.astype("Int64")
    if pd.api.types.is_float_dtype(dtype):
        numbers = series.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(numbers)
        present = ~np.isnan(numbers)
        with np.errstate(invalid="ignore"):
            out_of_range = present & (~finite | (np.abs(numbers) >= _INT64_LIMIT))
            non_integer = present & ~out_of_range & (np.floor(numbers) != numbers)
        rejections.add(non_integer, series, _NON_INTEGER.format)
        rejections.add(out_of_range, series, _OUT_OF_RANGE.format)
        good = present & ~non_integer & ~out_of_range
        return pd.Series(pd.arrays.IntegerArray(np.where(good, numbers, 0).astype(np.int64), ~good))
    codes, parsed = _map_distinct(series, _count_of)
    values = [value for value, _ in parsed]
    problems = [problem for _, problem in parsed]
    counts = pd.Series(pd.array(_take(codes, values, None), dtype="Int64"))
    for template in (_NOT_A_NUMBER, _NON_INTEGER, _OUT_OF_RANGE):
        flagged = np.array([problem == template for problem in problems] + [False], dtype=bool)
        rejections.add(flagged[codes], series, template.format)
    return counts


def _count_of(value: Any) -> tuple[int | None, str | None]:  # noqa: PLR0911 (one per input type)
    """(count, problem template) for one distinct source value."""
    if _is_missing(value):
        return None, None
    if isinstance(value, bool | np.bool_):
        return None, _NOT_A_NUMBER
    if isinstance(value, int | np.integer):
        number = int(value)
        return (number, None) if abs(number) < _INT64_LIMIT else (None, _OUT_OF_RANGE)
    if isinstance(value, float | np.floating):
        return _integral(float(value))
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None, None
        if _INTEGER.fullmatch(text):
            number = int(text)
            return (number, None) if abs(number) < _INT64_LIMIT else (None, _OUT_OF_RANGE)
        if _NUMBER.fullmatch(text):
            return _integral(float(text))
    return None, _NOT_A_NUMBER


def _integral(number: float) -> tuple[int | None, str | None]:
    if math.isnan(number):
        return None, None
    if math.isinf(number) or abs(number) >= _INT64_LIMIT:
        return None, _OUT_OF_RANGE
    if not number.is_integer():
        return None, _NON_INTEGER
    return int(number), None


# --- timestamps -----------------------------------------------------------------------------


def _counted_at(
    column: Callable[[str], pd.Series | None],
    roles: Mapping[str, int],
    counter_id: pd.Series,
    n: int,
    rejections: _Rejections,
) -> pd.Series:
    source = column("date")
    quotable: _Quotable
    if source is not None:
        aware, naive = _parse_timestamps(source, rejections)
        quotable = source
    elif all(part in roles for part in _DATE_PARTS):
        parts = pd.DataFrame({part: column(part) for part in _DATE_PARTS})
        naive = _parse_date_parts(parts, rejections)
        aware = _nat_series(n, "datetime64[ns, UTC]")
        quotable = _date_parts_quoter(parts)
    else:
        return _nat_series(n, "datetime64[ns, UTC]")

    localized = _localize_paris(naive, counter_id, quotable, rejections)
    counted_at = aware.where(aware.notna(), localized)
    off_hour = (counted_at.notna() & (counted_at != counted_at.dt.floor("h"))).to_numpy()
    rejections.add(off_hour, quotable, "date not at the start of an hour {}".format)
    return counted_at


_DATE_PARTS: Final = ("year", "month", "day", "hour")


def _nat_series(n: int, dtype: str) -> pd.Series:
    return pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype=dtype)


def _parse_timestamps(source: pd.Series, rejections: _Rejections) -> tuple[pd.Series, pd.Series]:
    """(UTC values of texts with an offset, naive values of texts without); others rejected."""
    n = len(source)
    if isinstance(source.dtype, pd.DatetimeTZDtype):
        return source.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), _nat_series(n, "datetime64[ns]")
    if pd.api.types.is_datetime64_dtype(source.dtype):
        return _nat_series(n, "datetime64[ns, UTC]"), source.astype("datetime64[ns]")

    codes, uniques = _factorize(source)
    texts = [_timestamp_text(value) for value in uniques]
    aware_u, naive_u = _parse_timestamp_texts(texts)
    unreadable = np.append(np.isnat(aware_u) & np.isnat(naive_u), False)
    rejections.add(unreadable[codes], source, "unparseable date {}".format)
    nat = np.datetime64("NaT", "ns")
    aware = pd.Series(pd.DatetimeIndex(np.append(aware_u, nat)[codes]).tz_localize("UTC"))
    naive = pd.Series(np.append(naive_u, nat)[codes], dtype="datetime64[ns]")
    return aware, naive


def _timestamp_text(value: Any) -> str | None:
    if _is_missing(value):
        return None
    if isinstance(value, datetime):  # includes pd.Timestamp
        return value.isoformat()
    if isinstance(value, str):
        return value.strip() or None
    return "\x00"  # a number, a list...: not a date, and sure to fail parsing


def _parse_timestamp_texts(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct texts -> (UTC wall times of texts with an offset, naive times of the others).

    Both are naive ``datetime64[ns]`` arrays, NaT where the text is missing or of the other kind.
    """
    has_offset = [text is not None and _HAS_OFFSET.search(text) is not None for text in texts]
    with_offset = [t if o else None for t, o in zip(texts, has_offset, strict=True)]
    without = [None if o else t for t, o in zip(texts, has_offset, strict=True)]
    try:
        aware = pd.DatetimeIndex(
            pd.to_datetime(pd.Series(with_offset, dtype=object), format="ISO8601", utc=True, errors="coerce")
        )
        naive = pd.DatetimeIndex(
            pd.to_datetime(pd.Series(without, dtype=object), format="ISO8601", errors="coerce")
        )
        if naive.tz is not None:
            raise ValueError("a text without offset was read with a time zone")
    except (ValueError, TypeError, OverflowError):
        # Some value upsets the vectorised parser: read one value at a time instead.
        pairs = [_parse_one_timestamp(text) for text in texts]
        aware = pd.DatetimeIndex([a for a, _ in pairs], dtype="datetime64[ns, UTC]")
        naive = pd.DatetimeIndex([b for _, b in pairs], dtype="datetime64[ns]")
    aware_values = np.asarray(aware.tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy())
    naive_values = np.asarray(naive.as_unit("ns").to_numpy())
    return aware_values, naive_values


def _parse_one_timestamp(text: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if text is None:
        return None, None
    try:
        value = pd.Timestamp(pd.to_datetime(text, format="ISO8601"))
    except (ValueError, TypeError, OverflowError):
        return None, None
    if pd.isna(value):
        return None, None
    if value.tzinfo is not None:
        return value.tz_convert("UTC"), None
    return None, value


def _parse_date_parts(parts: pd.DataFrame, rejections: _Rejections) -> pd.Series:
    """annee/mois/jour/heure_comptage (local wall-clock time) -> naive timestamps."""
    numbers = parts.apply(pd.to_numeric, errors="coerce").astype("float64")
    numbers.columns = list(_DATE_PARTS)
    usable = (
        numbers.notna().all(axis=1)
        & (numbers == np.floor(numbers)).all(axis=1)
        & numbers["month"].between(1, 12)
        & numbers["day"].between(1, 31)
        & numbers["hour"].between(0, 23)  # to_datetime would roll hour 24 into the next day
    ).to_numpy()
    naive = _nat_series(len(parts), "datetime64[ns]")
    if usable.any():
        values = pd.to_datetime(numbers[usable].astype("int64"), errors="coerce")
        naive[usable] = values.astype("datetime64[ns]").to_numpy()
    # All parts missing: a null date for validation. Some present but no date: rejected.
    bad = parts.notna().any(axis=1).to_numpy() & naive.isna().to_numpy()
    rejections.add(bad, _date_parts_quoter(parts), "unparseable date parts {}".format)
    return naive


def _date_parts_quoter(parts: pd.DataFrame) -> Callable[[np.ndarray], list[Any]]:
    def quote(positions: np.ndarray) -> list[Any]:
        rows = parts.iloc[positions].itertuples(index=False, name=None)
        return [f"{_text_of(y)}-{_text_of(m)}-{_text_of(d)} {_text_of(h)}h" for y, m, d, h in rows]

    return quote


def _localize_paris(
    naive: pd.Series, counter_id: pd.Series, quotable: _Quotable, rejections: _Rejections
) -> pd.Series:
    """Europe/Paris wall-clock time -> UTC; see the module docstring for clock changes."""
    result = _nat_series(len(naive), "datetime64[ns, UTC]")
    local = naive.notna().to_numpy()
    if not local.any():
        return result
    times = pd.DatetimeIndex(naive[local])
    summer = times.tz_localize(PARIS_TZ, ambiguous=np.ones(len(times), dtype=bool), nonexistent="NaT")
    winter = times.tz_localize(PARIS_TZ, ambiguous=np.zeros(len(times), dtype=bool), nonexistent="NaT")
    localized = summer
    twice = np.asarray(summer != winter) & ~np.asarray(pd.isna(summer))
    if twice.any():
        # A wall-clock time that happens twice: the first row of a counter is the summer one.
        keys = pd.DataFrame({"c": counter_id[local].to_numpy()[twice], "t": times[twice]})
        repeat = np.zeros(len(times), dtype=bool)
        repeat[np.flatnonzero(twice)] = keys.duplicated().to_numpy()
        localized = summer.where(~repeat, winter)
    result[local] = localized.tz_convert("UTC")
    gap = np.zeros(len(naive), dtype=bool)
    gap[np.flatnonzero(local)[np.asarray(pd.isna(localized))]] = True
    rejections.add(gap, quotable, "nonexistent local time {} (Europe/Paris clock change)".format)
    return result


# --- coordinates ----------------------------------------------------------------------------

_BAD: Final = (math.inf, math.inf)  # marker for "present but unreadable"
_NO_PAIR: Final = (math.nan, math.nan)


def _coordinates(
    column: Callable[[str], pd.Series | None], n: int, rejections: _Rejections
) -> tuple[np.ndarray, np.ndarray]:
    latitude = np.full(n, np.nan)
    longitude = np.full(n, np.nan)
    lat_col, lon_col = column("latitude"), column("longitude")
    if lat_col is not None:
        latitude = _float_column(lat_col, rejections, "unparseable latitude {}")
    if lon_col is not None:
        longitude = _float_column(lon_col, rejections, "unparseable longitude {}")
    # Fill from the pair columns where the separate columns gave nothing.
    for role, lat_first in (("coordinates", True), ("geometry", False)):
        pairs = column(role)
        if pairs is None:
            continue
        lat, lon = _pair_column(pairs, lat_first, rejections)
        missing = np.isnan(latitude) & np.isnan(longitude)
        latitude = np.where(missing, lat, latitude)
        longitude = np.where(missing, lon, longitude)
    return latitude, longitude


def _float_column(series: pd.Series, rejections: _Rejections, reason: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    codes, parsed = _map_distinct(series, _float_of)
    values = _take(codes, parsed, np.nan, dtype="float64")
    bad = np.isinf(values)  # _float_of marks unreadable values with +inf
    rejections.add(bad, series, reason.format)
    return np.where(bad, np.nan, values)


def _float_of(value: Any) -> float:
    """A coordinate number; NaN when missing, +inf when present but unreadable."""
    if _is_missing(value):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return math.inf
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        return number if math.isfinite(number) else math.inf
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return math.nan
        if _DECIMAL_COMMA.fullmatch(text):  # French decimal comma in a single-number column
            text = text.replace(",", ".")
        if _NUMBER.fullmatch(text):
            number = float(text)
            return number if math.isfinite(number) else math.inf
    return math.inf


def _pair_column(
    series: pd.Series, lat_first: bool, rejections: _Rejections
) -> tuple[np.ndarray, np.ndarray]:
    lats = np.full(len(series), np.nan)
    lons = np.full(len(series), np.nan)
    rest = np.ones(len(series), dtype=bool)
    if series.dtype == object:
        # Fast lane for the API's {"lon": float, "lat": float} objects, one per row and unhashable.
        values = series.tolist()
        plain = np.fromiter((_plain_lat_lon(value) for value in values), dtype=bool, count=len(values))
        if plain.any():
            chosen = np.flatnonzero(plain).tolist()
            lats[plain] = [values[i]["lat"] for i in chosen]
            lons[plain] = [values[i]["lon"] for i in chosen]
            rest = ~plain
    if rest.any():
        codes, parsed = _map_distinct(series[rest], lambda value: _pair_of(value, lat_first))
        lats[rest] = _take(codes, [p[0] for p in parsed], np.nan, dtype="float64")
        lons[rest] = _take(codes, [p[1] for p in parsed], np.nan, dtype="float64")
    # Unreadable (marked inf) or half a pair.
    bad = np.isinf(lats) | np.isinf(lons) | (np.isnan(lats) != np.isnan(lons))
    rejections.add(bad, series, "unparseable coordinates {}".format)
    return np.where(bad, np.nan, lats), np.where(bad, np.nan, lons)


_PLAIN_NUMBERS: Final = (float, int)


def _plain_lat_lon(value: Any) -> bool:
    return (
        type(value) is dict
        and type(value.get("lat")) in _PLAIN_NUMBERS
        and type(value.get("lon")) in _PLAIN_NUMBERS
        and "coordinates" not in value
    )


def _pair_of(value: Any, lat_first: bool) -> tuple[float, float]:  # noqa: PLR0911 (one per input shape)
    """(lat, lon) from ``{"lat","lon"}``, ``[lat, lon]`` / ``[lon, lat]``, ``"lat,lon"`` or GeoJSON."""
    if _is_missing(value):
        return _NO_PAIR
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _NO_PAIR
        if text[0] in "{[":
            try:
                return _pair_of(json.loads(text), lat_first)
            except (ValueError, RecursionError):
                pass
        match = _PAIR.fullmatch(text)
        if match is None:
            return _BAD
        value = [match.group(1), match.group(2)]
    if isinstance(value, Mapping):
        if "coordinates" in value:  # GeoJSON geometry: always [lon, lat]
            return _pair_of(value["coordinates"], lat_first=False)
        lat = value.get("lat", value.get("latitude"))
        lon = value.get("lon", value.get("lng", value.get("longitude")))
        return _checked_pair(_float_of(lat), _float_of(lon))
    if isinstance(value, list | tuple | np.ndarray) and len(value) == 2:
        first, second = _float_of(value[0]), _float_of(value[1])
        return _checked_pair(first, second) if lat_first else _checked_pair(second, first)
    return _BAD


def _checked_pair(lat: float, lon: float) -> tuple[float, float]:
    if math.isnan(lat) and math.isnan(lon):
        return _NO_PAIR
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return _BAD  # one half missing or unreadable
    return lat, lon


# --- installation date ----------------------------------------------------------------------

_BAD_DATE: Final = object()


def _installation_dates(series: pd.Series | None, n: int, rejections: _Rejections) -> pd.Series:
    if series is None:
        return pd.Series([None] * n, dtype="object")
    codes, parsed = _map_distinct(series, _date_of)
    flagged = np.array([value is _BAD_DATE for value in parsed] + [False], dtype=bool)[codes]
    rejections.add(flagged, series, "unparseable installation date {}".format)
    cleaned = [None if value is _BAD_DATE else value for value in parsed]
    return pd.Series(_take(codes, cleaned, None), dtype="object")


def _date_of(value: Any) -> date | object | None:  # noqa: PLR0911 (one return per input type)
    if _is_missing(value):
        return None
    if isinstance(value, datetime):  # includes pd.Timestamp; the written (local) date is kept
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        match = _LEADING_DATE.match(text)
        if match is not None:
            try:
                return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                return _BAD_DATE
    return _BAD_DATE


# --- helpers --------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def _quote(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else _text_of(value)
    text = "" if text is None else text
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"'{text}'"


def _jsonable(value: Any) -> Any:  # noqa: PLR0911 (one return per input type)
    """Plain JSON values for a raw cell (numpy scalars, timestamps, NaN, nested objects)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if _is_missing(value):
        return None
    if isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    return str(value)
