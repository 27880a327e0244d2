"""The replay's response bodies: records as JSON objects or CSV lines, streamed exports, error bodies.

Rows are rendered from per-counter templates with vectorised dates, so that an export of a year of
rows (about a million) stays fast and is streamed in chunks rather than built whole.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from fastapi.responses import JSONResponse

from velocast.contract import PARIS
from velocast.local.replay.data import (
    DYNAMIC,
    FIELDS,
    LABELS,
    NS_PER_SECOND,
    IntArray,
    Query,
    ReplayData,
    ns_to_datetime,
)

CHUNK_ROWS = 10_000


def api_error(status: int, code: str, message: str) -> JSONResponse:
    """An error body in the real API's shape: ``{"error_code": …, "message": …}``."""
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


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
