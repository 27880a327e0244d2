"""Client of the Paris Open Data Explore API v2.1 for the bike counter dataset.

``OpenDataClient.fetch_window(start, end)`` returns the flat records of a UTC time window, as received.
It asks the ``exports/json`` endpoint first (one request, no pagination limit) and falls back to the
``records`` endpoint when exports are unavailable: pages of 100, with the window halved in time
whenever a slice holds more than the API's offset + limit ≤ 10000 cap.

Each request goes through ``opendata_http.RetryingClient`` (retries, backoff, ``Retry-After`` and
quota headers); the bodies are read by ``json_stream``. The client is not thread-safe: use one per
thread.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypeVar

import httpx

from velocast.ingest.json_stream import (
    NdjsonWriter,
    Record,
    read_json_array,
    read_records_page,
    stream_to_ndjson,
)
from velocast.ingest.opendata_http import (
    OpenDataError,
    OpenDataUnavailableError,
    RequestTally,
    RetryingClient,
)
from velocast.settings import VelocastSettings, get_settings

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_OFFSET_PLUS_LIMIT = 10_000
# Exports answering these mean "not supported here": use the records endpoint instead.
FALLBACK_STATUS = frozenset({400, 404})

Endpoint = Literal["exports", "records"]
T = TypeVar("T")


@dataclass(frozen=True)
class FetchResult:
    records: list[Record]
    endpoint: Endpoint
    requests: int
    retries: int
    seconds: float


@dataclass(frozen=True)
class FetchSummary:
    path: Path
    rows: int
    bytes: int
    endpoint: Endpoint
    requests: int
    retries: int
    seconds: float


class OpenDataClient:
    def __init__(
        self,
        settings: VelocastSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.dataset_url = (
            f"{self.settings.opendata_base_url.rstrip('/')}/catalog/datasets/{self.settings.opendata_dataset}"
        )
        self._http = RetryingClient(self.settings, sleep=sleep, rng=rng, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenDataClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- public API -----------------------------------------------------------------------

    def fetch_window(self, start: datetime, end: datetime) -> FetchResult:
        """All records with ``start <= date < end`` (tz-aware datetimes), as received."""
        _check_window(start, end)
        tally, began = RequestTally(), time.perf_counter()
        try:
            records = self._get("exports/json", _export_params(start, end), read_json_array, tally)
            endpoint: Endpoint = "exports"
        except OpenDataError as exc:
            if not _should_fall_back(exc):
                raise
            log.warning("exports endpoint failed (%s); falling back to the records endpoint", exc)
            records = []
            self._records_window(start, end, records.extend, tally)
            endpoint = "records"
        return FetchResult(records, endpoint, tally.requests, tally.retries, time.perf_counter() - began)

    def fetch_window_to_file(self, start: datetime, end: datetime, path: Path) -> FetchSummary:
        """Stream the records of the window to an NDJSON file (one raw record per line).

        The body is parsed incrementally, so memory stays flat for a year of records. The file is
        written next to ``path`` and renamed on success: a failed fetch never leaves a partial file.
        """
        _check_window(start, end)
        tally, began = RequestTally(), time.perf_counter()
        partial = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                rows = self._get(
                    "exports/json", _export_params(start, end), lambda r: stream_to_ndjson(r, partial), tally
                )
                endpoint: Endpoint = "exports"
            except OpenDataError as exc:
                if not _should_fall_back(exc):
                    raise
                log.warning("exports endpoint failed (%s); falling back to the records endpoint", exc)
                with partial.open("w", encoding="utf-8") as out:
                    counter = NdjsonWriter(out)
                    self._records_window(start, end, counter.write, tally)
                rows = counter.rows
                endpoint = "records"
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return FetchSummary(
            path,
            rows,
            path.stat().st_size,
            endpoint,
            tally.requests,
            tally.retries,
            time.perf_counter() - began,
        )

    # --- records endpoint -----------------------------------------------------------------

    def _records_window(
        self, start: datetime, end: datetime, sink: Callable[[list[Record]], None], tally: RequestTally
    ) -> None:
        """Page through ``[start, end)``, halving the window while it holds more than the API lets us page."""
        first = self._records_page(start, end, 0, tally)
        total = first[0]
        if total > MAX_OFFSET_PLUS_LIMIT:
            middle = _midpoint(start, end)
            if middle is None:
                raise OpenDataError(
                    f"{total} records in {start.isoformat()}..{end.isoformat()} cannot be split further",
                    url=f"{self.dataset_url}/records",
                )
            log.debug("records: %d rows in %s..%s, splitting at %s", total, start, end, middle)
            self._records_window(start, middle, sink, tally)
            self._records_window(middle, end, sink, tally)
            return
        sink(first[1])
        for offset in range(PAGE_SIZE, total, PAGE_SIZE):
            sink(self._records_page(start, end, offset, tally)[1])

    def _records_page(
        self, start: datetime, end: datetime, offset: int, tally: RequestTally
    ) -> tuple[int, list[Record]]:
        params = {
            "where": _where(start, end),
            "order_by": "date,id_compteur",  # a total order, so that pages neither overlap nor skip
            "limit": str(PAGE_SIZE),
            "offset": str(offset),
            "timezone": "UTC",
        }
        return self._get("records", params, read_records_page, tally)

    def _get(
        self, path: str, params: dict[str, str], consume: Callable[[httpx.Response], T], tally: RequestTally
    ) -> T:
        return self._http.get(f"{self.dataset_url}/{path}", params, consume, tally)


# --- helpers --------------------------------------------------------------------------------


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if start >= end:
        raise ValueError(f"empty window: start {start.isoformat()} >= end {end.isoformat()}")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _where(start: datetime, end: datetime) -> str:
    return f"date >= '{_iso(start)}' AND date < '{_iso(end)}'"


def _export_params(start: datetime, end: datetime) -> dict[str, str]:
    return {"where": _where(start, end), "order_by": "date", "timezone": "UTC"}


def _midpoint(start: datetime, end: datetime) -> datetime | None:
    """The middle of the window, on a whole hour (or second) when one lies strictly inside."""
    middle = start + (end - start) / 2
    for unit in (timedelta(hours=1), timedelta(seconds=1)):
        rounded = middle - (middle - datetime(1970, 1, 1, tzinfo=UTC)) % unit
        if start < rounded < end:
            return rounded
    return None


def _should_fall_back(exc: OpenDataError) -> bool:
    return isinstance(exc, OpenDataUnavailableError) or exc.status in FALLBACK_STATUS


__all__ = ["Endpoint", "FetchResult", "FetchSummary", "OpenDataClient"]
