"""The fast lane of POST /predict answers what the general path answers, and only what it would.

Records of the warehouse shape with an explicit offset go through ``velocast_serving.fast_lane``;
the same records with one extra key (ignored by the record's shape) go through the general path
(pydantic records, ``normalize``, the frame): both answers must be equal, and the values equal to
the model's reference path (scikit-learn's own ``predict``). Requests the lane must not take
(naive or off-the-hour times, dates out of range or impossible, spaces) keep the general path's
answers, 422 reasons included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from velocast_serving.api.predict import INLINE_BODY_BYTES
from velocast_serving.fast_lane import canonical_records

pytestmark = [pytest.mark.stack]

# Clock changes (2024-03-31, 2024-10-27), a public holiday (2024-05-08), New Year's Eve.
INSTANTS = [
    "2024-02-26T07:00:00Z",
    "2024-03-31T00:00:00Z",
    "2024-03-31T01:00:00+00:00",
    "2024-03-31T04:00:00+02:00",
    "2024-05-08T09:00:00.000000+02:00",
    "2024-10-27T00:00:00Z",
    "2024-10-27T01:00:00Z",
    "2024-10-27T02:00:00+01:00",
    "2024-12-31T18:30:00-05:30",
    "2025-01-01T05:00:00+05:00",
]
UNSEEN = "100999999-109999999"


def _post(client: Any, kit: Any, records: list[dict[str, Any]]) -> Any:
    return client.post("/predict", json={"records": records}, headers=kit.predict)


def _records(counters: tuple[str, ...], repeat: int = 1) -> list[dict[str, Any]]:
    records = [{"counter_id": c, "counted_at": at} for at in INSTANTS for c in (*counters, UNSEEN)]
    return records * repeat


@pytest.mark.parametrize("repeat", [1, 60], ids=["inline", "thread-pool"])
def test_the_lane_answers_what_the_general_path_answers(served, kit, repeat: int) -> None:
    records = _records(served.artifacts.counters[:4], repeat)
    assert canonical_records(records) is not None
    body = orjson.dumps({"records": records})
    assert (len(body) <= INLINE_BODY_BYTES) == (repeat == 1)
    general_records = [{**record, "note": "forces the general path"} for record in records]
    assert canonical_records(general_records) is None

    fast, general = _post(served.client, kit, records), _post(served.client, kit, general_records)
    assert fast.status_code == general.status_code == 200, (fast.text, general.text)
    assert fast.headers["content-type"] == general.headers["content-type"] == "application/json"
    fast_body, general_body = fast.json(), general.json()
    for body_ in (fast_body, general_body):  # the champion's loaded_at is the same; nothing else varies
        assert body_["unseen_counters"] == [UNSEEN]
    assert fast_body == general_body

    frame = pd.DataFrame(
        {
            "counter_id": pd.array([r["counter_id"] for r in records], dtype="string"),
            "counted_at": pd.to_datetime([r["counted_at"] for r in records], utc=True, format="ISO8601"),
        }
    )
    values = np.array([p["predicted_count"] for p in fast_body["predictions"]])
    assert np.array_equal(values, served.artifacts.model_a.predict_reference(frame))
    assert [pd.Timestamp(p["counted_at"]) for p in fast_body["predictions"]] == frame["counted_at"].tolist()


@pytest.mark.parametrize(
    ("counted_at", "status", "message"),
    [
        ("2024-02-26T08:00:00", 200, None),  # naive: Paris wall-clock time
        ("2024-02-26 08:00:00+01:00", 200, None),
        ("2024-02-26T08:30:00Z", 422, "date not at the start of an hour"),
        ("2024-02-26T08:00:00+00:30", 422, "date not at the start of an hour"),
        ("2024-02-30T08:00:00Z", 422, "2024-02-30T08:00:00Z"),
        ("1999-12-31T23:00:00Z", 422, "date outside the supported range"),
        ("2100-01-01T00:00:00Z", 422, "date outside the supported range"),
    ],
)
def test_what_the_lane_declines_keeps_the_general_paths_answer(
    served, kit, counted_at: str, status: int, message: str | None
) -> None:
    records = [{"counter_id": served.artifacts.counters[0], "counted_at": counted_at}]
    assert canonical_records(records) is None
    response = _post(served.client, kit, records)
    assert response.status_code == status, response.text
    if message is not None:
        assert message in response.text


def test_dag_2_records_with_counter_names_take_the_lane(served, kit) -> None:
    counters = served.artifacts.counters[:3]
    records = [
        {"counter_id": c, "counted_at": at, "counter_name": f"{c} Nord" if i % 2 else None}
        for i, (c, at) in enumerate((c, at) for at in INSTANTS for c in counters)
    ]
    assert canonical_records(records) is not None
    general_records = [{**record, "note": "forces the general path"} for record in records]
    fast, general = _post(served.client, kit, records), _post(served.client, kit, general_records)
    assert fast.status_code == general.status_code == 200, (fast.text, general.text)
    assert fast.json() == general.json()
    too_long = [{**records[0], "counter_name": "x" * 501}]
    assert canonical_records(too_long) is None
    assert _post(served.client, kit, too_long).status_code == 422
    for odd in (
        {"counter_id": counters[0], "counted_at": ["2024-02-26T08:00:00Z"]},
        {**records[1], "site_id": "1"},
    ):
        assert canonical_records([odd]) is None


def test_spaces_and_non_string_ids_take_the_general_path(served, kit) -> None:
    counter = served.artifacts.counters[0]
    spaced = [{"counter_id": f" {counter} ", "counted_at": "2024-02-26T08:00:00Z"}]
    assert canonical_records(spaced) is None
    response = _post(served.client, kit, spaced)
    assert response.status_code == 200 and response.json()["predictions"][0]["counter_id"] == counter
    numeric = [{"counter_id": 100003096, "counted_at": "2024-02-26T08:00:00Z"}]
    assert canonical_records(numeric) is None
    response = _post(served.client, kit, numeric)
    assert response.status_code == 422 and "string" in response.text


def test_a_body_orjson_refuses_gets_the_standard_parsers_answer(served, kit) -> None:
    counter = served.artifacts.counters[0]
    # A 21-digit integer (beyond 64 bits: the standard parser reads it, exact) where a string belongs.
    huge = '{"records": [{"counter_id": 123456789012345678901, "counted_at": "2024-02-26T08:00:00Z"}]}'
    response = served.client.post(
        "/predict", content=huge, headers={**kit.predict, "content-type": "application/json"}
    )
    assert response.status_code == 422 and "valid string" in response.text, response.text
    nan = f'{{"records": [{{"counter_id": "{counter}", "counted_at": "2024-02-26T08:00:00Z"}}], "x": NaN}}'
    response = served.client.post(
        "/predict", content=nan, headers={**kit.predict, "content-type": "application/json"}
    )
    assert response.status_code == 422 and "NaN is not a JSON number" in response.text, response.text


def test_mixed_shapes_take_the_general_path_and_predict_the_reference_values(served, kit) -> None:
    counters = served.artifacts.counters[:3]
    instants = [pd.Timestamp(at) for at in INSTANTS]
    records: list[dict[str, Any]] = []
    for i, at in enumerate(instants):
        for j, counter in enumerate((*counters, UNSEEN)):
            make = (kit.api_record, kit.normalized_record)[(i + j) % 2]
            records.append(make(counter, at))
    records.append({"counter_id": counters[0], "counted_at": "2024-05-08T09:00:00+02:00"})
    assert canonical_records(records) is None
    response = _post(served.client, kit, records)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    frame = pd.DataFrame(
        {
            "counter_id": pd.array([p["counter_id"] for p in predictions], dtype="string"),
            "counted_at": pd.to_datetime([p["counted_at"] for p in predictions], utc=True),
        }
    )
    expected_at = [
        *(at for at in instants for _ in range(len(counters) + 1)),
        pd.Timestamp("2024-05-08T07:00Z"),
    ]
    assert frame["counted_at"].tolist() == expected_at
    values = np.array([p["predicted_count"] for p in predictions])
    assert np.array_equal(values, served.artifacts.model_a.predict_reference(frame))
