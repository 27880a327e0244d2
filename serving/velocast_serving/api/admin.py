"""``POST /promote_champion`` (admin) and ``GET /model_summary`` (predict or admin)."""

from __future__ import annotations

import os

from fastapi import APIRouter

from velocast.ml.registry_entries import normalize_env
from velocast_serving.api.deps import (
    ADMIN_ONLY,
    REGISTRY_UNAVAILABLE,
    UNAUTHORIZED,
    AdminRole,
    Context,
    PredictRole,
    Responses,
    calling,
    champion_info,
)
from velocast_serving.schemas import (
    ModelSummary,
    PromoteRequest,
    PromoteResponse,
    ServingState,
    WorkerServing,
)

router = APIRouter(tags=["admin"])

_PROMOTE_RESPONSES: Responses = (
    ADMIN_ONLY
    | {
        404: {"description": "no entry with this run id and model type in the environment"},
        409: {"description": "a test-mode model cannot become a prod champion; or concurrent writers"},
        422: {"description": "malformed body or unknown environment / model type"},
    }
    | REGISTRY_UNAVAILABLE
)


@router.post("/promote_champion", response_model=PromoteResponse, responses=_PROMOTE_RESPONSES)
def promote_champion(body: PromoteRequest, context: Context, _role: AdminRole) -> PromoteResponse:
    store = context.store
    with calling("registry"):
        env = normalize_env(body.env if body.env is not None else store.env)
        result = store.registry.promote(env, body.model_type, body.run_id)
    serving = None
    if env == store.env:
        # This worker serves the new champion before answering; the others within an interval.
        store.refresh(force=True)
        snapshot = store.snapshot
        loaded = snapshot.models.get(body.model_type)
        serving = ServingState(
            model_type=body.model_type,
            run_id=loaded.entry.run_id if loaded is not None else None,
            error=snapshot.errors.get(body.model_type),
        )
    return PromoteResponse(
        status=result.status.value,
        message=result.message,
        env=env,
        champion=result.champion.to_dict(),
        previous_champion=result.previous_champion.to_dict() if result.previous_champion else None,
        serving=serving,
    )


@router.get("/model_summary", response_model=ModelSummary, responses=UNAUTHORIZED | REGISTRY_UNAVAILABLE)
def model_summary(context: Context, _role: PredictRole) -> ModelSummary:
    store = context.store
    with calling("registry"):
        generation = store.registry.generation()
        entries = store.registry.entries(store.env)
    snapshot = store.snapshot
    return ModelSummary(
        env=store.env,
        registry=store.registry.uri,
        generation=generation,
        entries=[entry.to_dict() for entry in entries],
        loaded={t: champion_info(m, store.env) for t, m in snapshot.models.items()},
        default_model_type=snapshot.default_model_type,
        errors=dict(snapshot.errors),
        checked_at=snapshot.checked_at,
        worker_pid=os.getpid(),
        workers=context.settings.serving_workers,
        workers_serving=[WorkerServing.model_validate(line) for line in context.workers.read()],
    )
