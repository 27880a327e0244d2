"""Reading the API's JSON bodies (``velocast.ingest.json_stream``), without a server."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from velocast.ingest.json_stream import (
    InvalidBodyError,
    NdjsonWriter,
    iter_json_array,
    read_json_array,
    read_records_page,
    stream_to_ndjson,
)


def test_iter_json_array_survives_any_chunking() -> None:
    records = [{"name": "Quai d'Orsay É-O", "n": i, "c": {"lat": 48.8}} for i in range(50)]
    body = json.dumps(records, ensure_ascii=False, indent=1).encode()  # newlines inside records
    for size in (1, 7, 64, len(body)):
        chunks = iter([body[i : i + size] for i in range(0, len(body), size)])
        raws = list(iter_json_array(chunks))
        assert [json.loads(raw) for raw in raws] == records
        assert all("\n" not in raw for raw in raws)
    assert list(iter_json_array(iter([b" [ ] "]))) == []


@pytest.mark.parametrize(
    "body", [b'[{"a": 1}, {"b"', b'[{"a": 1}', b'{"a": 1}', b"[1, 2]", b'[{"a": 1}] x', b""]
)
def test_iter_json_array_rejects_truncated_or_wrong_bodies(body: bytes) -> None:
    with pytest.raises(InvalidBodyError):
        list(iter_json_array(iter([body])))


def test_whole_bodies_are_checked_for_their_shape() -> None:
    assert read_json_array(httpx.Response(200, content=b'[{"a": 1}]')) == [{"a": 1}]
    page = httpx.Response(200, content=b'{"total_count": 3, "results": [{"a": 1}]}')
    assert read_records_page(page) == (3, [{"a": 1}])
    for body in (b"[1]", b'{"a": 1}', b"[{"):
        with pytest.raises(InvalidBodyError):
            read_json_array(httpx.Response(200, content=body))
    for body in (b"[]", b'{"total_count": "3", "results": []}', b"{"):
        with pytest.raises(InvalidBodyError):
            read_records_page(httpx.Response(200, content=body))


def test_ndjson_copies_and_counts_records(tmp_path) -> None:
    path = tmp_path / "raw.ndjson"
    body = json.dumps([{"n": 1, "name": "É"}, {"n": 2}], ensure_ascii=False).encode()
    assert stream_to_ndjson(httpx.Response(200, content=body), path) == 2
    assert path.read_text(encoding="utf-8").splitlines() == ['{"n": 1, "name": "É"}', '{"n": 2}']
    out = io.StringIO()
    writer = NdjsonWriter(out)
    writer.write([{"n": 1}, {"n": 2}])
    writer.write([{"n": 3}])
    assert writer.rows == 3 and out.getvalue() == '{"n":1}\n{"n":2}\n{"n":3}\n'
