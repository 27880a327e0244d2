"""``GET /health`` (liveness), ``GET /ready`` (a champion is loaded) and ``GET /metrics``; no auth."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from velocast_serving.api.deps import Context
from velocast_serving.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
def health() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
def ready(context: Context) -> ReadyResponse | JSONResponse:
    snapshot = context.store.snapshot
    body = ReadyResponse(
        status="ready" if snapshot.ready else "not_ready",
        env=snapshot.env,
        champions={t: m.entry.run_id for t, m in snapshot.models.items()},
        errors=dict(snapshot.errors),
    )
    if snapshot.ready:
        return body
    if snapshot.errors:
        body.reason = "; ".join(f"{key}: {error}" for key, error in snapshot.errors.items())
    elif snapshot.generation is None:
        body.reason = "the registry has not been read yet"
    else:
        body.reason = f"no model in the {snapshot.env} registry ({context.settings.registry_object})"
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(context: Context) -> Response:
    return Response(context.metrics.exposition(), media_type=context.metrics.content_type)
