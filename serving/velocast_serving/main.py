"""The app factory of the serving sidecar.

Run it with::

    uvicorn velocast_serving.main:create_app --factory --host 0.0.0.0 --port 8000 --workers 2

Every worker builds its own app and model store; settings come from the environment
(``VELOCAST_*``, see ``velocast.settings``). With several workers, set ``PROMETHEUS_MULTIPROC_DIR``
(see ``velocast_serving.metrics``). ``velocast_serving.main:app`` also works: the module builds
it on first access.

Never imports Airflow: the image stays small and the DAG side's configuration is not read here.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any, Final

from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from velocast.settings import VelocastSettings, get_settings
from velocast_serving.api import ROUTERS
from velocast_serving.auth import INVALID_KEY, MISSING_KEY, ApiKeys, presented_key
from velocast_serving.context import ServingContext
from velocast_serving.errors import EXCEPTION_HANDLERS
from velocast_serving.jobs import JobStore
from velocast_serving.metrics import UNMATCHED_ROUTE, ServingMetrics, TrainingJobsCollector, method_label
from velocast_serving.model_store import ModelStore
from velocast_serving.openapi import document_bodies
from velocast_serving.schemas import PredictRequest
from velocast_serving.workers import WorkerBoard

log = logging.getLogger(__name__)

# Routes anyone may call (no key, no body): liveness, readiness, metrics and the API's description.
OPEN_PATHS: Final = frozenset(
    {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)


# --- middleware (pure ASGI: no per-request task or body copy, unlike BaseHTTPMiddleware) ------------


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # what the client gets if the app raises (ServerErrorMiddleware answers)

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # FastAPI puts the matched route in the scope; unknown paths share one label.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = method_label(str(scope.get("method", "")))
            self.metrics.requests.labels(route, method, str(status_code)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)
            if status_code >= 400:
                self.metrics.errors.labels(route, str(status_code)).inc()


class AuthenticateBodiesMiddleware:
    """401 before a single body byte is read, for a request with a body and no valid key.

    FastAPI reads and parses a route's body before its dependencies (the key check) run: without
    this, a keyless client could make a worker parse megabytes. Open routes take no body; the
    routes' own dependencies still decide the role (403) and answer keyless requests without body.
    """

    def __init__(
        self, app: ASGIApp, api_keys: ApiKeys, open_paths: frozenset[str], routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.api_keys = api_keys
        self.open_paths = open_paths
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        presented = presented_key(scope.get("headers", []))
        if presented is None or self.api_keys.role_of(presented) is None:
            detail = MISSING_KEY if presented is None else INVALID_KEY
            headers = {"Connection": "close", "WWW-Authenticate": "Bearer"}
            # The route template, for the metrics' label (the router never sees this request).
            matched = next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
            if matched is not None:
                scope["route"] = matched
            response = JSONResponse(
                {"detail": detail}, status_code=status.HTTP_401_UNAUTHORIZED, headers=headers
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in {b"", b"0"}):
            return True
    return False


class BodySizeLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _json_error(
                scope, receive, send, status.HTTP_400_BAD_REQUEST, "invalid Content-Length header"
            )
            return
        if declared is not None and declared > self.max_bytes:
            await _json_error(scope, receive, send, status.HTTP_413_CONTENT_TOO_LARGE, self._message())
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI lets HTTPException out of body reading; its handler answers 413.
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes (serving_max_body_bytes)"


def _content_length(scope: Scope) -> int | None:
    """The declared length; None if absent, -1 if unreadable."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


async def _json_error(scope: Scope, receive: Receive, send: Send, status_code: int, detail: str) -> None:
    # Connection: close, as the unread body cannot be skipped on a kept-alive connection.
    response = JSONResponse({"detail": detail}, status_code=status_code, headers={"Connection": "close"})
    await response(scope, receive, send)


# --- the factory ------------------------------------------------------------------------------------


def _configure_logging() -> None:
    """INFO logs of velocast under uvicorn, which only configures its own loggers."""
    if logging.getLogger().handlers:
        return  # the host (pytest, a logging config) decides
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"))
    for name in ("velocast", "velocast_serving"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def _lifespan(context: ServingContext) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            # Loaded before the first request is accepted (GCS I/O off the event loop).
            await run_in_threadpool(context.store.refresh)
        except Exception:
            log.exception("initial model load failed; the poller keeps trying")
        # Libraries and the first model live as long as the worker: out of the cyclic GC's sight,
        # full collections stop rescanning them (p99 of a 1000-record /predict: 170 → 45 ms).
        gc.collect()
        gc.freeze()
        context.store.start()
        try:
            yield
        finally:
            context.store.stop()
            context.workers.withdraw()
            context.metrics.worker_exited()

    return lifespan


def create_app(settings: VelocastSettings | None = None, *, model_store: ModelStore | None = None) -> FastAPI:
    """A new app; raises ``InsecureSettingsError`` on a missing or placeholder admin key."""
    settings = settings if settings is not None else get_settings()
    api_keys = ApiKeys.from_settings(settings)  # first: a misconfigured sidecar never starts
    _configure_logging()
    metrics = ServingMetrics(settings.metrics_prefix)
    store = model_store if model_store is not None else ModelStore(settings)
    store.add_listener(metrics)
    jobs = JobStore.from_settings(settings)
    metrics.add_collector(TrainingJobsCollector(jobs, settings.metrics_prefix))
    workers = WorkerBoard.from_settings(settings)
    store.after_refresh(workers.publish)
    context = ServingContext(
        settings=settings, api_keys=api_keys, store=store, metrics=metrics, jobs=jobs, workers=workers
    )

    app = FastAPI(
        title="velocast serving",
        version="0.1.0",
        description="Hourly bike counts at the City of Paris' counters, from the registry's champion.",
        lifespan=_lifespan(context),
    )
    app.state.context = context
    for router in ROUTERS:
        app.include_router(router)
    # Errors are answered by family (velocast_serving.errors): routes raise, they do not map.
    for error_type, handler in EXCEPTION_HANDLERS:
        app.add_exception_handler(error_type, handler)
    document_bodies(app, [PredictRequest])
    # Added last = outermost: the key is checked before the size, and the metrics see both answers.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.serving_max_body_bytes)
    app.add_middleware(
        AuthenticateBodiesMiddleware, api_keys=api_keys, open_paths=OPEN_PATHS, routes=app.router.routes
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


@cache
def _default_app() -> FastAPI:
    return create_app()


def __getattr__(name: str) -> FastAPI:
    """``velocast_serving.main:app``: the app from the environment's settings, built on first access."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _default_app()


__all__ = ["AuthenticateBodiesMiddleware", "BodySizeLimitMiddleware", "MetricsMiddleware", "create_app"]
