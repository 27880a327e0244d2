"""TaskFlow helpers (``velocast.orchestration.taskflow``): the retry policy by error family, typed wiring."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from airflow.sdk import DAG, Asset, RetryAction, XComArg

from velocast.data.validation import TooManyRejectedRowsError
from velocast.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    RequestError,
    UnavailableError,
    VelocastError,
)
from velocast.ingest.opendata_http import OpenDataError, OpenDataUnavailableError
from velocast.orchestration.taskflow import Output, retry_policy_by_error_family, typed_task


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (TooManyRejectedRowsError(0.2, 0.05, 100, 20), RetryAction.FAIL),
        (RequestError("bad request"), RetryAction.FAIL),
        (NotFoundError("no such run"), RetryAction.FAIL),
        (ConflictError("a job is running"), RetryAction.FAIL),
        (OpenDataUnavailableError("down", url="https://x", status=503), RetryAction.RETRY),
        (UnavailableError("BigQuery unreachable"), RetryAction.RETRY),
        (OpenDataError("refused", url="https://x", status=404), RetryAction.DEFAULT),
        (ConfigurationError("insecure"), RetryAction.DEFAULT),
        (VelocastError("a bug"), RetryAction.DEFAULT),
        (ValueError("a bug"), RetryAction.DEFAULT),
    ],
    ids=lambda value: type(value).__name__,
)
def test_retry_policy_follows_the_error_families(error: BaseException, action: RetryAction) -> None:
    decision = retry_policy_by_error_family().evaluate(error, try_number=1, max_tries=3)
    assert decision.action is action
    if action is not RetryAction.DEFAULT:
        assert decision.reason and "velocast" in decision.reason


def test_retry_policy_survives_dag_serialization() -> None:
    """Airflow stores the policy as rules of dotted class names; they must import back to the families."""
    policy = retry_policy_by_error_family()
    rules = policy.serialize()["rules"]
    assert [(rule["exception"], rule["action"]) for rule in rules] == [
        ("velocast.errors.RequestError", "fail"),
        ("velocast.errors.UnavailableError", "retry"),
    ]
    restored = type(policy).deserialize(policy.serialize())
    decision = restored.evaluate(TooManyRejectedRowsError(0.2, 0.05, 100, 20), try_number=1, max_tries=3)
    assert decision.action is RetryAction.FAIL


def test_typed_tasks_wire_outputs_into_the_next_tasks() -> None:
    produced = Asset(uri="bigquery://p/d/t", name="d.t")
    with DAG("typed_wiring", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)) as dag:

        @typed_task()
        def first() -> int:
            """The first number."""
            return 1

        @typed_task()
        def setup() -> dict[str, str]:
            return {"table": "created"}

        @typed_task(outlets=[produced])
        def add(a: int, b: int) -> int:
            return a + b

        one = first()
        total = add(one, one)
        assert setup() >> total is total

    assert isinstance(one, Output) and isinstance(one.xcom_arg, XComArg)
    assert [(operator.task_id, key) for operator, key in one.xcom_arg.iter_references()] == [
        ("first", "return_value")
    ]
    upstream = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
    assert upstream == {"first": set(), "setup": set(), "add": {"first", "setup"}}
    assert dag.get_task("first").doc_md == "The first number."
    assert dag.get_task("add").outlets == [produced]
    # The function itself reaches @task: its dict return still pushes one XCom per key.
    assert getattr(dag.get_task("setup"), "multiple_outputs", None) is True
    assert getattr(dag.get_task("add"), "multiple_outputs", None) is False
