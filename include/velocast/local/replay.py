"""A local replay of the Paris Open Data Explore API v2.1 for ``comptage-velo-donnees-compteurs``.

It serves the packaged real counts (see ``data/NOTICE.md``) with their dates moved forward by whole
weeks, so that "yesterday" exists and weekday patterns are kept, plus admin endpoints that inject
the faults a client must survive (rate limits, 5xx, truncated bodies, malformed rows)::

    python -m velocast.local.replay --host 127.0.0.1 --port 8089 [--shift-weeks N] [--data PATH]

Supported: ``GET .../records`` (``where``, ``order_by``, ``limit`` ≤ 100, ``offset`` with
offset + limit ≤ 10000, ``select``, ``timezone``) and ``GET .../exports/json|csv`` (same filters, no
pagination limit, streamed). ``where`` accepts the ODSQL subset ``date <op> '<iso>'`` (or
``date'<iso>'``) and ``id_compteur = '<id>'`` joined by ``AND``; anything else is a 400. Like the
real API, hours that have not ended yet are not served (``ReplayConfig.serve_future`` lifts this).

Admin (JSON bodies), for tests; "data requests" are the records and exports calls:

- ``POST /__admin/faults`` with one of
  ``{"mode": "rate_limit", "count": N, "retry_after": S}`` (429 + Retry-After / X-RateLimit-* headers),
  ``{"mode": "server_error", "count": N}`` (500), ``{"mode": "truncated", "count": N}`` (a 200 whose
  body is cut in the middle), ``{"mode": "malformed_rows", "count": N, "rows": K}`` (K bad rows
  appended), ``{"mode": "fail_after", "after": N}`` (500 after N good requests, until cleared),
  ``{"mode": "exports_down"}`` (exports answer 503 until cleared; records still work).
- ``DELETE /__admin/faults`` clears them; ``GET /__admin/stats`` counts requests per endpoint and
  fired faults (``DELETE`` resets it); ``GET /health`` reports the rows and the week shift.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

DATASET = "comptage-velo-donnees-compteurs"
BASE_PATH = f"/api/explore/v2.1/catalog/datasets/{DATASET}"
MAX_LIMIT = 100
MAX_OFFSET_PLUS_LIMIT = 10_000
CHUNK_ROWS = 10_000
NS_PER_SECOND = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_SECOND
NS_PER_WEEK = 7 * 24 * NS_PER_HOUR
PARIS = ZoneInfo("Europe/Paris")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# API field names in the order of the real CSV export, with their French export labels.
LABELS: dict[str, str] = {
    "id_compteur": "Identifiant du compteur",
    "nom_compteur": "Nom du compteur",
    "id": "Identifiant du site de comptage",
    "name": "Nom du site de comptage",
    "sum_counts": "Comptage horaire",
    "date": "Date et heure de comptage",
    "installation_date": "Date d'installation du site de comptage",
    "url_photos_n1": "Lien vers photo du site de comptage",
    "coordinates": "Coordonnées géographiques",
    "counter": "Identifiant technique compteur",
    "photos": "ID Photos",
    "test_lien_vers_photos_du_site_de_comptage_": "test_lien_vers_photos_du_site_de_comptage_",
    "id_photo_1": "id_photo_1",
    "url_sites": "url_sites",
    "type_dimage": "type_dimage",
    "mois_annee_comptage": "mois_annee_comptage",
}
FIELDS: tuple[str, ...] = tuple(LABELS)
# Fields that vary per row; all others are per-counter constants.
DYNAMIC = ("sum_counts", "date", "mois_annee_comptage")
ORDERABLE = ("date", "id_compteur", "sum_counts")

FaultMode = Literal["rate_limit", "server_error", "truncated", "malformed_rows", "fail_after", "exports_down"]
Endpoint = Literal["records", "exports_json", "exports_csv"]
IntArray = npt.NDArray[np.int64]


def default_data_path() -> Path:
    return Path(str(files("velocast.local").joinpath("data/bike_counts.parquet")))


@dataclass(frozen=True)
class ReplayConfig:
    data_path: Path = field(default_factory=default_data_path)
    # Whole weeks added to every date; None: the fewest weeks that make yesterday a complete day.
    shift_weeks: int | None = None
    # The server's idea of "now" (tests); None: the wall clock.
    now: datetime | None = None
    # The real API never serves hours that have not ended; set True to serve the whole shifted copy.
    serve_future: bool = False


class ApiError(Exception):
    """A 400 in the real API's shape."""

    def __init__(self, message: str, error_code: str = "InvalidRESTParameterError") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


# --- data -------------------------------------------------------------------------------


def weeks_to_reach_yesterday(last: datetime, now: datetime) -> int:
    """The fewest whole weeks (possibly negative) that make yesterday (UTC) a complete day of data.

    ``last`` is the last hourly timestamp; the day of ``last - 23h`` is the last day with a 23:00 hour.
    """
    last_full_day = (last.astimezone(UTC) - timedelta(hours=23)).date()
    gap_days = (now.astimezone(UTC).date() - timedelta(days=1) - last_full_day).days
    return -(-gap_days // 7)


class ReplayData:
    """The counts in memory: one row per (counter, hour), sorted by shifted date, then counter."""

    def __init__(self, path: Path, shift_weeks: int | None, now: datetime | None) -> None:
        table = pq.read_table(path, columns=["id_compteur", "nom_compteur", "id", "name", "lat", "lon"])
        frame = table.to_pandas()
        categories = sorted(frame["id_compteur"].unique())
        codes = pd.Categorical(frame["id_compteur"], categories=categories).codes.astype(np.int64)
        numbers = pq.read_table(path, columns=["sum_counts", "date"])
        raw_dates = numbers.column("date").cast(pa.timestamp("ns", tz="UTC")).to_numpy().view(np.int64)
        last = ns_to_datetime(int(raw_dates.max()))
        self.shift_weeks = (
            shift_weeks
            if shift_weeks is not None
            else weeks_to_reach_yesterday(last, now or datetime.now(UTC))
        )
        dates = raw_dates + self.shift_weeks * NS_PER_WEEK
        order = np.lexsort((codes, dates))  # the file is sorted already; a custom --data may not be
        self.dates: IntArray = np.ascontiguousarray(dates[order])
        self.codes: IntArray = np.ascontiguousarray(codes[order])
        self.counts: IntArray = numbers.column("sum_counts").to_numpy().astype(np.int64)[order]

        # mois_annee_comptage is the month in Paris local time, stored as an index into month labels;
        # computed on the distinct hours only (time-zone conversion of every row is slow).
        hours, hour_of_row = np.unique(self.dates, return_inverse=True)
        local = pd.DatetimeIndex(hours.view("datetime64[ns]")).tz_localize("UTC").tz_convert(PARIS)
        keys, month_of_hour = np.unique((local.year * 12 + local.month - 1).to_numpy(), return_inverse=True)
        self.months: IntArray = month_of_hour.astype(np.int64)[hour_of_row]
        self.month_labels = [f"{k // 12:04d}-{k % 12 + 1:02d}" for k in keys.tolist()]

        meta = frame.drop_duplicates("id_compteur").set_index("id_compteur")
        self.counter_ids: list[str] = [str(c) for c in categories]
        self.code_of = {cid: i for i, cid in enumerate(self.counter_ids)}
        self.counters: list[dict[str, Any]] = [
            counter_constants(
                cid,
                nom=str(meta.at[cid, "nom_compteur"]),
                site=str(meta.at[cid, "id"]),
                name=str(meta.at[cid, "name"]),
                lat=float(meta.at[cid, "lat"]),
                lon=float(meta.at[cid, "lon"]),
            )
            for cid in self.counter_ids
        ]

    def __len__(self) -> int:
        return len(self.dates)

    def first_last(self) -> tuple[datetime, datetime]:
        return ns_to_datetime(int(self.dates[0])), ns_to_datetime(int(self.dates[-1]))


def counter_constants(cid: str, *, nom: str, site: str, name: str, lat: float, lon: float) -> dict[str, Any]:
    """The per-counter fields of a record; the ones the copy does not hold are null."""
    return {
        "id_compteur": cid,
        "nom_compteur": nom,
        "id": site,
        "name": name,
        "installation_date": None,
        "url_photos_n1": None,
        "coordinates": {"lon": lon, "lat": lat},
        "counter": None,
        "photos": None,
        "test_lien_vers_photos_du_site_de_comptage_": None,
        "id_photo_1": None,
        "url_sites": f"https://www.eco-visio.net/Photos/{site}",
        "type_dimage": None,
    }


def ns_to_datetime(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def datetime_to_ns(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


# --- query parameters -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>>=|<=|!=|=|<|>)
    | (?P<datelit>date\s*(?:'[^']*'|"[^"]*"))
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<ident>`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)
    | (?P<other>\S+)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


_DATE_PREFIX = re.compile(r"^date\s*", re.IGNORECASE)
INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)


@dataclass
class Query:
    lo: int = INT64_MIN  # inclusive, ns
    hi: int = INT64_MAX  # exclusive, ns
    until: int = INT64_MAX  # exclusive, ns: rows after it are not published yet
    counter: str | None = None
    empty: bool = False  # contradictory id_compteur conditions
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    fields: tuple[str, ...] = FIELDS
    tz: ZoneInfo | None = None  # None: UTC


def parse_timezone(value: str | None) -> ZoneInfo | None:
    if value is None or value.upper() in ("UTC", "ETC/UTC", "Z", "GMT"):
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ApiError(f"Invalid value for timezone parameter: unknown time zone {value!r}") from exc


def parse_instant(text: str, tz: ZoneInfo | None) -> int:
    """An ISO date or datetime literal as ns since the epoch; naive values are in the request's time zone."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ApiError(f"Invalid date literal {text!r}: expected ISO 8601", "ODSQLError") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz or UTC)
    # Clamped so that far-away literals (year 9999) neither overflow int64 nor the +1 of `<=`.
    return min(max(datetime_to_ns(parsed), INT64_MIN + 1), INT64_MAX - 1)


def _tokens(where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(where):
        kind = match.lastgroup
        if kind is None:
            continue
        out.append((kind, match.group(kind)))
    return out


def parse_where(where: str, query: Query) -> None:
    """Apply an ODSQL subset: ``<field> <op> <literal> [AND ...]`` on ``date`` and ``id_compteur``."""
    tokens = _tokens(where)
    if not tokens:
        return
    conditions: list[list[tuple[str, str]]] = [[]]
    for kind, text in tokens:
        if kind == "ident" and text.upper() == "AND":
            conditions.append([])
        else:
            conditions[-1].append((kind, text))
    for condition in conditions:
        shape = [kind for kind, _ in condition]
        if shape not in (["ident", "op", "str"], ["ident", "op", "datelit"]):
            text = " ".join(t for _, t in condition) or "(empty)"
            raise ApiError(
                f"ODSQL query is malformed: unsupported condition {text!r} in where={where!r}. The replay "
                "supports `date <op> '<iso>'`, `date <op> date'<iso>'` and `id_compteur = '<id>'` "
                "joined by AND.",
                "ODSQLError",
            )
        name, op, literal = (text for _, text in condition)
        name = name.strip("`")
        value = _DATE_PREFIX.sub("", literal)[1:-1]
        if name == "date":
            _apply_date(query, op, parse_instant(value, query.tz))
        elif name == "id_compteur" and op == "=":
            if query.counter is not None and query.counter != value:
                query.empty = True
            query.counter = value
        else:
            raise ApiError(
                f"ODSQL query is malformed: unsupported filter `{name} {op}` in where={where!r}", "ODSQLError"
            )


def _apply_date(query: Query, op: str, ns: int) -> None:
    if op == ">=":
        query.lo = max(query.lo, ns)
    elif op == ">":
        query.lo = max(query.lo, ns + 1)
    elif op == "<":
        query.hi = min(query.hi, ns)
    elif op == "<=":
        query.hi = min(query.hi, ns + 1)
    elif op == "=":
        query.lo, query.hi = max(query.lo, ns), min(query.hi, ns + 1)
    else:
        raise ApiError(f"ODSQL query is malformed: operator {op!r} is not supported on date", "ODSQLError")


def parse_order_by(text: str) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        direction = words[1].lower() if len(words) == 2 else "asc"
        if len(words) > 2 or words[0] not in ORDERABLE or direction not in ("asc", "desc"):
            raise ApiError(
                f"ODSQL query is malformed: unsupported order_by {item!r} "
                f"(use {', '.join(ORDERABLE)} [asc|desc])",
                "ODSQLError",
            )
        order.append((words[0], direction == "desc"))
    return order


def parse_select(text: str) -> tuple[str, ...]:
    names = tuple(filter(None, (part.strip().strip("`") for part in text.split(","))))
    if not names or names == ("*",):
        return FIELDS
    unknown = [n for n in names if n not in LABELS]
    if unknown:
        raise ApiError(
            f"ODSQL query is malformed: unknown field(s) in select: {', '.join(unknown)}", "ODSQLError"
        )
    return names


def parse_int(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(f"Invalid value for {name} parameter: {raw!r} is not an integer") from exc


def parse_query(params: dict[str, str], until: int) -> Query:
    query = Query(tz=parse_timezone(params.get("timezone")), until=until)
    parse_where(params.get("where", ""), query)
    query.order = parse_order_by(params.get("order_by", ""))
    query.fields = parse_select(params.get("select", ""))
    return query


# --- row selection and rendering ----------------------------------------------------------


def select_rows(data: ReplayData, query: Query) -> IntArray:
    """Positions of the matching rows, in the requested order."""
    hi = min(query.hi, query.until)
    if query.empty or query.lo >= hi:
        return np.empty(0, dtype=np.int64)
    start, stop = np.searchsorted(data.dates, [query.lo, hi], side="left")
    positions: IntArray = np.arange(start, stop, dtype=np.int64)
    if query.counter is not None:
        code = data.code_of.get(query.counter, -1)
        positions = positions[data.codes[positions] == code]
    natural = [("date", False), ("id_compteur", False)]
    if query.order and query.order != natural[: len(query.order)]:
        columns = {"date": data.dates, "id_compteur": data.codes, "sum_counts": data.counts}
        # np.lexsort sorts by the last key first; a stable sort keeps (date, counter) on ties.
        keys = [-columns[name][positions] if desc else columns[name][positions] for name, desc in query.order]
        positions = positions[np.lexsort(keys[::-1])]
    return positions


def format_dates(ns: IntArray, tz: ZoneInfo | None) -> list[str]:
    """ISO 8601 with offset in the requested time zone, vectorised (per-row datetime is too slow)."""
    if tz is None:
        text = np.datetime_as_string(ns.view("datetime64[ns]"), unit="s")
        return [f"{t}+00:00" for t in text.tolist()]
    wall = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(tz).tz_localize(None)
    wall_ns = wall.to_numpy().view(np.int64)
    text = np.datetime_as_string(wall_ns.view("datetime64[ns]"), unit="s")
    offsets = (wall_ns - ns) // (60 * NS_PER_SECOND)
    suffix = {
        int(m): f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in np.unique(offsets)
    }
    return [f"{t}{suffix[m]}" for t, m in zip(text.tolist(), offsets.tolist(), strict=True)]


class Renderer:
    """Renders rows as JSON objects or CSV lines from per-counter templates (one ``%`` per row)."""

    def __init__(
        self, data: ReplayData, query: Query, fmt: Literal["json", "csv"], delimiter: str = ";"
    ) -> None:
        self.data, self.query, self.fmt, self.delimiter = data, query, fmt, delimiter
        self.dynamic = [name for name in query.fields if name in DYNAMIC]
        self.templates = [self._template(constants) for constants in data.counters]

    def _template(self, constants: dict[str, Any]) -> str:
        marker = "\x00"  # stands for a per-row value until it becomes %s
        if self.fmt == "json":
            parts = [
                json.dumps(name)
                + ":"
                + (
                    marker
                    if name in DYNAMIC
                    else json.dumps(constants[name], ensure_ascii=False, separators=(",", ":"))
                )
                for name in self.query.fields
            ]
            text = "{" + ",".join(parts) + "}"
        else:
            text = csv_line(
                [
                    marker if name in DYNAMIC else csv_value(name, constants[name])
                    for name in self.query.fields
                ],
                self.delimiter,
            )
        return text.replace("%", "%%").replace(marker, "%s")

    def rows(self, positions: IntArray) -> list[str]:
        data, quote = self.data, self.fmt == "json"
        values: dict[str, list[str]] = {}
        if "sum_counts" in self.dynamic:
            values["sum_counts"] = [str(c) for c in data.counts[positions].tolist()]
        if "date" in self.dynamic:
            dates = format_dates(data.dates[positions], self.query.tz)
            values["date"] = [f'"{d}"' for d in dates] if quote else dates
        if "mois_annee_comptage" in self.dynamic:
            labels = [f'"{m}"' if quote else m for m in data.month_labels]
            values["mois_annee_comptage"] = [labels[m] for m in data.months[positions].tolist()]
        columns = [values[name] for name in self.dynamic]
        per_row = zip(*columns, strict=True) if columns else itertools.repeat(())
        templates = self.templates
        return [
            templates[code] % row for code, row in zip(data.codes[positions].tolist(), per_row, strict=False)
        ]

    def extra(self, records: list[dict[str, Any]]) -> list[str]:
        """Render free-form (corrupted) records."""
        if self.fmt == "json":
            return [
                json.dumps(
                    {k: r.get(k) for k in self.query.fields}, ensure_ascii=False, separators=(",", ":")
                )
                for r in records
            ]
        return [
            csv_line([csv_value(k, r.get(k)) for k in self.query.fields], self.delimiter) for r in records
        ]

    def header(self, use_labels: bool) -> str:
        return csv_line([LABELS[n] if use_labels else n for n in self.query.fields], self.delimiter)


def csv_value(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "coordinates" and isinstance(value, dict):
        return f"{value.get('lat')},{value.get('lon')}"
    return str(value)


def csv_line(values: Sequence[str], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def full_record(data: ReplayData, code: int, ns: int, count: Any, tz: ZoneInfo | None) -> dict[str, Any]:
    record = dict(data.counters[code])
    local = ns_to_datetime(ns).astimezone(PARIS)
    record.update(
        sum_counts=count,
        date=format_dates(np.array([ns], dtype=np.int64), tz)[0],
        mois_annee_comptage=local.strftime("%Y-%m"),
    )
    return {name: record[name] for name in FIELDS}


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


# --- faults -------------------------------------------------------------------------------


class FaultRequest(BaseModel):
    mode: FaultMode
    count: int = Field(default=1, ge=0)
    retry_after: int = Field(default=1, ge=0)
    rows: int = Field(default=7, ge=1)
    after: int = Field(default=0, ge=0)


@dataclass
class Fault:
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


def api_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


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


# --- app ----------------------------------------------------------------------------------


def create_app(config: ReplayConfig | None = None) -> FastAPI:
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

    @app.post("/__admin/faults")
    def add_fault(fault: FaultRequest) -> dict[str, Any]:
        faults.add(fault)
        return faults.snapshot()

    @app.get("/__admin/faults")
    def list_faults() -> dict[str, Any]:
        return faults.snapshot()

    @app.delete("/__admin/faults")
    def clear_faults() -> dict[str, int]:
        return {"cleared": faults.clear()}

    @app.get("/__admin/stats")
    def stats() -> dict[str, Any]:
        return faults.snapshot()

    @app.delete("/__admin/stats")
    def reset_stats() -> dict[str, str]:
        faults.reset_stats()
        return {"status": "reset"}

    return app


def stream_rows(
    renderer: Renderer,
    positions: IntArray,
    *,
    extra: list[str],
    fmt: Literal["json", "csv"],
    use_labels: bool,
    truncate: bool,
) -> Iterator[bytes]:
    """The export body in chunks, so that a year of rows never sits in memory as one string."""
    opening, separator, closing = ("[", ",", "]") if fmt == "json" else (renderer.header(use_labels), "", "")
    if truncate:  # the start of the body, cut in the middle of a row
        text = opening + separator.join(renderer.rows(positions[:CHUNK_ROWS]) + extra)
        yield text[: max(1, len(text) // 2)].encode()
        return
    yield opening.encode()
    first = True
    for start in range(0, len(positions), CHUNK_ROWS):
        text = separator.join(renderer.rows(positions[start : start + CHUNK_ROWS]))
        yield ((separator if not first else "") + text).encode()
        first = False
    if extra:
        yield ((separator if not first else "") + separator.join(extra)).encode()
    yield closing.encode()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from velocast.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(
        description="Replay of the Paris Open Data Explore API v2.1 (bike counters)."
    )
    parser.add_argument("--host", default=settings.local_host)
    parser.add_argument("--port", type=int, default=settings.replay_port)
    parser.add_argument("--shift-weeks", type=int, default=settings.replay_shift_weeks)
    parser.add_argument("--data", type=Path, default=None, help="parquet file (default: the packaged one)")
    parser.add_argument("--serve-future", action="store_true", help="also serve hours after now")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = ReplayConfig(
        data_path=args.data or default_data_path(),
        shift_weeks=args.shift_weeks,
        serve_future=args.serve_future,
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
