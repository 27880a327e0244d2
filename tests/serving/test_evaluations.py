"""``POST /evaluate``'s child process: one at a time, within a time budget, errors kept in their family.

Real child processes stand in for the evaluation (a Python that writes a result, an error, nothing,
or waits): what is under test is the slot, the budget and the hand-over of the outcome; the real
runner is exercised through the API in tests/serving/api/test_train.py.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from velocast_serving.errors import status_of
from velocast_serving.evaluations import (
    EVALUATIONS_DIR,
    EvaluationBusyError,
    Evaluations,
    EvaluationTimeoutError,
)
from velocast_serving.jobs import flock_is_held

from velocast.errors import ConflictError, NotFoundError, RequestError, UnavailableError
from velocast.ml.training_request import EvaluationRequest

REQUEST = EvaluationRequest(model_type="hgb", run_id="run-a")
RESULT = {"env": "dev", "model_type": "hgb", "run_id": "run-a", "metrics": {"test_baseline": {"r2": 0.8}}}


def child(code: str) -> Callable[[Path], list[str]]:
    """A child that runs ``code`` with ``folder`` (a Path) and ``write(outcome)`` defined."""
    prelude = (
        "import json, sys\nfrom pathlib import Path\nfolder = Path(sys.argv[1])\n"
        "def write(outcome):\n    (folder / 'result.json').write_text(json.dumps(outcome))\n"
    )
    return lambda folder: [sys.executable, "-c", prelude + code, str(folder)]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def slot_is_held(evaluations: Evaluations) -> bool:
    return flock_is_held(evaluations.lock_path)


def test_the_result_comes_from_the_child_process(tmp_path, settings):
    evaluations = Evaluations(tmp_path, command=child(f"write({{'result': {RESULT!r}}})"))
    # The child reads the request the worker wrote.
    echo = Evaluations(
        tmp_path, command=child("write({'result': json.loads((folder / 'request.json').read_text())})")
    )
    assert evaluations.run(REQUEST, settings) == RESULT
    assert echo.run(REQUEST, settings)["run_id"] == "run-a"
    assert not list((tmp_path / EVALUATIONS_DIR).iterdir())  # its folder is removed
    assert not slot_is_held(evaluations)


@pytest.mark.parametrize(
    ("status", "family"),
    [(404, NotFoundError), (409, ConflictError), (422, RequestError), (503, UnavailableError)],
)
def test_the_childs_error_keeps_its_family_and_message(tmp_path, settings, status, family):
    error = {"status": status, "type": "SomeError", "message": "what went wrong"}
    evaluations = Evaluations(tmp_path, command=child(f"write({{'error': {error!r}}}); sys.exit(1)"))
    with pytest.raises(family) as caught:
        evaluations.run(REQUEST, settings)
    assert str(caught.value) == "what went wrong"
    assert status_of(caught.value) == status


def test_a_bug_in_the_child_is_a_500(tmp_path, settings):
    error = {"status": 500, "type": "KeyError", "message": "'x'"}
    with pytest.raises(Exception) as caught:
        Evaluations(tmp_path, command=child(f"write({{'error': {error!r}}})")).run(REQUEST, settings)
    assert status_of(caught.value) == 500 and "KeyError" in str(caught.value)


def test_a_child_that_dies_without_a_result_is_a_503(tmp_path, settings):
    evaluations = Evaluations(tmp_path, command=child("print('boom'); sys.exit(3)"))
    with pytest.raises(UnavailableError, match="exited without a result"):
        evaluations.run(REQUEST, settings)
    assert not slot_is_held(evaluations)


def test_an_evaluation_past_its_budget_is_stopped(tmp_path, settings):
    pid_file = tmp_path / "child.pid"
    sleeper = child(
        f"Path({str(pid_file)!r}).write_text(str(__import__('os').getpid()))\nimport time; time.sleep(120)"
    )
    # The budget is what is tested, not a synchronisation: the child would sleep two minutes.
    evaluations = Evaluations(tmp_path, budget_seconds=1.0, command=sleeper)
    with pytest.raises(EvaluationTimeoutError) as caught:
        evaluations.run(REQUEST, settings)
    assert "time budget of 1 s" in str(caught.value) and status_of(caught.value) == 503
    if pid_file.exists():  # it may have been stopped before it wrote its pid
        assert not psutil.pid_exists(int(pid_file.read_text()))  # stopped and reaped
    assert not slot_is_held(evaluations)


def test_one_evaluation_at_a_time_across_workers(tmp_path, settings):
    """Another worker's evaluation holds the slot: 409 at once, and no process is started."""
    ran = tmp_path / "ran"
    evaluations = Evaluations(
        tmp_path, command=child(f"Path({str(ran)!r}).touch(); write({{'result': {{}}}})")
    )
    evaluations.root.mkdir(parents=True, exist_ok=True)
    with evaluations.lock_path.open("a+") as other_worker:
        fcntl.flock(other_worker, fcntl.LOCK_EX)
        with pytest.raises(EvaluationBusyError) as caught:
            evaluations.run(REQUEST, settings)
    assert status_of(caught.value) == 409 and caught.value.retry_after_seconds == 30
    assert "one runs at a time" in str(caught.value)
    assert not ran.exists()
    assert evaluations.run(REQUEST, settings) == {} and ran.exists()  # free again


def test_the_child_holds_the_slot_while_it_runs(tmp_path, settings):
    """A second evaluation while the first one's process runs is refused; the first completes."""
    gate, started = tmp_path / "gate", tmp_path / "started"
    os.mkfifo(gate)
    # It says it started, then blocks until the test opens the FIFO for writing: the interleaving
    # is driven, not slept into.
    waiting = Evaluations(
        tmp_path,
        command=child(
            f"Path({str(started)!r}).touch(); open({str(gate)!r}).read(); write({{'result': {{'n': 1}}}})"
        ),
    )
    outcome: dict[str, Any] = {}
    first = threading.Thread(target=lambda: outcome.update(waiting.run(REQUEST, settings)))
    first.start()
    try:
        wait_for(started.exists)  # its process runs: the slot was taken before it was started
        assert slot_is_held(waiting)
        with pytest.raises(EvaluationBusyError):
            Evaluations(tmp_path, command=child("write({'result': {}})")).run(REQUEST, settings)
    finally:
        with gate.open("w") as release:
            release.write("go")
        first.join(timeout=60)
    assert outcome == {"n": 1}
    assert not slot_is_held(waiting)
