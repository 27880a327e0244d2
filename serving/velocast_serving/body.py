"""Reading a ``/predict`` body with bounded time and memory, whatever a client sends.

FastAPI would parse the whole JSON body and validate every record before the route could count
them: 350 000 empty objects (a 1 MiB body) cost seconds and ~900 MB before the 422. Here:

1. ``check_value_budget``: before parsing, an upper bound of the JSON values the body holds (every
   value but the first follows a ``,``, a ``[`` or a ``{``: counting those bytes is a C loop) is held
   to ``VALUES_PER_RECORD`` per allowed record. The parsed objects stay a few tens of MB at most.
2. ``parse_json``: orjson parses bodies up to ``ORJSON_MAX_BYTES`` (its document buffer takes ~12×
   the body: a dozen MB at most) unless the body holds a run of 20 digits (orjson reads an integer
   beyond 64 bits as a float; the standard library keeps it exact); the standard library parses
   the rest, and what orjson refuses, so that the 422 quotes its reason. Its transient memory stays
   near the body's size. NaN and Infinity, which are not JSON, are refused, and so is nesting
   beyond the interpreter's recursion limit.
3. ``records`` is counted before any record is validated: too many is one ``too_long`` error.
4. Records are validated in chunks; validation stops once ``MAX_REPORTED_ERRORS`` errors are
   known, so a body of invalid records costs no more than the errors it reports.

The route runs all this in the thread pool: the event loop only receives the bytes. Unauthenticated
bodies are never read at all (``velocast_serving.main.AuthenticateBodiesMiddleware``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from velocast_serving.errors import MAX_REPORTED_ERRORS
from velocast_serving.records import PredictionRecord
from velocast_serving.schemas import PredictRequest

# A record holds at most ~20 values (a raw-export row's 16 columns, a nested coordinates object).
# The budget is per request (records × this): a full request of the widest rows still fits, while
# parsing the most a body may hold stays around 60 ms of one core (the parser holds the GIL).
VALUES_PER_RECORD: Final = 24
VALUE_BUDGET_FLOOR: Final = 1024
CHUNK_RECORDS: Final = 512
ORJSON_MAX_BYTES: Final = 1 << 20
_LONG_INTEGER: Final = re.compile(rb"\d{20}")

_RECORDS: Final = TypeAdapter(list[PredictionRecord])

Errors = list[dict[str, Any]]


def _refuse(errors: Errors) -> RequestValidationError:
    return RequestValidationError(errors)


def value_budget(max_records: int) -> int:
    """The most JSON values a body may hold when ``max_records`` records are allowed."""
    return max(VALUE_BUDGET_FLOOR, max_records * VALUES_PER_RECORD)


def json_value_bound(raw: bytes) -> int:
    """An upper bound of the JSON values in ``raw`` (strings' commas and brackets count too)."""
    return 1 + raw.count(b",") + raw.count(b"[") + raw.count(b"{")


def check_value_budget(raw: bytes, max_records: int) -> None:
    """422 ``too_many_values`` for a body that holds more values than its records could."""
    bound, budget = json_value_bound(raw), value_budget(max_records)
    if bound > budget:
        message = (
            f"the body holds up to {bound} JSON values; at most {budget} are read "
            f"({VALUES_PER_RECORD} per record, {max_records} records): split the request"
        )
        raise _refuse([{"type": "too_many_values", "loc": ("body",), "msg": message}])


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """The JSON document of ``raw``; 422 ``json_invalid`` (with the parser's reason) otherwise."""
    if len(raw) <= ORJSON_MAX_BYTES and not _LONG_INTEGER.search(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard parser says why (or reads what orjson would not, 1e400 say)
    if not raw.strip():
        raise _refuse([{"type": "missing", "loc": ("body",), "msg": "a JSON body is required"}])
    try:
        return json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        reason = str(error)
    raise _refuse([{"type": "json_invalid", "loc": ("body",), "msg": f"invalid JSON: {reason}"}])


def checked_top_level(document: Any, max_records: int) -> tuple[PredictRequest, list[Any]]:
    """The request without its records, and the records list: counted, not validated yet."""
    if not isinstance(document, dict):
        raise _refuse(
            [{"type": "model_attributes_type", "loc": ("body",), "msg": "the body is a JSON object"}]
        )
    errors: Errors = []
    shell: PredictRequest | None = None
    # The other fields (model_type...) are few and small: the model validates them, records aside.
    try:
        shell = PredictRequest.model_validate({**document, "records": []})
    except ValidationError as error:
        errors += [
            dict(item) | {"loc": ("body", *item["loc"])}
            for item in error.errors(include_url=False, include_input=False, include_context=False)
        ]
    records = document.get("records")
    if "records" not in document:
        errors.append({"type": "missing", "loc": ("body", "records"), "msg": "Field required"})
    elif not isinstance(records, list):
        errors.append(
            {"type": "list_type", "loc": ("body", "records"), "msg": "Input should be a valid list"}
        )
    elif len(records) > max_records:
        message = f"at most {max_records} records per request, got {len(records)}: split the request"
        errors.append({"type": "too_long", "loc": ("body", "records"), "msg": message})
    if errors:
        raise _refuse(errors)
    assert shell is not None and isinstance(records, list)
    return shell, records


def _validated_records(records: list[Any]) -> list[Any]:
    """Each record validated by its shape, chunk by chunk, stopping after the errors worth reporting."""
    validated: list[Any] = []
    errors: Errors = []
    checked = 0
    for start in range(0, len(records), CHUNK_RECORDS):
        chunk = records[start : start + CHUNK_RECORDS]
        checked = start + len(chunk)
        try:
            validated += _RECORDS.validate_python(chunk)
        except ValidationError as error:
            for item in error.errors(include_url=False, include_input=False, include_context=False):
                position, *rest = item["loc"]
                errors.append(dict(item) | {"loc": ("body", "records", start + int(position), *rest)})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
    if not errors:
        return validated
    shown = MAX_REPORTED_ERRORS - 1  # and one line that says what was left out
    if len(errors) > MAX_REPORTED_ERRORS or checked < len(records):
        message = f"{len(errors) - shown} more errors in the first {checked} records"
        if checked < len(records):
            message += f"; the {len(records) - checked} records after them not checked"
        truncated = {"type": "truncated", "loc": ("body", "records"), "msg": message}
        errors = [*errors[:shown], truncated]
    raise _refuse(errors)


def read_document(raw: bytes, max_records: int) -> tuple[PredictRequest, list[Any]]:
    """The request's top-level fields and its records (counted, not validated), or the 422."""
    check_value_budget(raw, max_records)
    return checked_top_level(parse_json(raw), max_records)


def read_predict_request(raw: bytes, max_records: int) -> PredictRequest:
    """``raw`` as a ``PredictRequest``, or a ``RequestValidationError`` (422) saying why not."""
    return validated_request(*read_document(raw, max_records))


def validated_request(shell: PredictRequest, records: list[Any]) -> PredictRequest:
    """``shell`` with its records validated by their shapes (422 naming each bad one)."""
    return shell.model_copy(update={"records": _validated_records(records)})


__all__ = [
    "ORJSON_MAX_BYTES",
    "VALUES_PER_RECORD",
    "check_value_budget",
    "checked_top_level",
    "json_value_bound",
    "parse_json",
    "read_document",
    "read_predict_request",
    "validated_request",
    "value_budget",
]
