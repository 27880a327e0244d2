"""The replay's FastAPI app: ``/health``, the records endpoint and the streamed exports.

A local replay of the Paris Open Data Explore API v2.1 for ``comptage-velo-donnees-compteurs``.
Supported: ``GET .../records`` (``where``, ``order_by``, ``limit`` ≤ 100, ``offset`` with
offset + limit ≤ 10000, ``select``, ``timezone``) and ``GET .../exports/json|csv`` (same filters, no
pagination limit, streamed). Like the real API, hours that have not ended yet are not served
(``ReplayConfig.serve_future`` lifts this). The parameters are parsed in ``query``, the rows chosen
in ``data``, the bodies built in ``render``; the ``/__admin`` endpoints come from ``faults``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from velocast.local.replay.data import (
    DATASET,
    INT64_MAX,
    NS_PER_HOUR,
    ReplayData,
    datetime_to_ns,
    default_data_path,
    ns_to_datetime,
    select_rows,
)
from velocast.local.replay.faults import FaultState, admin_router, corrupted_rows
from velocast.local.replay.query import ApiError, parse_int, parse_query
from velocast.local.replay.render import Renderer, api_error, stream_rows

BASE_PATH = f"/api/explore/v2.1/catalog/datasets/{DATASET}"
MAX_LIMIT = 100
MAX_OFFSET_PLUS_LIMIT = 10_000


@dataclass(frozen=True)
class ReplayConfig:
    """How one replay serves its data (the command line fills it; tests set ``now``)."""

    data_path: Path = field(default_factory=default_data_path)
    # Whole weeks added to every date; None: the fewest weeks that make yesterday a complete day.
    shift_weeks: int | None = None
    # The server's idea of "now" (tests); None: the wall clock.
    now: datetime | None = None
    # The real API never serves hours that have not ended; set True to serve the whole shifted copy.
    serve_future: bool = False


def create_app(config: ReplayConfig | None = None) -> FastAPI:
    """The replay app over the data of ``config``, loaded once, with its own fault state."""
    config = config or ReplayConfig()
    data = ReplayData(config.data_path, config.shift_weeks, config.now)
    faults = FaultState()
    app = FastAPI(title="velocast Paris Open Data replay", docs_url=None, redoc_url=None)
    app.state.data, app.state.faults = data, faults

    def until() -> int:
        """Only hours that have ended are published (date + 1h <= now)."""
        if config.serve_future:
            return INT64_MAX
        return datetime_to_ns(config.now or datetime.now(UTC)) - NS_PER_HOUR + 1

    @app.exception_handler(ApiError)
    def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return api_error(400, exc.error_code, exc.message)

    @app.get("/health")
    def health() -> dict[str, Any]:
        first, last = data.first_last()
        return {
            "status": "ok",
            "dataset": DATASET,
            "rows": len(data),
            "counters": len(data.counters),
            "shift_weeks": data.shift_weeks,
            "first_date": first.isoformat(),
            "last_date": last.isoformat(),
            "served_until": None if config.serve_future else ns_to_datetime(until() - 1).isoformat(),
        }

    @app.get(f"{BASE_PATH}/records")
    def records(request: Request) -> Response:
        decision = faults.decide("records")
        if decision.error is not None:
            return decision.error
        params = dict(request.query_params)
        limit = parse_int(params, "limit", 10)
        offset = parse_int(params, "offset", 0)
        if not 0 <= limit <= MAX_LIMIT:
            raise ApiError(
                f"Invalid value for limit API parameter: {limit} was found "
                f"but 0 <= limit <= {MAX_LIMIT} is expected."
            )
        if offset < 0 or offset + limit > MAX_OFFSET_PLUS_LIMIT:
            raise ApiError(
                f"Invalid value for offset API parameter: offset + limit must be lower than or equal to "
                f"{MAX_OFFSET_PLUS_LIMIT} (offset={offset}, limit={limit}). Use the exports endpoints "
                "to download more records."
            )
        query = parse_query(params, until())
        positions = select_rows(data, query)
        renderer = Renderer(data, query, "json")
        rows = renderer.rows(positions[offset : offset + limit])
        if decision.bad_rows:
            rows += renderer.extra(corrupted_rows(data, query, positions, decision.bad_rows))
        body = f'{{"total_count":{len(positions)},"results":[{",".join(rows)}]}}'.encode()
        if decision.truncate:
            body = body[: len(body) // 2]
        return Response(body, media_type="application/json; charset=utf-8")

    def export(request: Request, fmt: Literal["json", "csv"]) -> Response:
        decision = faults.decide("exports_json" if fmt == "json" else "exports_csv")
        if decision.error is not None:
            return decision.error
        params = dict(request.query_params)
        query = parse_query(params, until())
        limit = parse_int(params, "limit", -1)
        delimiter = params.get("delimiter", ";")
        if len(delimiter) != 1:
            raise ApiError(f"Invalid value for delimiter parameter: {delimiter!r}")
        positions = select_rows(data, query)
        if limit >= 0:
            positions = positions[:limit]
        renderer = Renderer(data, query, fmt, delimiter)
        extra = (
            renderer.extra(corrupted_rows(data, query, positions, decision.bad_rows))
            if decision.bad_rows
            else []
        )
        use_labels = params.get("use_labels", "false").lower() == "true"
        chunks = stream_rows(
            renderer, positions, extra=extra, fmt=fmt, use_labels=use_labels, truncate=decision.truncate
        )
        media = "application/json; charset=utf-8" if fmt == "json" else "text/csv; charset=utf-8"
        headers = {"Content-Disposition": f'attachment; filename="{DATASET}.{fmt}"'}
        return StreamingResponse(chunks, media_type=media, headers=headers)

    @app.get(f"{BASE_PATH}/exports/json")
    def exports_json(request: Request) -> Response:
        return export(request, "json")

    @app.get(f"{BASE_PATH}/exports/csv")
    def exports_csv(request: Request) -> Response:
        return export(request, "csv")

    app.include_router(admin_router(faults))
    return app
