"""The model registry (summary.json) against the GCS emulator.

gcp-storage-emulator ignores ``ifGenerationMatch`` (it accepts stale writes), so the registry's
optimistic concurrency cannot be shown against it directly. ``PreconditionProxy`` sits between
the client and the emulator and enforces the precondition the way GCS does (412
conditionNotMet), so the concurrency tests exercise the production path end to end: the real
client library, real HTTP 412s, the registry's re-read and retry. If a future emulator honours
the precondition, the direct variant of the concurrency test runs too.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google.cloud.storage as gcs
import pytest
from google.api_core.exceptions import PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from pydantic import ValidationError

from tests.unit.ml.registry_samples import entry as sample_entry
from velocast.ml.registry import (
    ChampionTestModeError,
    DuplicateEntryError,
    PromotionStatus,
    Registry,
    RegistryConflictError,
    RegistryFormatError,
)
from velocast.ml.registry_entries import (
    RegistryEntry,
    UnknownEnvironmentError,
    UnknownRunError,
    normalize_env,
)
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]

WRITERS = 8
ENTRIES_PER_WRITER = 5


def entry(
    run_id: str, model_type: str = "hgb", r2_current: float | None = 0.80, **options: Any
) -> RegistryEntry:
    """A sample entry whose ``extra`` the store must keep."""
    return sample_entry(run_id, model_type, r2_current, extra={"git_sha": "abc123"}, **options)


def client_for(endpoint: str, project: str) -> gcs.Client:
    return gcs.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


@pytest.fixture
def registry_settings(local_stack: Any, settings: VelocastSettings) -> VelocastSettings:
    return settings.model_copy(update={"registry_object": f"tests/{uuid.uuid4().hex}/summary.json"})


@pytest.fixture
def registry(registry_settings: VelocastSettings) -> Registry:
    return Registry(registry_settings)


# --- a GCS front that enforces generation preconditions ------------------------------------------


class PreconditionProxy:
    """Forwards to the emulator; answers 412 when ``ifGenerationMatch`` does not hold."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        # Check-then-forward must be atomic, as it is inside GCS.
        self.lock = threading.Lock()
        self.reject_all = False
        self.accepted = 0
        self.rejected = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.handle(self)

            def do_POST(self) -> None:
                proxy.handle(self)

            def do_PUT(self) -> None:
                proxy.handle(self)

            def do_PATCH(self) -> None:
                proxy.handle(self)

            def do_DELETE(self) -> None:
                proxy.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> PreconditionProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _generation(self, bucket: str, name: str) -> int:
        status, _, data = self._request("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}", b"", {})
        return 0 if status == 404 else int(json.loads(data)["generation"])

    @staticmethod
    def _target(path: str, body: bytes) -> tuple[str, str]:
        """Bucket and object of a JSON API request (a multipart upload names it in its body)."""
        segments = urlsplit(path).path.split("/")
        bucket = segments[segments.index("b") + 1]
        if "o" in segments and segments.index("o") + 1 < len(segments):
            return bucket, unquote("/".join(segments[segments.index("o") + 1 :]))
        metadata = next(line for line in body.split(b"\r\n") if line.startswith(b"{"))
        return bucket, str(json.loads(metadata)["name"])

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        expected = parse_qs(urlsplit(request.path).query).get("ifGenerationMatch")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "connection"}}
        with self.lock:
            if expected is not None:
                current = self._generation(*self._target(request.path, body))
                if self.reject_all or int(expected[0]) != current:
                    self.rejected += 1
                    error = {
                        "code": 412,
                        "message": "At least one of the pre-conditions you specified did not hold.",
                    }
                    error["errors"] = [{"reason": "conditionNotMet", "message": error["message"]}]
                    self._reply(
                        request, 412, [("Content-Type", "application/json")], json.dumps({"error": error})
                    )
                    return
                self.accepted += 1
            status, upstream_headers, data = self._request(request.command, request.path, body, headers)
        self._reply(request, status, upstream_headers, data)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, headers: Any, body: bytes | str) -> None:
        payload = body.encode() if isinstance(body, str) else body
        request.send_response(status)
        for name, value in headers:
            if name.lower() not in {"content-length", "transfer-encoding", "connection", "date", "server"}:
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


@pytest.fixture
def proxy(registry_settings: VelocastSettings) -> Iterator[PreconditionProxy]:
    assert registry_settings.storage_emulator_host
    with PreconditionProxy(registry_settings.storage_emulator_host) as running:
        yield running


def test_the_proxy_enforces_generation_preconditions(
    proxy: PreconditionProxy, settings: VelocastSettings
) -> None:
    bucket = client_for(proxy.endpoint, settings.gcp_project).bucket(settings.bucket)
    blob = bucket.blob(f"tests/{uuid.uuid4().hex}/a b.json")
    blob.upload_from_string("v1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string("v2", if_generation_match=0)
    generation = bucket.get_blob(blob.name).generation
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string("v2", if_generation_match=generation - 1)
    blob.upload_from_string("v2", if_generation_match=generation)
    assert bucket.blob(blob.name).download_as_bytes() == b"v2"
    with pytest.raises(PreconditionFailed):
        bucket.blob(blob.name).download_as_bytes(if_generation_match=generation)


# --- reads, adds, promotions ---------------------------------------------------------------------


def test_a_new_registry_is_empty(registry: Registry) -> None:
    assert registry.summary() == {
        "schema_version": 1,
        "environments": {"dev": {"models": []}, "prod": {"models": []}},
    }
    assert registry.entries("dev") == []
    assert registry.champion("prod") is None
    assert registry.generation() == 0


def test_added_entries_are_stored_in_the_documented_format(registry: Registry) -> None:
    stored = registry.add_entry(
        "dev", entry("run-1", created_at=datetime(2024, 3, 3, 1, tzinfo=timezone(timedelta(hours=1))))
    )
    registry.add_entry("dev", entry("run-2").to_dict() | {"run_id": "run-2b"})
    raw = registry.summary()
    assert raw["schema_version"] == 1
    assert raw["environments"]["prod"] == {"models": []}
    first = raw["environments"]["dev"]["models"][0]
    assert set(first) == {
        "run_id",
        "model_uri",
        "model_type",
        "metrics",
        "data_window",
        "created_at",
        "is_champion",
        "test_mode",
        "extra",
        "promotions",
    }
    assert first["promotions"] == []  # the promotion history: empty until promoted
    assert first["created_at"] == "2024-03-03T00:00:00Z"
    assert first["metrics"]["test_current"] == {"r2": 0.8, "rmse": 42.0, "mae": 26.0}
    assert first["data_window"] == {"start": "2023-01-01T00:00:00Z", "end": "2024-02-29T23:00:00Z"}
    assert first["is_champion"] is False
    assert first["extra"] == {"git_sha": "abc123"}
    assert [e.run_id for e in registry.entries("dev")] == ["run-1", "run-2b"]
    assert registry.entries("dev")[0] == stored


def test_adding_is_idempotent_but_a_conflicting_entry_is_refused(registry: Registry) -> None:
    registry.add_entry("dev", entry("run-1"))
    registry.add_entry("dev", entry("run-1"))
    assert len(registry.entries("dev")) == 1
    with pytest.raises(DuplicateEntryError, match="run-1"):
        registry.add_entry("dev", entry("run-1", r2_current=0.5))
    # The same run id under another model type or in another environment is another entry.
    registry.add_entry("dev", entry("run-1", model_type="rf"))
    registry.add_entry("prod", entry("run-1"))
    assert len(registry.entries("dev")) == 2
    with pytest.raises(ValueError, match="promote"):
        registry.add_entry("dev", entry("run-9").model_copy(update={"is_champion": True}))


def test_promotion_keeps_exactly_one_champion_per_model_type(registry: Registry) -> None:
    for run_id, model_type in [("a", "hgb"), ("b", "hgb"), ("c", "rf")]:
        registry.add_entry("prod", entry(run_id, model_type))

    first = registry.promote("prod", "hgb", "a")
    assert first.status is PromotionStatus.PROMOTED
    assert first.previous_champion is None
    assert first.champion.run_id == "a"
    assert first.champion.is_champion

    registry.promote("prod", "rf", "c")
    before = registry.generation()
    second = registry.promote("prod", "hgb", "b")
    assert registry.generation() != before
    assert second.status is PromotionStatus.PROMOTED
    assert second.previous_champion is not None
    assert second.previous_champion.run_id == "a"
    assert not second.previous_champion.is_champion
    assert "replacing run 'a'" in second.message

    champions = {(e.model_type, e.run_id) for e in registry.entries("prod") if e.is_champion}
    assert champions == {("hgb", "b"), ("rf", "c")}

    unchanged = registry.generation()
    again = registry.promote("prod", "hgb", "b")
    assert again.status is PromotionStatus.ALREADY_CHAMPION
    assert registry.generation() == unchanged  # nothing to change, nothing written
    assert again.previous_champion is None
    assert json.loads(json.dumps(again.to_dict()))["status"] == "already_champion"


def test_promoting_an_unknown_run_fails(registry: Registry) -> None:
    registry.add_entry("dev", entry("known", "rf"))
    with pytest.raises(UnknownRunError, match="'missing'"):
        registry.promote("dev", "rf", "missing")
    with pytest.raises(UnknownRunError, match=r"registered as model_type \['rf'\]"):
        registry.promote("dev", "hgb", "known")
    with pytest.raises(UnknownRunError):
        registry.promote("prod", "rf", "known")


def test_champion_loading_priority(registry: Registry) -> None:
    registry.add_entry("dev", entry("low", "hgb", 0.70))
    registry.add_entry("dev", entry("best", "hgb", 0.90))
    registry.add_entry("dev", entry("undefined", "hgb", math.nan))
    registry.add_entry("dev", entry("rf-1", "rf", 0.85))
    # No champion yet: the best R² on test_current.
    assert registry.champion("dev").run_id == "best"  # type: ignore[union-attr]
    assert registry.champion("dev", "rf").run_id == "rf-1"  # type: ignore[union-attr]
    assert registry.champion("dev", "lstm") is None
    # A champion wins over a better non-champion.
    registry.promote("dev", "hgb", "low")
    assert registry.champion("dev", "hgb").run_id == "low"  # type: ignore[union-attr]
    # Across types: the best of the champions, not the best entry.
    assert registry.champion("dev").run_id == "low"  # type: ignore[union-attr]
    registry.promote("dev", "rf", "rf-1")
    assert registry.champion("dev").run_id == "rf-1"  # type: ignore[union-attr]


def test_environment_names_are_case_insensitive(registry: Registry) -> None:
    registry.add_entry("DEV", entry("run-1"))
    registry.promote("Dev", "hgb", "run-1")
    assert registry.champion("dev").run_id == "run-1"  # type: ignore[union-attr]
    assert [e.run_id for e in registry.entries("dEv")] == ["run-1"]
    assert normalize_env("PROD") == "prod"


@pytest.mark.parametrize("env", ["staging", "local", "", "production"])
def test_unknown_environments_are_refused(registry: Registry, env: str) -> None:
    with pytest.raises(UnknownEnvironmentError, match="unknown registry environment"):
        registry.add_entry(env, entry("run-1"))
    with pytest.raises(ValueError, match="dev"):
        registry.champion(env)
    assert registry.summary()["environments"] == {"dev": {"models": []}, "prod": {"models": []}}


def test_a_test_mode_entry_never_becomes_prod_champion(registry: Registry) -> None:
    registry.add_entry("prod", entry("sample", test_mode=True, r2_current=0.99))
    registry.add_entry("dev", entry("sample", test_mode=True, r2_current=0.99))
    with pytest.raises(ChampionTestModeError, match="test mode"):
        registry.promote("PROD", "hgb", "sample")
    assert not any(e.is_champion for e in registry.entries("prod"))
    # Nor through the no-champion fallback.
    assert registry.champion("prod") is None
    registry.add_entry("prod", entry("real", r2_current=0.7))
    assert registry.champion("prod").run_id == "real"  # type: ignore[union-attr]
    # In dev it may.
    assert registry.promote("dev", "hgb", "sample").status is PromotionStatus.PROMOTED
    assert registry.champion("dev").run_id == "sample"  # type: ignore[union-attr]


def test_invalid_entries_and_unknown_formats_are_refused(registry: Registry) -> None:
    with pytest.raises(ValidationError):
        registry.add_entry("dev", entry("run-1").to_dict() | {"created_at": "2024-03-03T00:00:00"})
    with pytest.raises(ValidationError, match="before it starts"):
        registry.add_entry(
            "dev",
            entry("run-1").to_dict()
            | {"data_window": {"start": "2024-02-01T00:00Z", "end": "2024-01-01T00:00Z"}},
        )
    registry.bucket.blob(registry.object_name).upload_from_string(json.dumps({"schema_version": 2}))
    with pytest.raises(RegistryFormatError, match="schema_version 2"):
        registry.add_entry("dev", entry("run-1"))
    assert json.loads(registry.bucket.blob(registry.object_name).download_as_bytes()) == {"schema_version": 2}


def test_unknown_fields_survive_a_rewrite(registry: Registry) -> None:
    registry.add_entry("dev", entry("run-1"))
    doc = registry.summary()
    doc["environments"]["dev"]["models"][0]["future_field"] = {"x": 1}
    doc["environments"]["dev"]["models"][0]["metrics"]["test_current"]["mape"] = 0.1
    doc["note"] = "kept"
    registry.bucket.blob(registry.object_name).upload_from_string(json.dumps(doc))
    registry.promote("dev", "hgb", "run-1")
    stored = registry.summary()
    assert stored["note"] == "kept"
    assert stored["environments"]["dev"]["models"][0]["future_field"] == {"x": 1}
    assert stored["environments"]["dev"]["models"][0]["metrics"]["test_current"]["mape"] == 0.1


# --- concurrency ---------------------------------------------------------------------------------


def add_concurrently(settings: VelocastSettings, endpoint: str) -> list[RegistryEntry]:
    """WRITERS threads, each with its own client, each adding ENTRIES_PER_WRITER entries."""
    start = threading.Barrier(WRITERS)

    def writer(index: int) -> None:
        # One client per writer, like separate processes; a retry budget sized for 8-way contention.
        registry = Registry(settings, client_for(endpoint, settings.gcp_project), max_attempts=40)
        start.wait()
        for number in range(ENTRIES_PER_WRITER):
            registry.add_entry("dev", entry(f"writer{index}-run{number}"))

    with ThreadPoolExecutor(WRITERS) as pool:
        for future in [pool.submit(writer, i) for i in range(WRITERS)]:
            future.result()
    return Registry(settings).entries("dev")


def expected_run_ids() -> set[str]:
    return {f"writer{i}-run{n}" for i in range(WRITERS) for n in range(ENTRIES_PER_WRITER)}


def test_concurrent_writers_never_lose_an_entry(
    registry_settings: VelocastSettings, proxy: PreconditionProxy
) -> None:
    stored = add_concurrently(registry_settings, proxy.endpoint)
    assert len(stored) == WRITERS * ENTRIES_PER_WRITER
    assert {e.run_id for e in stored} == expected_run_ids()
    # The writers did collide, and the 412s were retried rather than lost.
    assert proxy.rejected > 0


def test_a_write_after_a_concurrent_change_is_reapplied_not_lost(
    registry_settings: VelocastSettings, proxy: PreconditionProxy
) -> None:
    """Deterministic interleaving: B writes between A's read and A's write."""
    a = Registry(registry_settings, client_for(proxy.endpoint, registry_settings.gcp_project))
    b = Registry(registry_settings, client_for(proxy.endpoint, registry_settings.gcp_project))
    a.add_entry("dev", entry("first"))
    original_read = a._read
    interleaved = False

    def read_then_let_b_write() -> tuple[dict[str, Any], int]:
        nonlocal interleaved
        result = original_read()
        if not interleaved:
            interleaved = True
            b.add_entry("dev", entry("from-b"))
        return result

    a._read = read_then_let_b_write  # type: ignore[method-assign]
    a.add_entry("dev", entry("from-a"))
    assert [e.run_id for e in a.entries("dev")] == ["first", "from-b", "from-a"]
    assert proxy.rejected == 1


def test_retries_are_bounded(registry_settings: VelocastSettings, proxy: PreconditionProxy) -> None:
    registry = Registry(
        registry_settings,
        client_for(proxy.endpoint, registry_settings.gcp_project),
        max_attempts=3,
        backoff_seconds=0.001,
    )
    proxy.reject_all = True
    with pytest.raises(RegistryConflictError, match="3 attempts"):
        registry.add_entry("dev", entry("never"))
    assert proxy.rejected == 3
    proxy.reject_all = False
    assert registry.entries("dev") == []
