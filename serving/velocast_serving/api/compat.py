"""``POST /compat/predict``: the original system's prediction route, for its existing clients.

The system this project replaces answered ``{"predictions": [numbers], "model_metadata": {...}}``
to bodies such as ``{"records": [raw-export rows], "model_type": "rf", "metric": "r2"}``. Its
clients change only their base URL (``…/compat``) and their key: the body is the one ``/predict``
takes (``PredictRequest``, read the same way: ``velocast_serving.body``, off the event loop), and the
same predict-role keys are accepted (``X-API-Key`` or ``Authorization: Bearer``).

What differs from the original: ``metric`` does not choose the model. The champion of the type
(the deployment rule's choice; without one, the best entry by R²) answers, and ``model_metadata``
reports its test_current value for the metric. Counters known by name only are resolved through the
names the model was trained on; those that do not resolve are listed and still predicted.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from velocast_serving.api.deps import (
    PREDICT_REQUEST_BODY,
    PREDICT_RESPONSES,
    Context,
    PredictRole,
    json_response,
)
from velocast_serving.body import read_predict_request
from velocast_serving.context import ServingContext
from velocast_serving.prediction import predict_request
from velocast_serving.schemas import CompatModelMetadata, CompatPredictResponse

router = APIRouter(prefix="/compat", tags=["compat"])


def compat_answer(raw: bytes, context: ServingContext) -> CompatPredictResponse:
    """The original system's response to the body ``raw`` (blocking: parsing, validation, model)."""
    body = read_predict_request(raw, context.settings.serving_max_records)
    served = predict_request(body, context)
    entry, report = served.loaded.entry, served.report
    metadata = CompatModelMetadata(
        model_type=entry.model_type,
        run_id=entry.run_id,
        model_uri=entry.model_uri,
        metric=served.metric.name,
        metric_value=served.metric.value,
        is_champion=entry.is_champion,
        env=served.env,
        loaded_at=served.loaded.loaded_at,
        unseen_counters=list(report.unseen_counters),
        unseen_counter_rows=report.unseen_counter_rows,
        unresolved_counter_names=served.unresolved_names,
    )
    # Our own model made these numbers: no need to validate 10k floats again.
    return CompatPredictResponse.model_construct(predictions=report.values.tolist(), model_metadata=metadata)


@router.post(
    "/predict",
    response_model=CompatPredictResponse,
    responses=PREDICT_RESPONSES,
    openapi_extra=PREDICT_REQUEST_BODY,
)
async def compat_predict(request: Request, context: Context, _role: PredictRole) -> Response:
    """The original system's ``/predict``: one number per record, in order, and ``model_metadata``.

    The body is ``/predict``'s (raw-export rows with French column names included; a counter may be
    given by ``nom_du_compteur`` only). ``metric`` (r2, rmse or mae; default r2) is reported, with the
    serving model's test_current value: it does not choose the model, the type's champion answers.
    Names that do not resolve to one counter are in ``model_metadata.unresolved_counter_names`` and
    their rows are predicted as an unseen counter.
    """
    raw = await request.body()  # bounded by serving_max_body_bytes; the key was checked first
    # Serialised in the thread pool too: 10 000 numbers would hold the event loop otherwise.
    return await run_in_threadpool(lambda: json_response(compat_answer(raw, context)))
