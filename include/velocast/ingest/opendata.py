"""Client of the Paris Open Data Explore API v2.1 for the bike counter dataset.

``OpenDataClient.fetch_window(start, end)`` returns the flat records of a UTC time window, as received.
It asks the ``exports/json`` endpoint first (one request, no pagination limit) and falls back to the
``records`` endpoint when exports are unavailable: pages of 100, with the window halved in time
whenever a slice holds more than the API's offset + limit ≤ 10000 cap.

Every request is retried with exponential backoff and jitter on 429, 5xx (500/502/503/504),
connection errors, timeouts and truncated or invalid JSON bodies; 429 honours ``Retry-After`` and
``X-RateLimit-Reset``. The client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import codecs
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import httpx

from velocast.errors import UnavailableError, VelocastError
from velocast.settings import VelocastSettings, get_settings

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_OFFSET_PLUS_LIMIT = 10_000
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Exports answering these mean "not supported here": use the records endpoint instead.
FALLBACK_STATUS = frozenset({400, 404})
READ_CHUNK_BYTES = 1 << 20

Endpoint = Literal["exports", "records"]
Record = dict[str, Any]
T = TypeVar("T")


class OpenDataError(VelocastError):
    """The API refused a request (non-retryable 4xx) or answered something unusable."""

    def __init__(self, message: str, *, url: str, status: int | None = None, api_message: str | None = None):
        super().__init__(message)
        self.url = url
        self.status = status
        self.api_message = api_message


class OpenDataUnavailableError(OpenDataError, UnavailableError):
    """The API still failed after all retries."""


class InvalidBodyError(Exception):
    """A 200 whose body is not the expected JSON (truncated, malformed): retried."""


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


@dataclass
class _Tally:
    requests: int = 0
    retries: int = 0


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
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            timeout=self.settings.http_timeout_seconds,
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": "velocast-opendata-client"},
        )

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
        tally, began = _Tally(), time.perf_counter()
        try:
            records = self._request("exports/json", _export_params(start, end), _read_json_array, tally)
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
        tally, began = _Tally(), time.perf_counter()
        partial = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                rows = self._request(
                    "exports/json", _export_params(start, end), lambda r: _stream_to_file(r, partial), tally
                )
                endpoint: Endpoint = "exports"
            except OpenDataError as exc:
                if not _should_fall_back(exc):
                    raise
                log.warning("exports endpoint failed (%s); falling back to the records endpoint", exc)
                with partial.open("w", encoding="utf-8") as out:
                    counter = _LineWriter(out)
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
        self, start: datetime, end: datetime, sink: Callable[[list[Record]], None], tally: _Tally
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
        self, start: datetime, end: datetime, offset: int, tally: _Tally
    ) -> tuple[int, list[Record]]:
        params = {
            "where": _where(start, end),
            "order_by": "date,id_compteur",  # a total order, so that pages neither overlap nor skip
            "limit": str(PAGE_SIZE),
            "offset": str(offset),
            "timezone": "UTC",
        }
        return self._request("records", params, _read_records_page, tally)

    # --- one request, with retries --------------------------------------------------------

    def _request(
        self, path: str, params: dict[str, str], consume: Callable[[httpx.Response], T], tally: _Tally
    ) -> T:
        url = f"{self.dataset_url}/{path}"
        attempts = self.settings.http_max_retries + 1
        last_status: int | None = None
        problem = "no attempt"
        for attempt in range(attempts):
            tally.requests += 1
            last_status = None
            try:
                with self._http.stream("GET", url, params=params) as response:
                    last_status = response.status_code
                    if response.status_code == 200:
                        return consume(response)
                    response.read()
                    if response.status_code not in RETRYABLE_STATUS:
                        message = _api_message(response)
                        raise OpenDataError(
                            f"GET {url} failed with HTTP {response.status_code}: {message}",
                            url=url,
                            status=response.status_code,
                            api_message=message,
                        )
                    problem = f"HTTP {response.status_code}"
                    delay = self._retry_delay(response, attempt)
            except (httpx.TransportError, InvalidBodyError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                delay = self._backoff(attempt)
            if attempt + 1 == attempts:
                break
            tally.retries += 1
            log.warning("GET %s: %s; retry %d/%d in %.2fs", url, problem, attempt + 1, attempts - 1, delay)
            self._sleep(delay)
        raise OpenDataUnavailableError(
            f"GET {url} still failing after {attempts} attempts "
            f"(last status: {last_status}; last problem: {problem})",
            url=url,
            status=last_status,
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, capped."""
        base = min(self.settings.http_max_backoff_seconds, self.settings.http_backoff_seconds * 2.0**attempt)
        return base / 2 + self._rng.uniform(0, base / 2)

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        """The server's wait hint for 429/503 (Retry-After, then X-RateLimit-Reset), else backoff."""
        if response.status_code in (429, 503):
            hint = _retry_after(response.headers.get("Retry-After"))
            if hint is None and response.status_code == 429:
                hint = _reset_in(response.headers.get("X-RateLimit-Reset"))
            if hint is not None:
                return min(self.settings.http_max_backoff_seconds, hint)
        return self._backoff(attempt)


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


def _api_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:500]
    return str(body)[:500]


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _reset_in(value: str | None) -> float | None:
    """X-RateLimit-Reset as epoch seconds, turned into seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value) - time.time())
    except ValueError:
        return None


def _read_json_array(response: httpx.Response) -> list[Record]:
    try:
        body = json.loads(response.read())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidBodyError(f"invalid JSON body ({exc})") from exc
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise InvalidBodyError("expected a JSON array of records")
    return body


def _read_records_page(response: httpx.Response) -> tuple[int, list[Record]]:
    try:
        body = json.loads(response.read())
    except ValueError as exc:
        raise InvalidBodyError(f"invalid JSON body ({exc})") from exc
    if not isinstance(body, dict):
        raise InvalidBodyError("expected a JSON object with total_count and results")
    total, results = body.get("total_count"), body.get("results")
    if not isinstance(total, int) or not isinstance(results, list):
        raise InvalidBodyError("expected a JSON object with total_count and results")
    return total, results


class _LineWriter:
    """Writes records as NDJSON lines and counts them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.rows = 0

    def write(self, records: list[Record]) -> None:
        for record in records:
            self.out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            self.out.write("\n")
        self.rows += len(records)


def _stream_to_file(response: httpx.Response, path: Path) -> int:
    """Copy the JSON array of the response to ``path`` as NDJSON; each attempt starts the file again."""
    rows = 0
    with path.open("w", encoding="utf-8") as out:
        for raw in iter_json_array(response.iter_bytes(READ_CHUNK_BYTES)):
            out.write(raw)
            out.write("\n")
            rows += 1
    return rows


def iter_json_array(chunks: Iterator[bytes]) -> Iterator[str]:
    """The raw text of each element of a streamed JSON array of objects, on one line each.

    Each element is validated with ``json.JSONDecoder.raw_decode``; a body that ends early or is not
    an array of objects raises ``InvalidBodyError``. Raw text is kept as received, except that
    newlines (only possible as whitespace between tokens in valid JSON) become spaces.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buffer, position = "", 0
    state = "start"  # start -> value -> comma -> (value | done)
    for chunk in _with_end(chunks):
        try:
            buffer = buffer[position:] + (utf8.decode(chunk, final=chunk == b""))
        except UnicodeDecodeError as exc:
            raise InvalidBodyError(f"invalid UTF-8 in body ({exc})") from exc
        position = 0
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n":
                position += 1
            if position == len(buffer):
                break
            char = buffer[position]
            if state == "start":
                if char != "[":
                    raise InvalidBodyError("expected a JSON array")
                position, state = position + 1, "first"
            elif state in ("first", "value"):
                if state == "first" and char == "]":
                    state = "done"
                    position += 1
                    continue
                if char != "{":
                    raise InvalidBodyError(f"expected a JSON object at character {position}")
                try:
                    _, stop = decoder.raw_decode(buffer, position)
                except json.JSONDecodeError:
                    break  # most likely an object cut by the chunk boundary: read more
                raw = buffer[position:stop]
                if "\n" in raw or "\r" in raw:
                    raw = raw.replace("\r", " ").replace("\n", " ")
                yield raw
                position, state = stop, "comma"
            elif state == "comma":
                if char == ",":
                    position, state = position + 1, "value"
                elif char == "]":
                    position, state = position + 1, "done"
                else:
                    raise InvalidBodyError(f"expected ',' or ']' at character {position}")
            else:
                raise InvalidBodyError("unexpected data after the end of the JSON array")
    if state != "done":
        raise InvalidBodyError("truncated JSON array (the body ended early)")


def _with_end(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, then an empty end marker (flushes the UTF-8 decoder)."""
    for chunk in chunks:
        if chunk:
            yield chunk
    yield b""
