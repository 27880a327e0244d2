"""Reading the Open Data API's JSON bodies: whole arrays, records pages, and streamed arrays.

A body that is not the expected JSON (truncated, malformed, the wrong shape) raises
``InvalidBodyError``, which the request policy (``opendata_http``) retries. ``iter_json_array``
copies a streamed array record by record, so a year of records never sits in memory.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx

Record = dict[str, Any]
READ_CHUNK_BYTES = 1 << 20


class InvalidBodyError(Exception):
    """A 200 whose body is not the expected JSON (truncated, malformed): retried."""


def read_json_array(response: httpx.Response) -> list[Record]:
    """The body as a JSON array of records (the ``exports/json`` endpoint)."""
    try:
        body = json.loads(response.read())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidBodyError(f"invalid JSON body ({exc})") from exc
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise InvalidBodyError("expected a JSON array of records")
    return body


def read_records_page(response: httpx.Response) -> tuple[int, list[Record]]:
    """``(total_count, results)`` of a page of the ``records`` endpoint."""
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


class NdjsonWriter:
    """Writes records as NDJSON lines and counts them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.rows = 0

    def write(self, records: list[Record]) -> None:
        for record in records:
            self.out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            self.out.write("\n")
        self.rows += len(records)


def stream_to_ndjson(response: httpx.Response, path: Path) -> int:
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


__all__ = [
    "InvalidBodyError",
    "NdjsonWriter",
    "Record",
    "iter_json_array",
    "read_json_array",
    "read_records_page",
    "stream_to_ndjson",
]
