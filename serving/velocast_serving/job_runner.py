"""The child's side: ``python -m velocast_serving.jobs run|evaluate …`` (started by a worker).

``run <root> <job_id>`` runs one training job of the store (``velocast_serving.jobs``) to its end
and writes every outcome to its status file. ``evaluate <folder>`` runs one ``POST /evaluate``
(``velocast_serving.evaluations``): it reads ``folder/request.json`` and writes
``folder/result.json``, the result or the error with the HTTP status the API answers it with.
Both do their heavy work (reading data, loading a model, fitting, scoring) here, never in a worker
that serves ``/predict``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import traceback
from pathlib import Path
from typing import Any, Final

from velocast.ml.training_request import EvaluationRequest, TrainingRequest
from velocast.settings import VelocastSettings, get_settings
from velocast_serving.job_process import REQUEST_FILE, RESULT_FILE
from velocast_serving.jobs import JobState, JobStore, utc_now

log = logging.getLogger(__name__)

# What /evaluate names when the registry, the model or the data fail (as ``calling`` does).
EVALUATION_DEPENDENCIES: Final = "registry, model or evaluation data"


# --- training -----------------------------------------------------------------------------------


def run_job(store: JobStore, job_id: str, settings: VelocastSettings, *, lock_fd: int | None = None) -> int:
    """Run one job to its end; every outcome is written to its status file.

    ``lock_fd``: the job lock inherited from the worker, released once the outcome is written
    (rather than at interpreter exit), so the next job can start at once.
    """
    try:
        return _run(store, job_id, settings)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _run(store: JobStore, job_id: str, settings: VelocastSettings) -> int:
    from velocast.ml.training import run_training

    # Under the status lock, like a cancellation: either this job is cancelled already (and
    # never trains) or its pid is recorded before a cancellation can read it.
    status = store.update(job_id, status=JobState.RUNNING.value, started_at=utc_now(), pid=os.getpid())
    if JobState(status["status"]).finished:
        log.info("training job %s was %s before it started", job_id, status["status"])
        return 0
    try:
        request = TrainingRequest.model_validate_json(
            (store.job_dir(job_id) / "request.json").read_text(encoding="utf-8")
        )

        def progress(step: str, fraction: float) -> None:
            store.update(job_id, step=step, progress=round(fraction, 3))

        result = run_training(request, settings, progress=progress)
    except Exception as error:
        log.error("training job %s failed\n%s", job_id, traceback.format_exc())
        store.finish(
            job_id,
            JobState.FAILED,
            error={"type": type(error).__name__, "message": str(error) or repr(error)},
        )
        return 1
    store.finish(job_id, JobState.SUCCEEDED, step="done", result=result.to_dict())
    return 0


# --- evaluation ---------------------------------------------------------------------------------


def run_evaluation(folder: Path, settings: VelocastSettings) -> int:
    """Score the registered model ``folder/request.json`` names; write ``folder/result.json``.

    The model is loaded and checked as the serving workers load theirs (``ModelStore``), the
    frames are those of ``evaluate_registered``. Errors are written with the status the API
    answers them with (``velocast_serving.errors``), so the worker can raise the same family.
    """
    from velocast.ml.training import evaluate_registered
    from velocast_serving.api.deps import calling
    from velocast_serving.errors import status_of
    from velocast_serving.model_store import ModelStore

    outcome: dict[str, Any]
    try:
        request = EvaluationRequest.model_validate_json((folder / REQUEST_FILE).read_text(encoding="utf-8"))
        store = ModelStore(settings)  # serves nothing here: it loads and checks the entry's model
        with calling(EVALUATION_DEPENDENCIES):
            result = evaluate_registered(request, settings, registry=store.registry, load=store.load_entry)
        outcome = {"result": result}
    except Exception as error:
        code = status_of(error)
        if code >= 500:
            log.error("evaluation failed\n%s", traceback.format_exc())
        outcome = {
            "error": {"status": code, "type": type(error).__name__, "message": str(error) or repr(error)}
        }
    # NaN is valid here (a metric of a constant frame): the worker reads it back as it was.
    tmp = folder / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(outcome, default=str), encoding="utf-8")
    tmp.replace(folder / RESULT_FILE)
    return 0 if "result" in outcome else 1


# --- the command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m velocast_serving.jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one training job (started by POST /train)")
    run.add_argument("root", type=Path)
    run.add_argument("job_id")
    run.add_argument("--lock-fd", type=int, help="the inherited job lock (released when done)")
    evaluate = commands.add_parser("evaluate", help="run one evaluation (started by POST /evaluate)")
    evaluate.add_argument("folder", type=Path, help=f"holds {REQUEST_FILE}; {RESULT_FILE} is written there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "evaluate":
        return run_evaluation(args.folder, get_settings())
    return run_job(JobStore(args.root), args.job_id, get_settings(), lock_fd=args.lock_fd)


__all__ = ["main", "run_evaluation", "run_job"]
