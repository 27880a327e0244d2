"""``POST /train``, ``GET /train``, ``GET|DELETE /train/{job_id}`` and ``POST /evaluate`` (admin).

Training runs in a child process, one job at a time (``velocast_serving.jobs``): ``POST /train``
validates the request, starts the job and answers 202 with its id; a second one while a job runs
gets 409. ``POST /evaluate`` scores one registered model (the champion by default) in the request:
it predicts, it does not fit.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from velocast.ml.training import evaluate_registered
from velocast_serving.api.deps import ADMIN_ONLY, AdminRole, Context, calling, job_status_or_404
from velocast_serving.schemas import (
    EvaluateBody,
    EvaluateResponse,
    TrainAccepted,
    TrainBody,
    TrainJobList,
    TrainJobStatus,
)

router = APIRouter(tags=["training"])


@router.post(
    "/train",
    response_model=TrainAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=ADMIN_ONLY
    | {
        409: {"description": "a training job is running: one at a time"},
        422: {"description": "malformed request (unknown model type, bad hyperparams, bad window...)"},
        503: {"description": "the job could not be started (`dependency unavailable: …`)"},
    },
)
def start_training(body: TrainBody, context: Context, _role: AdminRole, response: Response) -> TrainAccepted:
    request = body.for_env(context.store.env)
    started = context.jobs.submit(request, context.settings)  # JobBusyError: 409 with Retry-After
    url = f"/train/{started['job_id']}"
    response.headers["Location"] = url
    return TrainAccepted(
        job_id=started["job_id"],
        status=started["status"],
        status_url=url,
        submitted_at=started["submitted_at"],
        request=started["request"],
    )


@router.get("/train", response_model=TrainJobList, responses=ADMIN_ONLY)
def list_training_jobs(context: Context, _role: AdminRole) -> TrainJobList:
    running = context.jobs.current()
    return TrainJobList(
        running=None if running is None else running["job_id"],
        jobs=[TrainJobStatus.of(job) for job in context.jobs.recent()],
    )


@router.get(
    "/train/{job_id}",
    response_model=TrainJobStatus,
    responses=ADMIN_ONLY | {404: {"description": "no job with this id (ids are 32 hex digits)"}},
)
def training_job(job_id: str, context: Context, _role: AdminRole) -> TrainJobStatus:
    return job_status_or_404(job_id, context.jobs.get(job_id))


@router.delete(
    "/train/{job_id}",
    response_model=TrainJobStatus,
    responses=ADMIN_ONLY | {404: {"description": "no job with this id"}},
)
def cancel_training_job(job_id: str, context: Context, _role: AdminRole) -> TrainJobStatus:
    """Stop a queued or running job (its process group); a finished job is returned unchanged."""
    return job_status_or_404(job_id, context.jobs.cancel(job_id))


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    responses=ADMIN_ONLY
    | {
        404: {"description": "no champion, or no entry with this run id, in the environment"},
        422: {"description": "malformed request, or data that cannot be scored (missing baseline...)"},
        503: {
            "description": "the registry, the model or the data cannot be read "
            "(`registry, model or evaluation data unavailable: …`)"
        },
    },
)
def evaluate(body: EvaluateBody, context: Context, _role: AdminRole) -> EvaluateResponse:
    request = body.for_env(context.store.env)
    with calling("registry, model or evaluation data"):
        result = evaluate_registered(
            request, context.settings, registry=context.store.registry, load=context.store.load_entry
        )
    return EvaluateResponse(**result)
