"""``GET /health`` (liveness), ``GET /ready`` (a champion is loaded) and ``GET /metrics``; no auth.

Open routes say what state the worker is in, never why in detail: an error's text can name buckets,
object paths, model URIs or service accounts. ``/ready`` gives short reason codes; the details are
in the logs and on ``GET /model_summary`` (a key is needed).
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from velocast_serving.api.deps import Context
from velocast_serving.model_store import REGISTRY_ERROR_KEY, StoreSnapshot
from velocast_serving.schemas import HealthResponse, ReadyReason, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
def health() -> HealthResponse:
    return HealthResponse(status="ok")


# The first of these that occurs is the reason a worker is not ready.
_REASON_ORDER: tuple[ReadyReason, ...] = (
    "registry_unavailable",
    "model_load_failed",
    "only_rejected",
    "only_test_mode",
)


def _error_code(key: str, snapshot: StoreSnapshot) -> ReadyReason:
    if key == REGISTRY_ERROR_KEY:
        return "registry_unavailable"
    # A type with entries but none it may serve (only REJECTed ones...) is not a failed load.
    return snapshot.unserved.get(key, "model_load_failed")


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
def ready(context: Context) -> ReadyResponse | JSONResponse:
    snapshot = context.store.snapshot
    errors = {key: _error_code(key, snapshot) for key in snapshot.errors}
    body = ReadyResponse(
        status="ready" if snapshot.ready else "not_ready",
        env=snapshot.env,
        champions={t: m.entry.run_id for t, m in snapshot.models.items()},
        errors=errors,
    )
    if snapshot.ready:
        return body
    if errors:
        body.reason = min(errors.values(), key=_REASON_ORDER.index)
    elif snapshot.generation is None:
        body.reason = "registry_not_read"
    else:
        body.reason = "no_model"
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(context: Context) -> Response:
    return Response(context.metrics.exposition(), media_type=context.metrics.content_type)
