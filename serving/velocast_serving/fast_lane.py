"""The fast lane of ``/predict``: warehouse-shaped records as columns, no per-record objects.

Most clients post ``{"counter_id": …, "counted_at": "2024-01-01T10:00:00Z"}`` records. For those,
validating each record into a pydantic model and normalising a frame with pandas cost ~10 ms for
one record, ~100× the model. This lane takes a request only when *every* record is that shape and
nothing in it needs the general path's judgement; anything else (another shape, an extra key,
surrounding spaces, a naive or off-the-hour time, a date the parser refuses, a date out of range)
goes down the general path unchanged (``velocast_serving.body`` and ``velocast_serving.prediction``),
which answers exactly as before, 422 reasons included. So the lane only ever answers requests the
general path would answer with a 200, and answers them the same (held equal in
``tests/serving/test_fast_lane.py``):

* counter ids: strings of 1-200 characters without surrounding whitespace (pydantic's strip and
  ``normalize``'s would leave them as they are);
* ``counted_at``: ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` with ``Z`` or ``±HH:MM``, read by
  ``datetime.fromisoformat``, at the start of a UTC hour, in [2000-01-01, 2100-01-01); each
  distinct text is parsed once;
* the response is serialised by orjson from lists (field order and values of ``PredictResponse``).

Bodies up to ``ORJSON_MAX_BYTES`` are parsed by orjson (a 1 MiB body costs a dozen MB at most);
a body orjson refuses goes to the standard library's parser, whose message the 422 quotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import orjson
from fastapi import Response

from velocast_serving.api.deps import champion_info
from velocast_serving.body import check_value_budget, checked_top_level, parse_json
from velocast_serving.context import ServingContext
from velocast_serving.prediction import END_DATE, FIRST_DATE, metric_report, serving_model
from velocast_serving.schemas import PredictRequest

ORJSON_MAX_BYTES: Final = 1 << 20
MAX_COUNTER_ID_CHARS: Final = 200
CANONICAL_KEYS: Final = frozenset({"counter_id", "counted_at"})
_INSTANT: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_NS: Final = FIRST_DATE.value
_END_NS: Final = END_DATE.value
_HOUR_NS: Final = 3_600 * 1_000_000_000


@dataclass(frozen=True)
class CanonicalRecords:
    """The records of a fast-lane request, as columns."""

    counter_ids: list[str]
    utc_ns: np.ndarray  # int64 nanoseconds since the epoch
    counted_at_texts: list[str]  # each row's instant as the response writes it (UTC, ``Z``)


def read_document(raw: bytes, max_records: int) -> tuple[PredictRequest, list[Any]]:
    """The request's top-level fields and its records (counted, not validated); 422 as the body's rules."""
    check_value_budget(raw, max_records)
    document: Any = None
    if len(raw) <= ORJSON_MAX_BYTES:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = None  # the standard parser says why (or reads what orjson would not)
    if document is None:
        document = parse_json(raw)
    return checked_top_level(document, max_records)


def canonical_records(records: list[Any]) -> CanonicalRecords | None:
    """The records as columns, or None when any of them is not for the fast lane."""
    if not all(type(record) is dict and record.keys() == CANONICAL_KEYS for record in records):
        return None
    counter_ids = [record["counter_id"] for record in records]
    texts = [record["counted_at"] for record in records]
    if not all(
        type(value) is str and 0 < len(value) <= MAX_COUNTER_ID_CHARS and value == value.strip()
        for value in counter_ids
    ):
        return None
    instants: dict[str, tuple[int, str]] = {}
    for text in dict.fromkeys(texts):
        instant = _instant(text)
        if instant is None:
            return None
        instants[text] = instant
    pairs = [instants[text] for text in texts]
    return CanonicalRecords(
        counter_ids=counter_ids,
        utc_ns=np.fromiter((pair[0] for pair in pairs), np.int64, len(pairs)),
        counted_at_texts=[pair[1] for pair in pairs],
    )


def _instant(text: Any) -> tuple[int, str] | None:
    """UTC epoch nanoseconds and the response's text of a fast-lane ``counted_at``; None otherwise."""
    if type(text) is not str or not _INSTANT.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    nanoseconds = ((moment - _EPOCH) // timedelta(microseconds=1)) * 1_000
    if nanoseconds % _HOUR_NS or not _FIRST_NS <= nanoseconds < _END_NS:
        return None
    return nanoseconds, moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fast_answer(shell: PredictRequest, columns: CanonicalRecords, context: ServingContext) -> Response:
    """The ``PredictResponse`` of a fast-lane request, serialised."""
    snapshot = context.store.snapshot  # one snapshot for the whole request, whatever reloads meanwhile
    loaded = serving_model(snapshot, shell.model_type)
    report = loaded.model.predict_columns(columns.counter_ids, columns.utc_ns)
    context.metrics.predictions.labels(loaded.entry.model_type).inc(len(columns.counter_ids))
    predictions = [
        {"counter_id": counter, "counted_at": at, "predicted_count": value}
        for counter, at, value in zip(
            columns.counter_ids, columns.counted_at_texts, report.values.tolist(), strict=True
        )
    ]
    body = {
        "predictions": predictions,
        "champion": champion_info(loaded, snapshot.env).model_dump(mode="json"),
        "unseen_counters": list(report.unseen_counters),
        "unseen_counter_rows": report.unseen_counter_rows,
        "school_holiday_unknown_rows": report.school_holiday_unknown_rows,
        "unresolved_counter_names": [],
        "metric": metric_report(loaded.entry, shell.metric).model_dump(mode="json"),
    }
    return Response(orjson.dumps(body), media_type="application/json")


__all__ = ["ORJSON_MAX_BYTES", "CanonicalRecords", "canonical_records", "fast_answer", "read_document"]
