"""Vectorised parsers of the value columns: text, counts, coordinates and installation dates.

Each parser takes a source column (a series with a RangeIndex, see ``SourceColumns``) and returns
per-row values. Missing values (null, empty string) stay null; values present but unreadable are
reported to ``Rejections`` with a reason, never raised. Each distinct value is parsed once
(``velocast.data.values``). The date and time of the count is in ``velocast.data.timestamps``.

* Counts written ``3``, ``3.0`` or ``"3.0"`` are integers; ``3.5`` is rejected, as are texts that
  are not numbers (ASCII digits only) and values outside INT64.
* Coordinates come as separate latitude/longitude columns (decimal comma accepted), or as a pair:
  ``{"lat", "lon"}`` objects, ``"lat,lon"`` texts, ``[lat, lon]`` lists, GeoJSON (``[lon, lat]``).
* Installation dates keep the written (local) date: ``2012-02-22``, or the date of a timestamp.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.data.columns import SourceColumns
from velocast.data.rejections import Rejections
from velocast.data.values import is_missing, map_distinct, take, text_of

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d{1,30}", re.ASCII)
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+", re.ASCII)
_PAIR = re.compile(
    r"[(\[]?\s*([^,;\s()\[\]]+)\s*[,;\s]\s*([^,;\s()\[\]]+)\s*[)\]]?",
    re.ASCII,
)
_LEADING_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:$|[T\s])", re.ASCII)
_INT64_LIMIT: Final = 2**63


# --- text -----------------------------------------------------------------------------------


def text_column(series: pd.Series | None, n: int) -> pd.Series:
    """Stripped text (``string`` dtype); empty text is null."""
    if series is None:
        return pd.Series(pd.array([None] * n, dtype="string"))
    codes, parsed = map_distinct(series, text_of)
    values = take(codes, parsed, None)
    return pd.Series(pd.array(values, dtype="string"))


# --- counts ---------------------------------------------------------------------------------

_NOT_A_NUMBER = "count not a number {}"
_NON_INTEGER = "non-integer count {}"
_OUT_OF_RANGE = "count out of range {}"


def count_column(series: pd.Series | None, n: int, rejections: Rejections) -> pd.Series:
    """Integral counts (``Int64``)."""
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
    codes, parsed = map_distinct(series, _count_of)
    values = [value for value, _ in parsed]
    problems = [problem for _, problem in parsed]
    counts = pd.Series(pd.array(take(codes, values, None), dtype="Int64"))
    for template in (_NOT_A_NUMBER, _NON_INTEGER, _OUT_OF_RANGE):
        flagged = np.array([problem == template for problem in problems] + [False], dtype=bool)
        rejections.add(flagged[codes], series, template.format)
    return counts


def _count_of(value: Any) -> tuple[int | None, str | None]:  # noqa: PLR0911 (one per input type)
    """(count, problem template) for one distinct source value."""
    if is_missing(value):
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


# --- coordinates ----------------------------------------------------------------------------

_BAD: Final = (math.inf, math.inf)  # marker for "present but unreadable"
_NO_PAIR: Final = (math.nan, math.nan)


def coordinate_columns(
    columns: SourceColumns, n: int, rejections: Rejections
) -> tuple[np.ndarray, np.ndarray]:
    """(latitudes, longitudes): the separate columns first, then the pair columns where they gave nothing."""
    latitude = np.full(n, np.nan)
    longitude = np.full(n, np.nan)
    lat_col, lon_col = columns.get("latitude"), columns.get("longitude")
    if lat_col is not None:
        latitude = _float_column(lat_col, rejections, "unparseable latitude {}")
    if lon_col is not None:
        longitude = _float_column(lon_col, rejections, "unparseable longitude {}")
    # Fill from the pair columns where the separate columns gave nothing.
    for role, lat_first in (("coordinates", True), ("geometry", False)):
        pairs = columns.get(role)
        if pairs is None:
            continue
        lat, lon = _pair_column(pairs, lat_first, rejections)
        missing = np.isnan(latitude) & np.isnan(longitude)
        latitude = np.where(missing, lat, latitude)
        longitude = np.where(missing, lon, longitude)
    return latitude, longitude


def _float_column(series: pd.Series, rejections: Rejections, reason: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    codes, parsed = map_distinct(series, _float_of)
    values = take(codes, parsed, np.nan, dtype="float64")
    bad = np.isinf(values)  # _float_of marks unreadable values with +inf
    rejections.add(bad, series, reason.format)
    return np.where(bad, np.nan, values)


def _float_of(value: Any) -> float:
    """A coordinate number; NaN when missing, +inf when present but unreadable."""
    if is_missing(value):
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


def _pair_column(series: pd.Series, lat_first: bool, rejections: Rejections) -> tuple[np.ndarray, np.ndarray]:
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
        codes, parsed = map_distinct(series[rest], lambda value: _pair_of(value, lat_first))
        lats[rest] = take(codes, [p[0] for p in parsed], np.nan, dtype="float64")
        lons[rest] = take(codes, [p[1] for p in parsed], np.nan, dtype="float64")
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
    if is_missing(value):
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


def installation_date_column(series: pd.Series | None, n: int, rejections: Rejections) -> pd.Series:
    """``datetime.date`` values or None (``object`` dtype: pyarrow and BigQuery read it as DATE)."""
    if series is None:
        return pd.Series([None] * n, dtype="object")
    codes, parsed = map_distinct(series, _date_of)
    flagged = np.array([value is _BAD_DATE for value in parsed] + [False], dtype=bool)[codes]
    rejections.add(flagged, series, "unparseable installation date {}".format)
    cleaned = [None if value is _BAD_DATE else value for value in parsed]
    return pd.Series(take(codes, cleaned, None), dtype="object")


def _date_of(value: Any) -> date | object | None:  # noqa: PLR0911 (one return per input type)
    if is_missing(value):
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
