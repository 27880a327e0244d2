"""Fault injection: the admin endpoints that make the replay misbehave, and what each fault does.

A test sets faults with ``POST /__admin/faults`` (JSON bodies); "data requests" are the records and
exports calls, and each one asks ``FaultState.decide`` what to do:

- ``{"mode": "rate_limit", "count": N, "retry_after": S}``: 429 with Retry-After / X-RateLimit-* headers;
- ``{"mode": "server_error", "count": N}``: 500;
- ``{"mode": "truncated", "count": N}``: a 200 whose body is cut in the middle;
- ``{"mode": "malformed_rows", "count": N, "rows": K}``: K bad rows appended (``corrupted_rows``);
- ``{"mode": "fail_after", "after": N}``: 500 after N good requests, until cleared;
- ``{"mode": "exports_down"}``: exports answer 503 until cleared; records still work.

``DELETE /__admin/faults`` clears them; ``GET /__admin/stats`` counts requests per endpoint and fired
faults (``DELETE`` resets it).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from velocast.local.replay.data import (
    INT64_MAX,
    INT64_MIN,
    NS_PER_HOUR,
    NS_PER_WEEK,
    IntArray,
    Query,
    ReplayData,
)
from velocast.local.replay.render import api_error, format_dates, full_record

FaultMode = Literal["rate_limit", "server_error", "truncated", "malformed_rows", "fail_after", "exports_down"]
Endpoint = Literal["records", "exports_json", "exports_csv"]


class FaultRequest(BaseModel):
    """The body of ``POST /__admin/faults``; the fields a mode does not use are ignored."""

    mode: FaultMode
    count: int = Field(default=1, ge=0)
    retry_after: int = Field(default=1, ge=0)
    rows: int = Field(default=7, ge=1)
    after: int = Field(default=0, ge=0)


@dataclass
class Fault:
    """An active fault and how many more requests it hits."""

    mode: FaultMode
    count: int
    retry_after: int
    rows: int
    after: int
    seen: int = 0  # data requests since the fault was set (fail_after)


@dataclass
class Decision:
    """What the fault layer does to one data request."""

    error: Response | None = None
    truncate: bool = False
    bad_rows: int = 0


class FaultState:
    """The active faults and the request/fired counters, shared by the app's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: list[Fault] = []
        self.requests: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()

    def add(self, request: FaultRequest) -> None:
        with self._lock:
            self.faults.append(Fault(**request.model_dump()))

    def clear(self) -> int:
        with self._lock:
            cleared, self.faults = len(self.faults), []
            return cleared

    def decide(self, endpoint: Endpoint) -> Decision:
        with self._lock:
            self.requests[endpoint] += 1
            decision = Decision()
            for fault in self.faults:
                if fault.mode == "fail_after":
                    fault.seen += 1
                    if fault.seen > fault.after and decision.error is None:
                        decision.error = api_error(
                            500, "InternalServerError", "Injected failure (fail_after)"
                        )
                        self.fired[fault.mode] += 1
                elif fault.mode == "exports_down":
                    if endpoint != "records" and decision.error is None:
                        decision.error = api_error(
                            503, "ServiceUnavailable", "Injected failure: exports are down"
                        )
                        self.fired[fault.mode] += 1
                elif fault.count > 0 and decision.error is None:
                    if fault.mode == "rate_limit":
                        decision.error = rate_limited(fault.retry_after)
                    elif fault.mode == "server_error":
                        decision.error = api_error(
                            500, "InternalServerError", "Injected failure (server_error)"
                        )
                    elif fault.mode == "truncated":
                        decision.truncate = True
                    else:
                        decision.bad_rows = fault.rows
                    fault.count -= 1
                    self.fired[fault.mode] += 1
            self.faults = [f for f in self.faults if f.count > 0 or f.mode in ("fail_after", "exports_down")]
            return decision

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "faults_fired": dict(self.fired),
                "active_faults": [vars(f).copy() for f in self.faults],
            }

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self.fired.clear()


def rate_limited(retry_after: int) -> JSONResponse:
    response = api_error(429, "TooManyRequests", "Too many requests on the domain (injected rate limit).")
    response.headers.update(
        {
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(time.time()) + retry_after),
        }
    )
    return response


def corrupted_rows(data: ReplayData, query: Query, positions: IntArray, k: int) -> list[dict[str, Any]]:
    """K deterministic bad rows, appended to a response (the real rows are all still there).

    Rows that keep a valid key use a made-up channel of a real site (``<site>-90000000<i>``), so that
    they never collide with a real (counter, hour).
    """
    code = int(data.codes[positions[0]]) if len(positions) else 0
    if len(positions):
        inside = int(data.dates[positions[0]])
    else:
        inside = query.lo if query.lo != INT64_MIN else int(data.dates[0])
    if query.hi != INT64_MAX:
        outside = query.hi + 24 * NS_PER_HOUR
    elif query.lo != INT64_MIN:
        outside = query.lo - 24 * NS_PER_HOUR
    else:
        outside = int(data.dates[-1]) + NS_PER_WEEK
    rows: list[dict[str, Any]] = []
    for i in range(k):
        row = full_record(data, code, inside, 10 + i, query.tz)
        row["id_compteur"] = f"{row['id']}-{900_000_000 + i}"
        kind = i % 7
        if kind == 0:
            row["sum_counts"] = -5
        elif kind == 1:
            row["sum_counts"] = "abc"
        elif kind == 2:
            row["id_compteur"] = None
        elif kind == 3:
            row["date"] = "not-a-date"
        elif kind == 4:
            row["coordinates"] = {"lon": row["coordinates"]["lon"], "lat": 40.0}
        elif kind == 5:
            row["date"] = format_dates(np.array([outside], dtype=np.int64), query.tz)[0]
        else:
            row["sum_counts"] = 3.5
        rows.append(row)
    return rows


def admin_router(faults: FaultState) -> APIRouter:
    """The ``/__admin`` endpoints over one fault state."""
    router = APIRouter(prefix="/__admin")

    @router.post("/faults")
    def add_fault(fault: FaultRequest) -> dict[str, Any]:
        faults.add(fault)
        return faults.snapshot()

    @router.get("/faults")
    def list_faults() -> dict[str, Any]:
        return faults.snapshot()

    @router.delete("/faults")
    def clear_faults() -> dict[str, int]:
        return {"cleared": faults.clear()}

    @router.get("/stats")
    def stats() -> dict[str, Any]:
        return faults.snapshot()

    @router.delete("/stats")
    def reset_stats() -> dict[str, str]:
        faults.reset_stats()
        return {"status": "reset"}

    return router
