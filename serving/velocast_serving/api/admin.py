"""``POST /promote_champion`` (admin) and ``GET /model_summary`` (predict or admin).

The promotion is ``velocast.ml.promotion.promote_champion``, the same as ``velocast promote``: the
registry, then the MLflow alias (MLflow unreachable: 503 and nothing written; see that module).
"""

from __future__ import annotations

import os

from fastapi import APIRouter

from velocast.ml import promotion
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
from velocast_serving.errors import DependencyUnavailableError
from velocast_serving.schemas import (
    ModelSummary,
    PromoteRequest,
    PromoteResponse,
    ServingState,
    WorkerServing,
)

router = APIRouter(tags=["admin"])

_PROMOTE_RESPONSES: Responses = ADMIN_ONLY | {
    404: {"description": "no entry with this run id and model type in the environment"},
    409: {
        "description": "a test-mode model cannot become a prod champion; a REJECTed model needs "
        "override_rejection and a reason; MLflow lacks the entry's version; or concurrent writers"
    },
    422: {"description": "malformed body, unknown environment / model type, an override without reason"},
    503: {
        "description": "the registry cannot be reached, read or written (`registry unavailable: …`); "
        "or MLflow did not answer (nothing promoted) or did not move the alias (repeat the call)"
    },
}


@router.post("/promote_champion", response_model=PromoteResponse, responses=_PROMOTE_RESPONSES)
def promote_champion(body: PromoteRequest, context: Context, _role: AdminRole) -> PromoteResponse:
    store = context.store
    try:
        with calling("registry"):
            env = normalize_env(body.env if body.env is not None else store.env)
            promoted = promotion.promote_champion(
                context.settings,
                env,
                body.model_type,
                body.run_id,
                override_rejection=body.override_rejection,
                reason=body.reason,
                by=body.requested_by or "admin API key",
                via="api",
                registry=store.registry,
            )
    except DependencyUnavailableError as error:
        # MLflow's failures say already what happened to the registry: answered as they are.
        if isinstance(error.__cause__, promotion.AliasMirrorError):
            raise error.__cause__ from None
        raise
    result = promoted.registry
    serving = None
    if env == store.env:
        # This worker serves the new champion before answering; the others within an interval.
        store.refresh(force=True)
        snapshot = store.snapshot
        loaded = snapshot.models.get(body.model_type)
        error_text = snapshot.errors.get(body.model_type)
        serving = ServingState(
            model_type=body.model_type,
            run_id=loaded.entry.run_id if loaded is not None else None,
            error=error_text,
            reason=snapshot.unserved.get(body.model_type) or ("model_load_failed" if error_text else None),
        )
    return PromoteResponse(
        status=result.status.value,
        message=result.message,
        env=env,
        champion=result.champion.to_dict(),
        previous_champion=result.previous_champion.to_dict() if result.previous_champion else None,
        serving=serving,
        promotion=result.record,
        alias=promoted.alias,
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
