"""POST /predict against a real hgb champion loaded from the GCS emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.stack]

START = pd.Timestamp("2024-02-26T00:00:00Z")  # the day after the training window


def _hours(n: int) -> list[pd.Timestamp]:
    return [START + pd.Timedelta(hours=h) for h in range(n)]


def test_api_shape_predictions_match_the_bare_model(served, kit):
    counters = served.artifacts.counters[:3]
    records = [kit.api_record(c, at) for at in _hours(24) for c in counters]
    response = served.client.post("/predict", json={"records": records}, headers=kit.predict)
    assert response.status_code == 200, response.text
    body = response.json()

    predictions = body["predictions"]
    assert [(p["counter_id"], pd.Timestamp(p["counted_at"])) for p in predictions] == [
        (r["id_compteur"], pd.Timestamp(r["date"])) for r in records
    ]
    values = np.array([p["predicted_count"] for p in predictions])
    assert (values >= 0).all() and values.max() > 0
    expected = served.artifacts.model_a.predict(
        pd.DataFrame(
            {
                "counter_id": pd.array([r["id_compteur"] for r in records], dtype="string"),
                "counted_at": pd.to_datetime([r["date"] for r in records], utc=True),
            }
        )
    )
    np.testing.assert_allclose(values, expected)

    champion = body["champion"]
    assert champion["run_id"] == "run-a" and champion["model_type"] == "hgb"
    assert champion["model_uri"] == served.artifacts.uri_a and champion["is_champion"] is True
    assert champion["metrics"]["test_current"]["r2"] == pytest.approx(0.80)
    assert champion["loaded_at"] and champion["env"] == "dev"
    assert body["unseen_counters"] == [] and body["unseen_counter_rows"] == 0


def test_normalized_shape_with_an_unseen_counter(served, kit):
    known = served.artifacts.counters[0]
    records = [kit.normalized_record(c, at) for at in _hours(3) for c in (known, "999-unseen")]
    response = served.client.post("/predict", json={"records": records}, headers=kit.predict)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["counter_id"] for p in body["predictions"]] == [known, "999-unseen"] * 3
    assert all(p["predicted_count"] >= 0 for p in body["predictions"])
    assert body["unseen_counters"] == ["999-unseen"]
    assert body["unseen_counter_rows"] == 3


def test_mixed_shapes_keep_the_request_order(served, kit):
    counter = served.artifacts.counters[1]
    at = START + pd.Timedelta(hours=8)
    v1 = {
        "datasetid": "comptage-velo-donnees-compteurs",
        "fields": {
            "id_compteur": counter,
            "date": at.isoformat(),
            "sum_counts": 0.0,
            "coordinates": [48.8, 2.3],
        },
        "geometry": {"type": "Point", "coordinates": [2.3, 48.8]},
    }
    records = [kit.normalized_record(counter, at), v1, kit.api_record(counter, at), v1]
    response = served.client.post("/predict", json={"records": records}, headers=kit.predict)
    assert response.status_code == 200, response.text
    values = [p["predicted_count"] for p in response.json()["predictions"]]
    assert len(values) == 4 and len(set(values)) == 1  # same counter and hour, whatever the shape


def test_naive_dates_are_paris_local_time(served, kit):
    counter = served.artifacts.counters[0]
    records = [
        {"counter_id": counter, "counted_at": "2024-02-26T09:00:00"},  # CET: 08:00 UTC
        {"counter_id": counter, "counted_at": "2024-02-26T08:00:00Z"},
    ]
    response = served.client.post("/predict", json={"records": records}, headers=kit.predict)
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert pd.Timestamp(first["counted_at"]) == pd.Timestamp("2024-02-26T08:00:00Z")
    assert first["predicted_count"] == second["predicted_count"]


def test_empty_records_and_model_types(served, kit):
    ok = served.client.post("/predict", json={"records": [], "model_type": "hgb"}, headers=kit.predict)
    assert ok.status_code == 200 and ok.json()["predictions"] == []
    no_rf = served.client.post("/predict", json={"records": [], "model_type": "rf"}, headers=kit.predict)
    assert no_rf.status_code == 404 and "no 'rf' model is loaded" in no_rf.json()["detail"]
    unknown = served.client.post("/predict", json={"records": [], "model_type": "xgb"}, headers=kit.predict)
    assert unknown.status_code == 422
    assert "unknown model type 'xgb'" in unknown.json()["detail"][0]["msg"]


def _valid(kit: Any, counter: str = "100003096-353242251", **changes: Any) -> dict[str, Any]:
    return {**kit.normalized_record(counter, START), **changes}


MALFORMED: list[tuple[str, Any, list[Any], str]] = [
    # (case, body, expected loc, fragment of msg)
    ("missing records", {}, ["body", "records"], "Field required"),
    ("records not a list", {"records": "x"}, ["body", "records"], "valid list"),
    ("record not an object", {"records": [1]}, ["body", "records", 0], "a record is a JSON object"),
    (
        "counter id not a string",
        {"records": [{"counter_id": 5, "counted_at": "2024-02-26T08:00:00Z"}]},
        ["body", "records", 0, "normalized", "counter_id"],
        "valid string",
    ),
    (
        "api record without date",
        {"records": [{"id_compteur": "x"}]},
        ["body", "records", 0, "api", "date"],
        "Field required",
    ),
    ("typo in a top-level key", {"record": []}, ["body", "record"], "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("case", "body", "loc", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bodies_get_precise_422s(served, kit, case, body, loc, fragment):
    response = served.client.post("/predict", json=body, headers=kit.predict)
    assert response.status_code == 422, response.text
    details = response.json()["detail"]
    assert any(d["loc"] == loc and fragment in d["msg"] for d in details), details
    assert all(set(d) == {"type", "loc", "msg"} for d in details)  # the input is not echoed


REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("bad date", {"counted_at": "2024-13-45T00:00:00Z"}, "unparseable date '2024-13-45T00:00:00Z'"),
    ("not a date", {"counted_at": "yesterday"}, "unparseable date 'yesterday'"),
    ("off the hour", {"counted_at": "2024-02-26T08:30:00Z"}, "date not at the start of an hour"),
    ("clock change gap", {"counted_at": "2024-03-31T02:00:00"}, "nonexistent local time"),
    ("out of range", {"counted_at": "1990-01-01T00:00:00Z"}, "outside the supported range"),
    ("fractional count", {"hourly_count": 3.5}, "non-integer count"),
]


@pytest.mark.parametrize(("case", "changes", "fragment"), REJECTED, ids=[r[0] for r in REJECTED])
def test_unreadable_records_are_named_by_index(served, kit, case, changes, fragment):
    records = [_valid(kit), _valid(kit), _valid(kit, **changes)]
    response = served.client.post("/predict", json={"records": records}, headers=kit.predict)
    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["body", "records", 2]
    assert fragment in detail["msg"], detail


def test_json_errors_and_non_finite_numbers(served, kit):
    broken = served.client.post(
        "/predict", content=b'{"records": [', headers={**kit.predict, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    nan = b'{"records": [{"counter_id": "a", "counted_at": "2024-02-26T08:00:00Z", "latitude": NaN}]}'
    response = served.client.post(
        "/predict", content=nan, headers={**kit.predict, "Content-Type": "application/json"}
    )
    # NaN is not JSON (RFC 8259): refused by the parser, before any record is looked at.
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["body"] and detail["type"] == "json_invalid"
    assert detail["msg"] == "invalid JSON: NaN is not a JSON number"
    overflow = b'{"records": [{"counter_id": "a", "counted_at": "2024-02-26T08:00:00Z", "latitude": 1e999}]}'
    response = served.client.post(
        "/predict", content=overflow, headers={**kit.predict, "Content-Type": "application/json"}
    )
    # Beyond a double: read as infinity, which a record refuses.
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "records", 0, "normalized", "latitude"]
    not_json = served.client.post(
        "/predict", content=b"records", headers={**kit.predict, "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 422


def test_record_count_and_body_size_limits(fresh_app, kit, artifacts):
    client, _ = fresh_app(
        lambda registry: kit.champion_registry(registry.settings, artifacts),
        serving_max_records=20,
        serving_max_body_bytes=8192,
    )
    counter = artifacts.counters[0]
    at_limit = [kit.normalized_record(counter, at) for at in _hours(20)]
    assert client.post("/predict", json={"records": at_limit}, headers=kit.predict).status_code == 200

    too_many = client.post("/predict", json={"records": [*at_limit, at_limit[0]]}, headers=kit.predict)
    assert too_many.status_code == 422
    [detail] = too_many.json()["detail"]
    assert detail["loc"] == ["body", "records"]
    assert detail["msg"] == "at most 20 records per request, got 21: split the request"

    payload = json.dumps({"records": [{"counter_id": "x" * 100, "counted_at": "2024"}] * 80}).encode()
    assert len(payload) > 8192
    declared = client.post(
        "/predict", content=payload, headers={**kit.predict, "Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert "larger than 8192 bytes" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while the body streams in
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    streamed = client.post(
        "/predict", content=chunks(), headers={**kit.predict, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "larger than 8192 bytes" in streamed.json()["detail"]
