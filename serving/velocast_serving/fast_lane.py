"""The fast lane of ``/predict``: warehouse-shaped records as columns, no per-record objects.

Most clients post ``{"counter_id": …, "counted_at": "2024-01-01T10:00:00Z"}`` records (DAG 2 adds
``counter_name``, which a prediction does not use). For those,
validating each record into a pydantic model and normalising a frame with pandas cost ~10 ms for
one record, ~100× the model. This lane takes a request only when *every* record is that shape and
nothing in it needs the general path's judgement; anything else (another shape, an extra key,
surrounding spaces, a naive or off-the-hour time, a date the parser refuses, a date out of range)
goes down the general path unchanged (``velocast_serving.body`` and ``velocast_serving.prediction``),
which answers exactly as before, 422 reasons included. So the lane only ever answers requests the
general path would answer with a 200, and answers them the same (held equal in
``tests/serving/test_fast_lane.py``):

* counter ids: strings of 1-200 characters without surrounding whitespace (pydantic's strip and
  ``normalize``'s would leave them as they are); counter names: null or text of ≤ 500 characters;
* ``counted_at``: ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` with ``Z`` or ``±HH:MM``, read by
  ``datetime.fromisoformat``, at the start of a UTC hour, in [2000-01-01, 2100-01-01); each
  distinct text is parsed once;
* the route (``velocast_serving.api.predict.fast_answer``) serialises the response with orjson
  (the field order and values of ``PredictResponse``).

The body is read by ``velocast_serving.body.read_document`` (orjson for bodies up to 1 MiB), as
for the general path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final

import numpy as np

from velocast_serving.prediction import END_DATE, FIRST_DATE

MAX_COUNTER_ID_CHARS: Final = 200
MAX_COUNTER_NAME_CHARS: Final = 500
_INSTANT: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_SECONDS: Final = FIRST_DATE.value // 1_000_000_000
_END_SECONDS: Final = END_DATE.value // 1_000_000_000
_COUNTER_ID: Final = itemgetter("counter_id")
_COUNTED_AT: Final = itemgetter("counted_at")


@dataclass(frozen=True)
class CanonicalRecords:
    """The records of a fast-lane request, as columns."""

    counter_ids: list[str]
    utc_ns: np.ndarray  # int64 nanoseconds since the epoch
    counted_at_texts: list[str]  # each row's instant as the response writes it (UTC, ``Z``)


def canonical_records(records: list[Any]) -> CanonicalRecords | None:
    """The records as columns, or None when any of them is not for the fast lane."""
    # Exactly the keys: two entries (three with ``counter_name``), and all of them found.
    if not all(type(record) is dict and 2 <= len(record) <= 3 for record in records):
        return None
    try:
        counter_ids = list(map(_COUNTER_ID, records))
        texts = list(map(_COUNTED_AT, records))
        names = [record["counter_name"] for record in records if len(record) == 3]
        distinct = list(dict.fromkeys(texts))
    except (KeyError, TypeError):  # a key missing; an unhashable (so not text) date
        return None
    if not _plain_ids(counter_ids) or not _plain_names(names):
        return None
    seconds = [_utc_seconds(text) for text in distinct]
    if None in seconds:
        return None
    position = {text: i for i, text in enumerate(distinct)}
    rows = np.fromiter((position[text] for text in texts), np.intp, len(texts))
    distinct_seconds = np.array(seconds, dtype="datetime64[s]")
    # The response's text of each instant, as pydantic writes a UTC datetime.
    distinct_texts = np.char.add(np.datetime_as_string(distinct_seconds, unit="s"), "Z")
    return CanonicalRecords(
        counter_ids=counter_ids,
        utc_ns=distinct_seconds.astype("datetime64[ns]").view(np.int64)[rows],
        counted_at_texts=distinct_texts[rows].tolist(),
    )


def _plain_ids(counter_ids: list[Any]) -> bool:
    """Strings of 1-200 characters without surrounding whitespace (nothing to strip or refuse)."""
    try:
        distinct = list(dict.fromkeys(counter_ids))
    except TypeError:  # an unhashable value (a list, an object): not an id
        return False
    return all(
        type(value) is str
        and 0 < len(value) <= MAX_COUNTER_ID_CHARS
        and not value[0].isspace()
        and not value[-1].isspace()
        for value in distinct
    )


def _plain_names(names: list[Any]) -> bool:
    """Counter names the record shape accepts (null, or text of ≤ 500 characters): not used to predict."""
    try:
        distinct = list(dict.fromkeys(names))
    except TypeError:
        return False
    return all(
        name is None or (type(name) is str and len(name) <= MAX_COUNTER_NAME_CHARS) for name in distinct
    )


@lru_cache(maxsize=65_536)
def _utc_seconds(text: Any) -> int | None:
    """UTC epoch seconds of a fast-lane ``counted_at`` (the start of an hour, in range); None otherwise.

    Memoised: clients ask for the same hours again and again (the next day's, for every counter).
    """
    if type(text) is not str or not _INSTANT.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.microsecond:
        return None
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    if seconds % 3_600 or not _FIRST_SECONDS <= seconds < _END_SECONDS:
        return None
    return seconds


__all__ = ["CanonicalRecords", "canonical_records"]
