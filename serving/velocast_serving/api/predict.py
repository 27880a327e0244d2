"""``POST /predict``: hourly counts for the posted records, from the champion of a model type."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError

from velocast_serving.api.deps import UNAUTHORIZED, Context, PredictRole, Responses, champion_info
from velocast_serving.model_store import LoadedModel, StoreSnapshot
from velocast_serving.prediction import records_frame
from velocast_serving.schemas import PredictionOut, PredictRequest, PredictResponse

router = APIRouter(tags=["predict"])


def _serving_model(snapshot: StoreSnapshot, model_type: str | None) -> LoadedModel:
    chosen = model_type or snapshot.default_model_type
    if chosen is None or not snapshot.ready:
        reason = "; ".join(snapshot.errors.values()) or f"no model in the {snapshot.env} registry"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no champion is loaded: {reason}")
    loaded = snapshot.models.get(chosen)
    if loaded is None:
        error = snapshot.errors.get(chosen)
        detail = f"no {chosen!r} model is loaded for env {snapshot.env}"
        detail += f": {error}" if error else f" (loaded types: {', '.join(sorted(snapshot.models))})"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail)
    return loaded


_RESPONSES: Responses = UNAUTHORIZED | {
    403: {"description": "the key's role may not predict"},
    404: {"description": "no model of the requested type is loaded"},
    413: {"description": "body larger than serving_max_body_bytes"},
    422: {"description": "malformed body, too many records, or records that cannot be read"},
    503: {"description": "no champion is loaded yet"},
}


@router.post("/predict", response_model=PredictResponse, responses=_RESPONSES)
def predict(body: PredictRequest, context: Context, _role: PredictRole) -> PredictResponse:
    limit = context.settings.serving_max_records
    if len(body.records) > limit:
        message = f"at most {limit} records per request, got {len(body.records)}: split the request"
        raise RequestValidationError([{"type": "too_long", "loc": ("body", "records"), "msg": message}])
    snapshot = context.store.snapshot  # one snapshot for the whole request, whatever reloads meanwhile
    loaded = _serving_model(snapshot, body.model_type)
    frame = records_frame(body.records)  # unreadable records: a 422 naming each one
    report = loaded.model.predict_with_report(frame)
    context.metrics.predictions.labels(loaded.entry.model_type).inc(len(frame))
    # Our own frame and model made these values: validating 10k rows again would only cost time.
    predictions = [
        PredictionOut.model_construct(counter_id=counter, counted_at=at, predicted_count=value)
        for counter, at, value in zip(
            frame["counter_id"].tolist(),
            frame["counted_at"].tolist(),
            report.values.tolist(),
            strict=True,
        )
    ]
    return PredictResponse(
        predictions=predictions,
        champion=champion_info(loaded, snapshot.env),
        unseen_counters=list(report.unseen_counters),
        unseen_counter_rows=report.unseen_counter_rows,
        school_holiday_unknown_rows=report.school_holiday_unknown_rows,
    )
