"""Fuzzing the JSON endpoints that the app's own OpenAPI document describes: never a 5xx.

Bodies come from three sources: values built from the request schema (``$ref``, ``anyOf``/
``oneOf``, enums, bounds: mostly valid), the same with random parts replaced by arbitrary JSON,
and arbitrary JSON or bytes. Dates get special care: real ISO strings (with and without offsets,
years 1 to 9999, off-hour minutes), as the normalization and calendar code is where overflow
and parsing bugs would hide.
"""

from __future__ import annotations

import fcntl
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from velocast_serving.evaluations import Evaluations

from velocast.ml.training_request import TrainingRequest

pytestmark = [pytest.mark.stack]

MAX_EXAMPLES = 120

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and ±Infinity too: Python's json module reads those tokens
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def date_texts(draw: st.DrawFn) -> str:
    """ISO dates, mostly recent and on the hour (readable), some far out or off the hour."""
    recent = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2025, 12, 31))
    anywhen = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
    moment = draw(st.sampled_from([recent, recent, recent, anywhen]).flatmap(lambda s: s))
    offset = draw(st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-11))]))
    if offset is not None:
        moment = moment.replace(tzinfo=offset)
    if draw(st.integers(0, 4)) > 0:
        moment = moment.replace(minute=0, second=0, microsecond=0)
    text = moment.isoformat()
    return draw(st.sampled_from([text, text, text.replace("+00:00", "Z"), text[:10], text.replace("T", " ")]))


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def from_schema(  # noqa: PLR0911 (one return per JSON Schema type)
    schema: dict[str, Any], components: dict[str, Any], name: str = "", counters: tuple[str, ...] = ()
) -> Any:
    """A strategy for values of an OpenAPI (JSON Schema) ``schema``."""
    schema = _resolve(schema, components)
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.text(max_size=8)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return st.one_of([from_schema(alt, components, name, counters) for alt in alternatives])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        strategies = {key: from_schema(sub, components, key, counters) for key, sub in properties.items()}
        return st.fixed_dictionaries(
            {k: v for k, v in strategies.items() if k in required},
            optional={k: v for k, v in strategies.items() if k not in required},
        )
    if kind == "array":
        items = schema.get("prefixItems")
        if items:
            return st.tuples(*(from_schema(i, components, name, counters) for i in items)).map(list)
        return st.lists(from_schema(schema.get("items", {}), components, name, counters), max_size=6)
    if kind == "string":
        # Repeated alternatives weigh more: mostly values that get past validation.
        if "date" in name or name == "counted_at":
            return date_texts() | date_texts() | date_texts() | st.text(max_size=20)
        if name in {"counter_id", "id_compteur"} and counters:
            return st.sampled_from(counters) | st.sampled_from(counters) | st.text(max_size=20)
        if name == "env":
            return st.sampled_from(["dev", "prod", "DEV", " prod "]) | st.text(max_size=8)
        return st.text(max_size=int(schema.get("maxLength", 30)))
    if kind == "integer":
        return st.integers()
    if kind == "number":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.floats(min_value=low, max_value=high) if low is not None else st.floats()
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """A schema value with some of its parts replaced by arbitrary JSON."""

    def mutate(value: Any) -> Any:
        if draw(st.integers(0, 9)) == 0:
            return draw(json_values)
        if isinstance(value, dict):
            return {key: mutate(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mutate(item) for item in value]
        return value

    return mutate(draw(base))


def _bodies(app, path: str, counters: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    structured = from_schema(schema, components, counters=counters)
    # Weighted towards schema values, which reach the model; the rest test the walls.
    values = st.sampled_from(["schema"] * 4 + ["mutated", "any"]).flatmap(
        lambda kind: {"schema": structured, "mutated": mutated(structured), "any": json_values}[kind]
    )
    as_json = values.map(lambda value: json.dumps(value).encode())
    return st.sampled_from([as_json] * 5 + [st.binary(max_size=200)]).flatmap(lambda s: s)


def _check(response, path: str, body: bytes) -> None:
    assert response.status_code < 500, f"{path} → {response.status_code} for {body[:300]!r}: {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    if path in {"/predict", "/compat/predict"} and response.status_code == 200:
        sent = json.loads(body)
        assert len(response.json()["predictions"]) == len(sent["records"])


@pytest.fixture(scope="module")
def training_busy(served: Any) -> Iterator[None]:
    """A (sleeping) job holds the app's training lock and the test the evaluation slot: fuzzed
    /train and /evaluate bodies that pass validation get 409 instead of starting trainings or
    evaluation processes (test_train.py and test_evaluations.py cover real ones)."""
    jobs = served.client.app.state.context.jobs
    started = jobs.submit(
        TrainingRequest(),
        served.settings,
        command=lambda root, job_id: [sys.executable, "-c", "import time; time.sleep(900)"],
    )
    evaluation_slot = Evaluations(jobs.root).lock_path.open("a")
    fcntl.flock(evaluation_slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
    yield
    evaluation_slot.close()
    status = jobs.get(started["job_id"])
    pid = status.get("pid") if status else None
    for child in psutil.Process().children(recursive=True):
        if child.cmdline()[-1:] == ["import time; time.sleep(900)"] or child.pid == pid:
            child.kill()


POSTS = ["/predict", "/compat/predict", "/promote_champion", "/train", "/evaluate"]
# What an authorised, schema-valid body reaches past the validation walls.
REACHED = {"/predict": 200, "/compat/predict": 200, "/promote_champion": 404, "/train": 409, "/evaluate": 404}


def reaching_body(path: str, counter: str) -> bytes:
    """One body per route that gets past validation to the REACHED status, whatever the draws."""
    bodies: dict[str, dict[str, Any]] = {
        "/predict": {"records": [{"counter_id": counter, "counted_at": "2024-03-04T08:00:00Z"}]},
        "/compat/predict": {
            "records": [{"nom_du_compteur": "x", "date_et_heure_de_comptage": "2024-03-04T09:00:00+01:00"}]
        },
        "/promote_champion": {"model_type": "hgb", "run_id": "no-such-run"},
        "/train": {"model_type": "hgb"},
        "/evaluate": {"model_type": "hgb", "run_id": "no-such-run"},
    }
    return json.dumps(bodies[path]).encode()


@pytest.mark.usefixtures("training_busy")
@pytest.mark.parametrize("path", POSTS)
def test_json_endpoints_never_answer_5xx(served, kit, path):
    client = served.client
    posts = {p for p, item in client.app.openapi()["paths"].items() if "post" in item}
    assert posts == set(POSTS)  # a new endpoint joins this test
    seen: dict[int, int] = {}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        body=_bodies(client.app, path, served.artifacts.counters), key=st.sampled_from([kit.admin] * 4 + [{}])
    )
    @example(body=reaching_body(path, served.artifacts.counters[0]), key=kit.admin)
    @example(body=b"[]", key=kit.admin)  # 422
    @example(body=b"{}", key={})  # 401
    def fuzz(body: bytes, key: dict[str, str]) -> None:
        response = client.post(path, content=body, headers={**key, "Content-Type": "application/json"})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        _check(response, path, body)

    fuzz()
    # The fuzzer reached past validation, not only the 401/422 walls.
    assert {401, 422} <= set(seen), seen
    assert REACHED[path] in seen, seen


# --- schemathesis: every operation of the OpenAPI document, with its own generators -------------


@pytest.fixture(scope="module")
def api_schema(served: Any, training_busy: None) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served.client.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
def test_schemathesis_finds_no_server_error(case: Any, kit: Any) -> None:
    for headers in (kit.admin, kit.predict, {}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (
            f"{case.method} {case.path} → {response.status_code}: {response.text}"
        )
        if case.path != "/metrics":
            # schemathesis keeps every value of a header, as a list.
            assert response.headers["content-type"][0].startswith("application/json")
