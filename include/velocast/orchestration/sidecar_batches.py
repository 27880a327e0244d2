"""Prediction records cut into ``POST /predict`` bodies that fit the sidecar's limits.

The sidecar refuses more than ``serving_max_records`` records (422) and bodies over
``serving_max_body_bytes`` (413). Each record is serialized once; a body is the records' JSON
joined inside the envelope, so its size is known exactly before it is sent. Records keep their
order across the batches. JSON is ASCII-only (``ensure_ascii``): a body's length in characters is
its length in bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from velocast.orchestration.sidecar_errors import PredictionRequestError


def _json_default(value: object) -> str:
    # Rows read from BigQuery carry datetimes; the sidecar reads ISO 8601 text.
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"a prediction record holds a {type(value).__name__}, which JSON cannot carry")


def to_json(value: object) -> str:
    """Compact, ASCII-only JSON (NaN refused: the sidecar would refuse it too)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_json_default)


def predict_bodies(
    records: Sequence[Mapping[str, Any]],
    *,
    max_records: int,
    max_body_bytes: int,
    model_type: str | None = None,
) -> Iterator[str]:
    """The JSON bodies of ``POST /predict`` for ``records``: each under both limits, in order.

    Greedy: a batch takes records until the next one would pass either limit, so ``N`` records
    with a record limit ``L`` (and small records) take ``ceil(N / L)`` requests.
    """
    if max_records < 1:
        raise ValueError("max_records must be >= 1")
    if not records:
        raise PredictionRequestError("no records to predict")
    prefix = '{"records":['
    suffix = "]" + ("" if model_type is None else f',"model_type":{to_json(model_type)}') + "}"
    envelope = len(prefix) + len(suffix)
    batch: list[str] = []
    size = envelope
    for position, record in enumerate(records):
        text = to_json(dict(record))
        added = len(text) + (1 if batch else 0)  # the comma before it
        if envelope + len(text) > max_body_bytes:
            raise PredictionRequestError(
                f"record {position} alone takes {envelope + len(text)} bytes, over the sidecar's body "
                f"limit of {max_body_bytes} bytes (serving_max_body_bytes)"
            )
        if batch and (len(batch) == max_records or size + added > max_body_bytes):
            yield prefix + ",".join(batch) + suffix
            batch, size = [], envelope
            added = len(text)
        batch.append(text)
        size += added
    yield prefix + ",".join(batch) + suffix


__all__ = ["predict_bodies", "to_json"]
