"""When a count was made: the ``counted_at`` column in UTC, from any variant's date column or date parts.

* Timestamps with an offset (``+02:00``, ``Z``) are converted to UTC. **Naive timestamps (strings
  without an offset, naive datetime columns and split date parts) are Europe/Paris wall-clock
  time**: that is how the City's exports and the third-party copies write local dates.
* A local time that does not exist (spring clock change) is rejected. A local time that exists
  twice (autumn clock change) is read as summer time (CEST) the first time it occurs for a counter
  and as winter time (CET) the second time.
* A time that is not the start of an hour is rejected; texts that are not dates are rejected.

Distinct texts are parsed once, vectorised; a value that upsets pandas' vectorised parser sends
the distinct values through a one-at-a-time path instead, with the same result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.contract import PARIS_TZ
from velocast.data.columns import SourceColumns
from velocast.data.rejections import Quotable, Rejections
from velocast.data.values import factorize, is_missing, text_of

# An offset after a time of day; a bare date such as 2024-01-01 must not read as offset "-01".
_HAS_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_DATE_PARTS: Final = ("year", "month", "day", "hour")


def counted_at_column(
    columns: SourceColumns, counter_id: pd.Series, n: int, rejections: Rejections
) -> pd.Series:
    """UTC timestamps (``datetime64[ns, UTC]``); NaT where the source has no date."""
    source = columns.get("date")
    quotable: Quotable
    if source is not None:
        aware, naive = _parse_timestamps(source, rejections)
        quotable = source
    elif all(part in columns for part in _DATE_PARTS):
        parts = pd.DataFrame({part: columns.get(part) for part in _DATE_PARTS})
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


def _nat_series(n: int, dtype: str) -> pd.Series:
    return pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype=dtype)


def _parse_timestamps(source: pd.Series, rejections: Rejections) -> tuple[pd.Series, pd.Series]:
    """(UTC values of texts with an offset, naive values of texts without); others rejected."""
    n = len(source)
    if isinstance(source.dtype, pd.DatetimeTZDtype):
        return source.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), _nat_series(n, "datetime64[ns]")
    if pd.api.types.is_datetime64_dtype(source.dtype):
        return _nat_series(n, "datetime64[ns, UTC]"), source.astype("datetime64[ns]")

    codes, uniques = factorize(source)
    texts = [_timestamp_text(value) for value in uniques]
    aware_u, naive_u = _parse_timestamp_texts(texts)
    unreadable = np.append(np.isnat(aware_u) & np.isnat(naive_u), False)
    rejections.add(unreadable[codes], source, "unparseable date {}".format)
    nat = np.datetime64("NaT", "ns")
    aware = pd.Series(pd.DatetimeIndex(np.append(aware_u, nat)[codes]).tz_localize("UTC"))
    naive = pd.Series(np.append(naive_u, nat)[codes], dtype="datetime64[ns]")
    return aware, naive


def _timestamp_text(value: Any) -> str | None:
    if is_missing(value):
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


def _parse_date_parts(parts: pd.DataFrame, rejections: Rejections) -> pd.Series:
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
        return [f"{text_of(y)}-{text_of(m)}-{text_of(d)} {text_of(h)}h" for y, m, d, h in rows]

    return quote


def _localize_paris(
    naive: pd.Series, counter_id: pd.Series, quotable: Quotable, rejections: Rejections
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
