"""``POST /promote_champion`` (admin) and ``GET /model_summary`` (predict or admin)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, status
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError

from velocast.ml.registry import (
    ChampionTestModeError,
    RegistryConflictError,
    RegistryError,
    RegistryFormatError,
    UnknownEnvironmentError,
    UnknownRunError,
    normalize_env,
)
from velocast_serving.api.predict import champion_info
from velocast_serving.auth import AdminRole, PredictRole
from velocast_serving.context import Context
from velocast_serving.schemas import ModelSummary, PromoteRequest, PromoteResponse, ServingState

log = logging.getLogger(__name__)

router = APIRouter(tags=["admin"])

# Registry errors → the status a client can act on; never a 500.
_STATUS_OF: list[tuple[type[Exception], int]] = [
    (UnknownRunError, status.HTTP_404_NOT_FOUND),
    (ChampionTestModeError, status.HTTP_409_CONFLICT),
    (RegistryConflictError, status.HTTP_409_CONFLICT),
    (UnknownEnvironmentError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (RegistryFormatError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (RegistryError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (GoogleAPIError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (GoogleAuthError, status.HTTP_503_SERVICE_UNAVAILABLE),
    (OSError, status.HTTP_503_SERVICE_UNAVAILABLE),  # connection errors (requests' are OSErrors)
    (ValueError, status.HTTP_503_SERVICE_UNAVAILABLE),  # an entry of summary.json that does not validate
]
REGISTRY_ERRORS = tuple(kind for kind, _ in _STATUS_OF)


def registry_http_error(error: Exception) -> HTTPException:
    code = next(code for kind, code in _STATUS_OF if isinstance(error, kind))
    detail = str(error) if code < 500 else f"registry unavailable: {type(error).__name__}: {error}"
    return HTTPException(code, detail)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    403: {"description": "not an admin key"},
    404: {"description": "no entry with this run id and model type in the environment"},
    409: {"description": "a test-mode model cannot become a prod champion; or concurrent writers"},
    422: {"description": "malformed body or unknown environment / model type"},
    503: {"description": "the registry cannot be read or written"},
}


@router.post("/promote_champion", response_model=PromoteResponse, responses=_RESPONSES)
def promote_champion(body: PromoteRequest, context: Context, _role: AdminRole) -> PromoteResponse:
    store = context.store
    try:
        env = normalize_env(body.env if body.env is not None else store.env)
        result = store.registry.promote(env, body.model_type, body.run_id)
    except REGISTRY_ERRORS as error:
        raise registry_http_error(error) from error
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


_SUMMARY_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    503: {"description": "the registry cannot be read"},
}


@router.get("/model_summary", response_model=ModelSummary, responses=_SUMMARY_RESPONSES)
def model_summary(context: Context, _role: PredictRole) -> ModelSummary:
    store = context.store
    try:
        generation = store.registry.generation()
        entries = store.registry.entries(store.env)
    except REGISTRY_ERRORS as error:
        raise registry_http_error(error) from error
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
    )
