"""A lean HTTP/1.1 load generator for the serving benchmark: keep-alive connections on asyncio.

A thread per client with httpx spends ~0.5 ms of CPU per request on the client side: on a 2-core
machine the load generator, not the server, would set the rate. Here each connection writes one
prepared request and reads the answer (status line, ``Content-Length``, body) in a loop, on one
event loop in one process; the client's own CPU time is measured and reported, so the share of
the machine it took is printed beside the rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    client_cpu_seconds: float
    latencies: list[float]  # seconds, of the successful requests

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def client_cpu_share(self) -> float:
        """The client's CPU time over the machine's capacity during the run (all cores)."""
        return self.client_cpu_seconds / (self.seconds * (os.cpu_count() or 1))


def request_bytes(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    host = urlsplit(url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _connection(
    url: str, request: bytes, stop_at: float, latencies: list[float], errors: list[int]
) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if status_line.split(b" ", 2)[1:2] == [b"200"]:
                latencies.append(time.perf_counter() - began)
            else:
                errors[0] += 1
    finally:
        writer.close()


def run_load(
    url: str, path: str, body: dict[str, Any], headers: dict[str, str], *, connections: int, seconds: float
) -> LoadResult:
    """``connections`` keep-alive connections posting ``body`` to ``path`` for ``seconds``."""
    request = request_bytes(url, path, body, headers)
    latencies: list[float] = []
    errors = [0]

    async def main() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(
            *(_connection(url, request, stop_at, latencies, errors) for _ in range(connections))
        )

    cpu_before, began = time.process_time(), time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - began
    return LoadResult(
        requests=len(latencies),
        errors=errors[0],
        seconds=elapsed,
        client_cpu_seconds=time.process_time() - cpu_before,
        latencies=latencies,
    )


__all__ = ["LoadResult", "request_bytes", "run_load"]
