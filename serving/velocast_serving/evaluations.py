"""``POST /evaluate`` outside the serving worker: one at a time, in a child process, within a time budget.

An evaluation reads test_baseline and the current data (rows, or a BigQuery window of up to 92
days), loads the model (one that is not served may be a large random forest) and scores every
row. Done in the worker, it would take the CPU, the GIL and the memory of ``/predict`` for as
long as it lasts, and a thread cannot be stopped. So the worker that accepts the request:

0. checks, with two small reads, what fails without data (``resolve``): the registry entry (the
   champion's when no run id is given; none: 404) and that test_baseline exists (422);
1. takes the evaluation slot, ``<root>/evaluate.lock`` (``flock``, without waiting, shared by every
   worker): held, the request gets 409 with ``Retry-After`` (``EvaluationBusyError``);
2. writes the request to a folder of its own and starts ``python -m velocast_serving.jobs evaluate
   <folder>`` (``velocast_serving.job_runner``) in its own session, handing it the slot, which the
   child holds until it exits (even if the worker dies meanwhile);
3. waits at most ``EVALUATE_TIME_BUDGET_SECONDS``; past it the child's process group is stopped
   and the request gets 503 naming the budget (``EvaluationTimeoutError``);
4. reads ``result.json``: the result, or the child's error raised again in its family (404, 409,
   422, 503; 500 for a bug), so the answer is the one the route gave when it scored in-process.

Waiting costs one thread of the worker's pool, no CPU: ``/predict`` is served meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from velocast.errors import ConflictError, NotFoundError, RequestError, UnavailableError, VelocastError
from velocast.gcp.clients import storage_client
from velocast.ml.reference_data import TEST_OBJECT, BaselineError, BaselineLocation
from velocast.ml.registry import Registry
from velocast.ml.registry_entries import UnknownRunError
from velocast.ml.training_request import EvaluationRequest
from velocast.settings import VelocastSettings
from velocast_serving.job_process import (
    REQUEST_FILE,
    RESULT_FILE,
    evaluation_command,
    start_child,
    stop_group,
)

log = logging.getLogger(__name__)

# Room for the child's start (~5 s), loading a model from MLflow (the largest rf the
# hyper-parameter bounds allow is ~1 GB), reading a 92-day BigQuery window and scoring ~400k rows
# on a busy 2-core machine; an evaluation of the default hgb takes well under a minute.
EVALUATE_TIME_BUDGET_SECONDS: Final = 300.0
EVALUATE_LOCK_FILE: Final = "evaluate.lock"
EVALUATIONS_DIR: Final = "evaluations"
LOG_FILE: Final = "evaluate.log"
# Lines of the child's output logged when it exits without a result.
LOG_TAIL_LINES: Final = 20


class EvaluationBusyError(ConflictError):
    """Another evaluation is running (the API answers 409 with Retry-After)."""

    # An evaluation takes seconds to a few minutes.
    retry_after_seconds = 30

    def __init__(self) -> None:
        super().__init__(
            "an evaluation is running; one runs at a time (each in a process of its own): "
            "retry when it has finished"
        )


class EvaluationTimeoutError(UnavailableError):
    """The evaluation ran past its time budget and was stopped (503)."""

    def __init__(self, budget_seconds: float) -> None:
        super().__init__(
            f"the evaluation did not finish within its time budget of {budget_seconds:g} s and was "
            "stopped: evaluate on less current data (a shorter current_window) or retry when the "
            "sidecar is less busy"
        )


class EvaluationNotFoundError(NotFoundError):
    """The child's ``NotFoundError`` (no champion, unknown run id)."""


class EvaluationConflictError(ConflictError):
    """The child's ``ConflictError``."""


class EvaluationRequestError(RequestError):
    """The child's ``RequestError`` (data that cannot be scored, a missing baseline...)."""


class EvaluationUnavailableError(UnavailableError):
    """The child's ``UnavailableError``, or a child that exited without a result."""


class EvaluationInternalError(VelocastError):
    """The child failed on a bug (the API answers 500 and logs it)."""


_ERROR_OF_STATUS: Final[dict[int, type[VelocastError]]] = {
    404: EvaluationNotFoundError,
    409: EvaluationConflictError,
    422: EvaluationRequestError,
    503: EvaluationUnavailableError,
}


def error_of(outcome: dict[str, Any]) -> VelocastError:
    """The child's error as one of ours, in the family of the status it was written with."""
    status, message = int(outcome.get("status", 500)), str(outcome.get("message", ""))
    family = _ERROR_OF_STATUS.get(status)
    if family is None:
        return EvaluationInternalError(f"the evaluation failed: {outcome.get('type', 'error')}: {message}")
    return family(message)


def resolve(request: EvaluationRequest, settings: VelocastSettings, registry: Registry) -> EvaluationRequest:
    """``request`` naming its entry's run id, once what fails without data has been checked.

    Small reads (the registry's summary, one object's metadata), so that requests that cannot be
    scored are answered at once, without a child process: no champion or an unknown run id
    (``UnknownRunError``, 404), no test_baseline at the data source (``BaselineError``, 422).
    """
    if request.run_id is None:
        entry = registry.champion(request.env, request.model_type)
        if entry is None:
            raise UnknownRunError(
                f"{request.env} has no {request.model_type} champion to evaluate: train and promote one, "
                "or give run_id"
            )
    else:
        entry = registry.entry(request.env, request.model_type, request.run_id)
    location = (
        BaselineLocation.parse(request.data_source)
        if request.data_source
        else BaselineLocation.default(settings)
    )
    if storage_client(settings).bucket(location.bucket).get_blob(location.object_name(TEST_OBJECT)) is None:
        raise BaselineError(
            f"{location.uri(TEST_OBJECT)} does not exist: create the baseline first (velocast baseline)"
        )
    return request.model_copy(update={"run_id": entry.run_id})


@dataclass(frozen=True)
class Evaluations:
    """The evaluations of the workers sharing ``root`` (the jobs folder)."""

    root: Path
    # None: EVALUATE_TIME_BUDGET_SECONDS, read when an evaluation starts.
    budget_seconds: float | None = None
    # The child's command line for a folder; None: ``python -m velocast_serving.jobs evaluate``.
    command: Callable[[Path], list[str]] | None = None

    @property
    def lock_path(self) -> Path:
        return self.root / EVALUATE_LOCK_FILE

    def run(self, request: EvaluationRequest, settings: VelocastSettings) -> dict[str, Any]:
        """The result of ``evaluate_registered`` for ``request``, computed in a child process.

        Raises ``EvaluationBusyError`` (another one runs), ``EvaluationTimeoutError`` (over the
        budget) or the child's error in its family.
        """
        folders = self.root / EVALUATIONS_DIR
        folders.mkdir(parents=True, exist_ok=True)
        slot = self._take_slot()
        try:
            with tempfile.TemporaryDirectory(dir=folders) as name:
                folder = Path(name)
                (folder / REQUEST_FILE).write_text(request.model_dump_json(), encoding="utf-8")
                self._run_child(folder, settings, slot)
                return self._outcome(folder)
        finally:
            os.close(slot)

    def _take_slot(self) -> int:
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise EvaluationBusyError() from None
        return descriptor

    def _run_child(self, folder: Path, settings: VelocastSettings, slot: int) -> None:
        budget = EVALUATE_TIME_BUDGET_SECONDS if self.budget_seconds is None else self.budget_seconds
        argv = (self.command or evaluation_command)(folder)
        # The child holds the slot too: it stays taken while the child lives.
        process = start_child(argv, settings, folder / LOG_FILE, inherited=slot)
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            # Not reaped yet, so its pid (its group id) cannot name another process.
            stop_group(process.pid)
            process.wait()
            log.warning("evaluation stopped after its time budget of %g s", budget)
            raise EvaluationTimeoutError(budget) from None

    def _outcome(self, folder: Path) -> dict[str, Any]:
        try:
            outcome: dict[str, Any] = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            tail = (folder / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
            log.warning(
                "the evaluation process wrote no result; its output:\n%s", "\n".join(tail[-LOG_TAIL_LINES:])
            )
            raise EvaluationUnavailableError(
                "the evaluation process exited without a result (killed, or out of memory?); "
                "see the sidecar's log"
            ) from None
        if "error" in outcome:
            raise error_of(outcome["error"])
        result: dict[str, Any] = outcome["result"]
        return result


__all__ = [
    "EVALUATE_TIME_BUDGET_SECONDS",
    "EvaluationBusyError",
    "EvaluationTimeoutError",
    "Evaluations",
    "error_of",
    "resolve",
]
