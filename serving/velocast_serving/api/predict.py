"""``POST /predict``: hourly counts for the posted records, from the champion of a model type.

The route reads the body itself (``velocast_serving.body``) rather than letting FastAPI parse and
validate it on the event loop: the records are counted before any is validated, and the parsing,
validation and prediction run in the thread pool. The request schema is still documented
(``openapi_extra``, its component added by ``velocast_serving.openapi``).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from velocast_serving.api.deps import (
    PREDICT_REQUEST_BODY,
    PREDICT_RESPONSES,
    Context,
    PredictRole,
    champion_info,
    json_response,
)
from velocast_serving.body import read_document, validated_request
from velocast_serving.context import ServingContext
from velocast_serving.fast_lane import CanonicalRecords, canonical_records
from velocast_serving.prediction import metric_report, predict_request, serving_model
from velocast_serving.schemas import PredictionOut, PredictRequest, PredictResponse

router = APIRouter(tags=["predict"])


# A body this small is read on the event loop, and answered there when it is for the fast lane: the
# answer takes less time than handing it to a worker thread and back (~0.1 ms each way).
INLINE_BODY_BYTES: Final = 8 * 1024


def answer(raw: bytes, context: ServingContext) -> Response:
    """The response to the body ``raw`` (blocking: parsing, validation and the model)."""
    shell, records = read_document(raw, context.settings.serving_max_records)
    return answer_records(shell, records, canonical_records(records), context)


def answer_records(
    shell: PredictRequest, records: list[Any], columns: CanonicalRecords | None, context: ServingContext
) -> Response:
    """The response to read records: the fast lane's when ``columns`` holds them, else the general path's."""
    if columns is not None:
        return fast_answer(shell, columns, context)
    return json_response(predict_records(validated_request(shell, records), context))


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


def predict_records(body: PredictRequest, context: ServingContext) -> PredictResponse:
    served = predict_request(body, context)  # unreadable records: a 422 naming each one
    report = served.report
    # Our own frame and model made these values: validating 10k rows again would only cost time.
    predictions = [
        PredictionOut.model_construct(counter_id=counter, counted_at=at, predicted_count=value)
        for counter, at, value in zip(
            served.counter_ids(),
            served.frame["counted_at"].tolist(),
            report.values.tolist(),
            strict=True,
        )
    ]
    return PredictResponse(
        predictions=predictions,
        champion=champion_info(served.loaded, served.env),
        unseen_counters=list(report.unseen_counters),
        unseen_counter_rows=report.unseen_counter_rows,
        school_holiday_unknown_rows=report.school_holiday_unknown_rows,
        unresolved_counter_names=served.unresolved_names,
        metric=served.metric,
    )


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=PREDICT_RESPONSES,
    openapi_extra=PREDICT_REQUEST_BODY,
)
async def predict(request: Request, context: Context, _role: PredictRole) -> Response:
    """One prediction per record, in order (at most ``serving_max_records`` records).

    Records come in the shapes of ``PredictRequest``; records that cannot be read are a 422 naming
    each one (by its position), and nothing is predicted. Raw-export rows (the original system's
    payloads) are accepted: a counter given by its name only is resolved through the names the model
    was trained on; a name that does not resolve (unknown, shared by several counters, or a model
    without names) is listed in ``unresolved_counter_names`` and its rows are still predicted, as an
    unseen counter (``counter_id`` null). ``metric`` is reported (``metric``: the serving model's
    test_current value), it does not choose the model: the type's champion answers.
    """
    raw = await request.body()  # bounded by serving_max_body_bytes; the key was checked first
    if len(raw) > INLINE_BODY_BYTES:
        return await run_in_threadpool(answer, raw, context)
    shell, records = read_document(raw, context.settings.serving_max_records)  # small: read here
    columns = canonical_records(records)
    if columns is not None:
        return fast_answer(shell, columns, context)
    return await run_in_threadpool(answer_records, shell, records, None, context)
