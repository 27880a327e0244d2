"""One raw cell, as every reader and parser of ``velocast.data`` sees it.

* ``is_missing``: null, NaN, NaT and friends; a missing value stays null, it is never an error.
* ``text_of``, ``quote``, ``jsonable``: a cell as text (text columns, rejection reasons) and as
  plain JSON (the raw record kept for a rejected row).
* ``factorize``, ``map_distinct``, ``take``: parse each distinct value of a column once and
  broadcast the results to the rows. This is what keeps ~1 M rows to a few seconds: hours,
  counters and counts repeat a lot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def text_of(value: Any) -> str | None:  # noqa: PLR0911 (one return per input type)
    """A cell as text: stripped strings, integral floats without ``.0``, nested values as JSON."""
    if is_missing(value):
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
        return json.dumps(jsonable(value), ensure_ascii=False)
    return str(value)


def quote(value: Any, limit: int = 80) -> str:
    """A source value as a rejection reason shows it: quoted, and cut at ``limit`` characters."""
    text = value if isinstance(value, str) else text_of(value)
    text = "" if text is None else text
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"'{text}'"


def jsonable(value: Any) -> Any:  # noqa: PLR0911 (one return per input type)
    """Plain JSON values for a raw cell (numpy scalars, timestamps, NaN, nested objects)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if is_missing(value):
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


def factorize(series: pd.Series) -> tuple[np.ndarray, list[Any]]:
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


def map_distinct(series: pd.Series, parse: Callable[[Any], Any]) -> tuple[np.ndarray, list[Any]]:
    """Parse each distinct value once; return row codes and the parsed distinct values."""
    codes, uniques = factorize(series)
    return codes, [parse(value) for value in uniques]


def take(codes: np.ndarray, parsed: Sequence[Any], fill: Any, dtype: Any = object) -> np.ndarray:
    """The parsed value of each row (``fill`` for the null rows, code -1)."""
    table = np.empty(len(parsed) + 1, dtype=dtype)
    for i, value in enumerate(parsed):
        table[i] = value
    table[-1] = fill  # code -1 (null) picks the last slot
    taken: np.ndarray = table[codes]
    return taken
