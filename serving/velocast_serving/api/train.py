"""``POST /train``, ``GET /train``, ``GET|DELETE /train/{job_id}`` and ``POST /evaluate`` (admin).

Training runs in a child process, one job at a time (``velocast_serving.jobs``): ``POST /train``
validates the request, starts the job and answers 202 with its id; a second one while a job runs
gets 409. ``POST /evaluate`` scores one registered model (the champion by default) in the request:
it predicts, it does not fit.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from google.api_core.exceptions import GoogleAPIError

from velocast.ml.models import ModelError
from velocast.ml.reference_data import BaselineError
from velocast.ml.registry import UnknownRunError
from velocast.ml.training import TrainingDataError, evaluate_registered
from velocast_serving.api.admin import REGISTRY_ERRORS, registry_http_error
from velocast_serving.auth import AdminRole
from velocast_serving.context import Context
from velocast_serving.jobs import JobBusyError
from velocast_serving.model_store import ModelLoadError
from velocast_serving.schemas import (
    EvaluateBody,
    EvaluateResponse,
    TrainAccepted,
    TrainBody,
    TrainJobList,
    TrainJobStatus,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["training"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    403: {"description": "not an admin key"},
}


@router.post(
    "/train",
    response_model=TrainAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_AUTH
    | {
        409: {"description": "a training job is running: one at a time"},
        422: {"description": "malformed request (unknown model type, bad hyperparams, bad window...)"},
        503: {"description": "the job could not be started"},
    },
)
def start_training(body: TrainBody, context: Context, _role: AdminRole, response: Response) -> TrainAccepted:
    request = body.for_env(context.store.env)
    try:
        started = context.jobs.submit(request, context.settings)
    except JobBusyError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error), headers={"Retry-After": "60"}) from error
    except OSError as error:
        log.exception("cannot start a training job")
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"cannot start the training process: {error}"
        ) from error
    url = f"/train/{started['job_id']}"
    response.headers["Location"] = url
    return TrainAccepted(
        job_id=started["job_id"],
        status=started["status"],
        status_url=url,
        submitted_at=started["submitted_at"],
        request=started["request"],
    )


@router.get("/train", response_model=TrainJobList, responses=_AUTH)
def list_training_jobs(context: Context, _role: AdminRole) -> TrainJobList:
    running = context.jobs.current()
    return TrainJobList(
        running=None if running is None else running["job_id"],
        jobs=[TrainJobStatus.of(job) for job in context.jobs.recent()],
    )


@router.get(
    "/train/{job_id}",
    response_model=TrainJobStatus,
    responses=_AUTH | {404: {"description": "no job with this id (ids are 32 hex digits)"}},
)
def training_job(job_id: str, context: Context, _role: AdminRole) -> TrainJobStatus:
    return _job_status(job_id, context.jobs.get(job_id))


@router.delete(
    "/train/{job_id}",
    response_model=TrainJobStatus,
    responses=_AUTH | {404: {"description": "no job with this id"}},
)
def cancel_training_job(job_id: str, context: Context, _role: AdminRole) -> TrainJobStatus:
    """Stop a queued or running job (its process group); a finished job is returned unchanged."""
    return _job_status(job_id, context.jobs.cancel(job_id))


def _job_status(job_id: str, found: dict[str, Any] | None) -> TrainJobStatus:
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no training job {job_id!r}")
    return TrainJobStatus.of(found)


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    responses=_AUTH
    | {
        404: {"description": "no champion, or no entry with this run id, in the environment"},
        422: {"description": "malformed request, or data that cannot be scored (missing baseline...)"},
        503: {"description": "the registry, the model or BigQuery cannot be read"},
    },
)
def evaluate(body: EvaluateBody, context: Context, _role: AdminRole) -> EvaluateResponse:
    request = body.for_env(context.store.env)
    try:
        result = evaluate_registered(
            request, context.settings, registry=context.store.registry, load=context.store.load_entry
        )
    except UnknownRunError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    except (TrainingDataError, BaselineError, ModelError) as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    except ModelLoadError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from error
    except GoogleAPIError as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"BigQuery or GCS unavailable: {type(error).__name__}: {error}",
        ) from error
    except REGISTRY_ERRORS as error:
        raise registry_http_error(error) from error
    return EvaluateResponse(**result)
