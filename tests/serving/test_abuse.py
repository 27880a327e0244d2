"""Hostile and clumsy clients: bodies refused before they cost, metrics that cannot grow.

Each test reproduces a finding of the sidecar's abuse review (issue 11): refused bodies are never
parsed record by record, a keyless body is never read, and made-up methods or paths add no series.
Memory is measured with tracemalloc (allocations, not time): ``bench/bench_abuse.py`` prints the
event-loop seconds and RSS of the same bodies against a real uvicorn.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.stack]

MB = 1024 * 1024
# Extra memory a refused body may cost the worker (the bound).
REFUSAL_BUDGET_BYTES = 50 * MB


def _empty_records(count: int) -> bytes:
    return b'{"records":[' + b",".join([b"{}"] * count) + b"]}"


def _peak_while(call: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_too_many_records_are_one_error_before_any_record_is_validated(fresh_app, kit):
    client, _ = fresh_app(serving_max_records=10)
    response = client.post(
        "/predict", content=_empty_records(11), headers={**kit.predict, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]  # not 22 "field required" errors for the 11 records
    assert error["type"] == "too_long" and error["loc"] == ["body", "records"]
    assert error["msg"] == "at most 10 records per request, got 11: split the request"


ABUSIVE_BODIES = [
    # The finding: a body of empty objects, as big as the limit allows (~2.8 M objects).
    ("8 MiB of empty records", _empty_records(8 * MB // 3 - 10)),
    # Just under the JSON value budget (10 000 records × 24): parsed, then too many records.
    ("119 000 empty records", _empty_records(119_000)),
    ("deep nesting", b'{"records":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("a huge string", b'{"records":[{"counter_id":"' + b"x" * (7 * MB) + b'","counted_at":"2024"}]}'),
    (
        "239 000 floats beside the records",
        b'{"records":[],"model_type":[' + b",".join([b"1.5"] * 239_000) + b"]}",
    ),
]


@pytest.mark.parametrize(("case", "body"), ABUSIVE_BODIES, ids=[case for case, _ in ABUSIVE_BODIES])
def test_refused_bodies_cost_bounded_memory(fresh_app, kit, case, body):
    client, settings = fresh_app()
    assert len(body) <= settings.serving_max_body_bytes  # within the limits: not a 413
    headers = {**kit.predict, "Content-Type": "application/json"}
    response, peak = _peak_while(lambda: client.post("/predict", content=body, headers=headers))
    assert response.status_code == 422, response.text[:500]
    # The body itself sits in the client and the server (a few copies); nothing else may add up.
    assert peak - 3 * len(body) < REFUSAL_BUDGET_BYTES, f"{case}: {peak / MB:.0f} MB traced"


def test_invalid_records_stop_validation_at_the_reported_errors(fresh_app, kit):
    client, _ = fresh_app()
    response = client.post(
        "/predict",
        content=_empty_records(10_000),
        headers={**kit.predict, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    details = response.json()["detail"]
    assert len(details) == 100 and details[-1]["type"] == "truncated"
    # Validation stopped after the first chunk of records: the rest were never looked at.
    assert (
        details[-1]["msg"]
        == "925 more errors in the first 512 records; the 9488 records after them not checked"
    )


async def _call(app: FastAPI, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """``(status, receive calls)`` of one request straight through the ASGI app."""
    received = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b'{"records": []}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    await app(scope, receive, send)
    return status, received


BODY_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(8 * MB - 1).encode())]


@pytest.mark.parametrize("path", ["/predict", "/train", "/promote_champion", "/evaluate", "/no/such/route"])
@pytest.mark.parametrize("key", [None, b"not-a-key"], ids=["no key", "wrong key"])
def test_a_body_without_a_valid_key_is_never_read(served, path, key):
    headers = list(BODY_HEADERS) + ([(b"x-api-key", key)] if key else [])
    status, received = asyncio.run(_call(served.client.app, "POST", path, headers))
    assert (status, received) == (401, 0)


def test_a_valid_key_gets_its_body_read(served, kit):
    headers = [(b"content-type", b"application/json"), (b"x-api-key", kit.predict_key.encode())]
    status, received = asyncio.run(_call(served.client.app, "POST", "/predict", headers))
    assert (status, received) == (200, 1)


def _series(client: Any) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_made_up_methods_and_paths_do_not_grow_the_metrics(fresh_app):
    client, _ = fresh_app()
    # One of each kind first, so that the "other" and "<unmatched>" series exist.
    client.request("FROB", "/predict")
    client.get("/no/such/path")
    client.request("FROB", "/nothing/here")
    client.put("/predict/0")
    _series(client)  # and /metrics itself
    before = _series(client)
    for number in range(1_000):
        client.request(f"M{number:04d}X", f"/p/{number}")
        client.request("PUT", f"/predict/{number}")
    after = _series(client)
    assert after == before, sorted(after - before)[:10]
    methods = {dict(labels).get("method") for name, labels in after if name.endswith("requests_total")}
    assert methods <= {"GET", "POST", "PUT", "other"}
