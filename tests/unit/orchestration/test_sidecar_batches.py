"""Prediction bodies under the sidecar's limits (``velocast.orchestration.sidecar_batches``)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from velocast.errors import RequestError
from velocast.orchestration.sidecar_batches import predict_bodies, to_json
from velocast.orchestration.sidecar_errors import PredictionRequestError


def records(count: int) -> list[dict[str, object]]:
    return [{"counter_id": f"C{i:04d}", "counted_at": f"2024-03-01T{i % 24:02d}:00:00"} for i in range(count)]


def decoded(bodies: list[str]) -> list[list[dict[str, object]]]:
    return [json.loads(body)["records"] for body in bodies]


@pytest.mark.parametrize(("count", "limit"), [(1, 1), (10, 10), (11, 10), (20, 10), (25, 10), (7, 3)])
def test_record_limit_gives_ceil_n_over_l_bodies_in_order(count: int, limit: int) -> None:
    given = records(count)
    bodies = list(predict_bodies(given, max_records=limit, max_body_bytes=10**6))
    assert len(bodies) == math.ceil(count / limit)
    batches = decoded(bodies)
    assert all(len(batch) <= limit for batch in batches)
    assert [record for batch in batches for record in batch] == given


def test_body_limit_is_reached_exactly_never_passed() -> None:
    given = records(12)  # every record serializes to the same length
    per_record = len(to_json(given[0]))
    envelope = len('{"records":[]}')
    limit = envelope + 4 * per_record + 3  # exactly four records and their three commas
    bodies = list(predict_bodies(given, max_records=1000, max_body_bytes=limit))
    assert [len(batch) for batch in decoded(bodies)] == [4, 4, 4]
    assert max(len(body) for body in bodies) == limit
    # One byte less: three records per body.
    smaller = list(predict_bodies(given, max_records=1000, max_body_bytes=limit - 1))
    assert [len(batch) for batch in decoded(smaller)] == [3, 3, 3, 3]


def test_both_limits_apply_together() -> None:
    given = records(10)
    per_record = len(to_json(given[0]))
    limit = len('{"records":[]}') + 3 * per_record + 2
    bodies = list(predict_bodies(given, max_records=2, max_body_bytes=limit))
    assert [len(batch) for batch in decoded(bodies)] == [2, 2, 2, 2, 2]


def test_model_type_is_part_of_every_body_and_of_its_size() -> None:
    given = records(5)
    per_record = len(to_json(given[0]))
    envelope = len('{"records":[],"model_type":"hgb"}')
    bodies = list(
        predict_bodies(given, max_records=100, max_body_bytes=envelope + 2 * per_record + 1, model_type="hgb")
    )
    assert len(bodies) == 3
    assert all(json.loads(body)["model_type"] == "hgb" for body in bodies)
    assert max(len(body) for body in bodies) == envelope + 2 * per_record + 1


def test_bodies_are_ascii_so_characters_are_bytes_and_datetimes_are_iso() -> None:
    record = {"counter_id": "Boulevard Sébastopol", "counted_at": datetime(2024, 3, 1, 8, tzinfo=UTC)}
    (body,) = predict_bodies([record], max_records=10, max_body_bytes=10_000)
    assert body.isascii()
    assert len(body.encode()) == len(body)
    assert json.loads(body)["records"][0] == {
        "counter_id": "Boulevard Sébastopol",
        "counted_at": "2024-03-01T08:00:00+00:00",
    }


def test_a_record_over_the_body_limit_alone_is_a_request_error() -> None:
    big = {"counter_id": "C1", "counted_at": "2024-03-01T00:00:00", "counter_name": "x" * 2000}
    with pytest.raises(PredictionRequestError, match="record 1 alone takes") as raised:
        list(predict_bodies([records(1)[0], big], max_records=10, max_body_bytes=1024))
    assert isinstance(raised.value, RequestError)


def test_no_records_is_a_request_error() -> None:
    with pytest.raises(PredictionRequestError, match="no records"):
        list(predict_bodies([], max_records=10, max_body_bytes=1024))


def test_nan_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        list(
            predict_bodies(
                [{"counter_id": "C1", "latitude": float("nan")}], max_records=1, max_body_bytes=1024
            )
        )
