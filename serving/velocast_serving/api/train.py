"""``POST /train``, ``GET /train``, ``GET|DELETE /train/{job_id}`` and ``POST /evaluate`` (admin).

Training runs in a child process, one job at a time (``velocast_serving.jobs``): ``POST /train``
validates the request, starts the job and answers 202 with its id; a second one while a job runs
gets 409. ``POST /evaluate`` scores one registered model (the champion by default) and answers
with the metrics; it predicts, it does not fit, and it does so in a child process too, one at a
time, within a time budget (``velocast_serving.evaluations``). Both requests are bounded before
anything starts: hyper-parameters, rows and windows out of range are a 422 naming the field and
the bound (``velocast.ml.training_request``, ``velocast.ml.models``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from velocast_serving.api.deps import ADMIN_ONLY, AdminRole, Context, calling, job_status_or_404
from velocast_serving.evaluations import EVALUATE_TIME_BUDGET_SECONDS, Evaluations, resolve
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
        422: {
            "description": "malformed request (unknown model type, bad window...), or a value out of its "
            "bounds (hyper-parameters, current_data rows, window length): the message names the bound"
        },
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
        409: {"description": "an evaluation is running: one at a time (`Retry-After`)"},
        422: {
            "description": "malformed request, a value out of its bounds (current_data rows, window "
            "length), or data that cannot be scored (missing baseline...)"
        },
        503: {
            "description": "the registry, the model or the data cannot be read "
            "(`registry, model or evaluation data unavailable: …`), or the evaluation ran past "
            f"its time budget ({EVALUATE_TIME_BUDGET_SECONDS:g} s) and was stopped"
        },
    },
)
def evaluate(body: EvaluateBody, context: Context, _role: AdminRole) -> EvaluateResponse:
    """Score a registered model (default: the champion) on test_baseline and the current data.

    Not in this worker, which serves ``/predict``: what fails without data is checked here (the
    entry: 404; test_baseline exists: 422), then the data are read, the model loaded and every
    row scored in a child process (``python -m velocast_serving.jobs evaluate``), one evaluation
    at a time across the workers (another one running: 409 with ``Retry-After``), stopped past
    its time budget of ``EVALUATE_TIME_BUDGET_SECONDS`` (503). The rows are bounded by the request
    (``current_data`` rows, a ``current_window`` of at most 92 days) and by the stored
    test_baseline. The request waits for the answer (a thread of the pool, no CPU); errors keep
    their status (404, 422, 503).
    """
    request = body.for_env(context.store.env)
    with calling("registry, model or evaluation data"):
        request = resolve(request, context.settings, context.store.registry)
    return EvaluateResponse(**Evaluations(context.jobs.root).run(request, context.settings))
