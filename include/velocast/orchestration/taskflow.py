"""TaskFlow for velocast's DAGs: failures by error family, and typed wiring of task outputs.

Airflow-facing (it imports ``airflow.sdk``); the DAG files use it, the steps never do.

**Failures by family** (``retry_policy_by_error_family``): Airflow 3.3's ``retry_policy`` decides,
in the worker, from the exception itself. A ``velocast.errors.RequestError`` (the data or the
request is wrong: too many rejected rows, …) fails the task at once, since a retry would fail the
same way; an ``UnavailableError`` (the Open Data API, GCS or BigQuery cannot be reached) is retried
up to the task's ``retries``; anything else keeps Airflow's usual retries.

**Typed wiring** (``typed_task``): ``airflow.sdk.task`` types a task call with the function's own
parameters but returns an untyped ``XComArg`` (``airflow.sdk.bases.decorator.Task`` says so), so
passing one task's output to the next fails mypy's ``arg-type`` check. ``typed_task`` wraps that
``XComArg`` in ``Output[R]``, ``R`` being what the task returns, and takes ``Output[A]`` where the
function takes ``A``: mypy checks that each task gets the outputs it expects, and at run time
TaskFlow resolves each ``XComArg`` to the upstream return value, rebuilt from XCom.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, TypeVar, overload

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule, XComArg, get_current_context, task

from velocast.errors import RequestError, UnavailableError

log = logging.getLogger(__name__)

# The XCom key under which a task records the error it failed with (``recording_failure``).
FAILURE_XCOM_KEY = "velocast_failure"
MAX_FAILURE_CHARS = 1500

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")


def retry_policy_by_error_family() -> ExceptionRetryPolicy:
    """The ``retry_policy`` of every velocast task (set it in the DAG's ``default_args``)."""
    return ExceptionRetryPolicy(
        rules=[
            RetryRule(
                exception=RequestError,
                action=RetryAction.FAIL,
                reason="a velocast request error: the data or the request is wrong, a retry would fail too",
            ),
            RetryRule(
                exception=UnavailableError,
                action=RetryAction.RETRY,
                reason="a velocast unavailable error: a dependency cannot be reached, retried",
            ),
        ],
        default=RetryAction.DEFAULT,
    )


def task_defaults(retries: int, **extra: Any) -> dict[str, Any]:
    """The ``default_args`` every velocast DAG shares: ``retries`` tries after 5, 10, 20… minutes,
    decided by error family (``retry_policy_by_error_family``), plus the DAG's own ``extra``."""
    return {
        "retries": retries,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "retry_policy": retry_policy_by_error_family(),
        **extra,
    }


def _is_control_flow(error: BaseException) -> bool:
    """Airflow's own signals (defer, skip, reschedule...) raised through a task: not failures."""
    from airflow.sdk.exceptions import (
        AirflowRescheduleException,
        AirflowSkipException,
        DownstreamTasksSkipped,
        TaskDeferred,
    )

    signals = (TaskDeferred, AirflowSkipException, AirflowRescheduleException, DownstreamTasksSkipped)
    return isinstance(error, signals)


def record_failure(error: BaseException) -> None:
    """Push ``{"error": "Type: message"}`` under ``FAILURE_XCOM_KEY`` while the task still runs, so that
    a join task (trigger rule ``all_done``) can tell which task failed and why. Best effort."""
    if _is_control_flow(error):
        return
    text = f"{type(error).__name__}: {error}"[:MAX_FAILURE_CHARS]
    try:
        get_current_context()["ti"].xcom_push(FAILURE_XCOM_KEY, {"error": text})
    except Exception:  # recording must not hide the task's own error
        log.warning("could not record the failure of the task", exc_info=True)


def recording_failure(function: Callable[..., R]) -> Callable[..., R]:
    """``function`` that records its error (``record_failure``) before raising it."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            record_failure(error)
            raise

    return wrapper


class Output(Generic[R_co]):
    """The output of a task returning ``R_co``, while the DAG is wired: its ``XComArg``, typed."""

    def __init__(self, xcom_arg: XComArg) -> None:
        self.xcom_arg = xcom_arg

    def __rshift__(self, downstream: Output[Any]) -> Output[Any]:
        """``a >> b``: ``b``'s task runs after ``a``'s, as with plain ``XComArg``s."""
        self.xcom_arg.set_downstream(downstream.xcom_arg)
        return downstream


class TypedTask:
    """Turns ``f(a: A, …) -> R`` into a task called as ``f(Output[A], …) -> Output[R]`` (up to 4 inputs)."""

    def __init__(
        self, task_kwargs: dict[str, Any], *, branch: bool = False, records_failure: bool = False
    ) -> None:
        self.task_kwargs = task_kwargs
        self.branch = branch
        self.records_failure = records_failure

    @overload
    def __call__(self, function: Callable[[], R], /) -> Callable[[], Output[R]]: ...

    @overload
    def __call__(self, function: Callable[[A], R], /) -> Callable[[Output[A]], Output[R]]: ...

    @overload
    def __call__(self, function: Callable[[A, B], R], /) -> Callable[[Output[A], Output[B]], Output[R]]: ...

    @overload
    def __call__(
        self, function: Callable[[A, B, C], R], /
    ) -> Callable[[Output[A], Output[B], Output[C]], Output[R]]: ...

    @overload
    def __call__(
        self, function: Callable[[A, B, C, D], R], /
    ) -> Callable[[Output[A], Output[B], Output[C], Output[D]], Output[R]]: ...

    def __call__(self, function: Callable[..., Any], /) -> Callable[..., Output[Any]]:
        # The function itself goes to @task: Airflow reads its signature, docstring and annotations
        # (``functools.wraps`` keeps them when the failure is recorded).
        decorator = task.branch if self.branch else task
        body = recording_failure(function) if self.records_failure else function
        airflow_task = decorator(**self.task_kwargs)(body)

        def call(*upstream: Output[Any]) -> Output[Any]:
            return Output(airflow_task(*(output.xcom_arg for output in upstream)))

        return call


def typed_task(*, records_failure: bool = False, **task_kwargs: Any) -> TypedTask:
    """``@task(**task_kwargs)`` whose calls take and return ``Output``s (positional arguments only).

    ``records_failure``: the task's error is pushed to XCom before it fails (``record_failure``).
    """
    return TypedTask(task_kwargs, records_failure=records_failure)


def typed_branch(*, records_failure: bool = False, **task_kwargs: Any) -> TypedTask:
    """``@task.branch(**task_kwargs)``, typed like ``typed_task``: the function returns the task id
    (or ids) to follow."""
    return TypedTask(task_kwargs, branch=True, records_failure=records_failure)


__all__ = [
    "FAILURE_XCOM_KEY",
    "Output",
    "TypedTask",
    "record_failure",
    "recording_failure",
    "retry_policy_by_error_family",
    "task_defaults",
    "typed_branch",
    "typed_task",
]
