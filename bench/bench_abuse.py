"""Abuse benchmark: what the worst bodies within the limits cost a sidecar worker.

Starts the sidecar (uvicorn, one worker, so every request meets the same event loop) on a small
real model registered in the local stack, then sends each body below once and prints, next to a
normal 1 000-record request: the status, the event-loop stall (the slowest answer to ``GET
/health`` probes sent every 5 ms while the body is handled, minus the idle probe time), the extra
resident memory of the worker (its peak RSS, reset before each case through
``/proc/<pid>/clear_refs``, minus its RSS before) and the client's wall time:

    .venv/bin/python bench/bench_abuse.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
from served_champion import REGINE_NJ, served_champion

from velocast.data.normalize import normalize
from velocast.data.readers import read_source
from velocast.ml.models import build_model
from velocast.ml.registry_entries import SplitMetrics

MB = 1024 * 1024
PROBE_INTERVAL = 0.005


def _records(frame: pd.DataFrame, size: int) -> list[dict[str, str]]:
    rows = frame.sample(n=size, replace=size > len(frame), random_state=size)
    return [
        {"counter_id": str(c), "counted_at": ts.isoformat()}
        for c, ts in zip(rows["counter_id"], rows["counted_at"], strict=True)
    ]


def _empty_records(count: int) -> bytes:
    return b'{"records":[' + b",".join([b"{}"] * count) + b"]}"


def _cases(frame: pd.DataFrame, max_body: int) -> list[tuple[str, bytes, str]]:
    """(name, body, key kind): ``predict``, ``none`` or ``wrong``."""
    normal = json.dumps({"records": _records(frame, 1_000)}).encode()
    largest = json.dumps({"records": _records(frame, 10_000)}).encode()
    too_many = json.dumps({"records": _records(frame, 10_001)}).encode()
    fill = _empty_records((max_body - 20) // 3)
    return [
        ("normal: 1 000 records", normal, "predict"),
        ("normal: 10 000 records (the limit)", largest, "predict"),
        ("10 001 valid records", too_many, "predict"),
        (f"{len(fill) / MB:.1f} MiB of empty records", fill, "predict"),
        ("119 000 empty records (under the value budget)", _empty_records(119_000), "predict"),
        ("10 000 empty records (all invalid)", _empty_records(10_000), "predict"),
        ("deep nesting (100 000 levels)", b'{"records":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "predict"),
        (
            "a 7 MiB string",
            b'{"records":[{"counter_id":"' + b"x" * (7 * MB) + b'","counted_at":"2024"}]}',
            "predict",
        ),
        (
            "239 000 floats beside the records",
            b'{"records":[],"x":[' + b",".join([b"1.5"] * 239_000) + b"]}",
            "predict",
        ),
        (f"no key, {len(fill) / MB:.1f} MiB body", fill, "none"),
        (f"wrong key, {len(fill) / MB:.1f} MiB body", fill, "wrong"),
    ]


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


class LoopProbe:
    """``GET /health`` every few ms from a thread: the slowest answer is the longest loop stall."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._probing = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    client.get("/health")
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                self.samples.append(time.perf_counter() - began)
                self._probing.set()
                time.sleep(PROBE_INTERVAL)

    def __enter__(self) -> LoopProbe:
        self._thread.start()
        self._probing.wait(timeout=30)  # the client is built and a first probe answered
        self.samples.clear()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._thread.join()


def _measure(
    url: str, pid: int, body: bytes, headers: dict[str, str], idle: float
) -> tuple[int, float, float, float]:
    """(status, loop stall ms, extra RSS MB, client seconds) of one request."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    before = _status_kb(pid, "VmRSS")
    with LoopProbe(url) as probe, httpx.Client(base_url=url, timeout=300) as client:
        began = time.perf_counter()
        response = client.post(
            "/predict", content=body, headers={"Content-Type": "application/json", **headers}
        )
        elapsed = time.perf_counter() - began
    extra = (_status_kb(pid, "VmHWM") - before) / 1024
    if not probe.samples:
        sys.exit(f"no /health probe was answered: {probe.errors[:3]}")
    stall = max(0.0, max(probe.samples) - idle) * 1000
    return response.status_code, stall, extra, elapsed


def _run_cases(
    url: str, pid: int, frame: pd.DataFrame, max_body: int, keys: dict[str, dict[str, str]], repeats: int
) -> None:
    with httpx.Client(base_url=url) as client:
        idle = statistics.median(_timed(lambda: client.get("/health")) for _ in range(50))
    print(f"idle /health: {idle * 1000:.2f} ms; body limit {max_body / MB:.0f} MiB; worker pid {pid}\n")
    print(
        f"{'case':<48} {'bytes':>10} {'status':>6} {'loop stall ms':>14} {'extra RSS MB':>13} {'client s':>9}"
    )
    for name, body, key in _cases(frame, max_body):
        runs = [_measure(url, pid, body, keys[key], idle) for _ in range(repeats)]
        status = runs[-1][0]
        stall = statistics.median(run[1] for run in runs)
        extra = max(run[2] for run in runs)
        seconds = statistics.median(run[3] for run in runs)
        print(f"{name:<48} {len(body):>10,} {status:>6} {stall:>14.1f} {extra:>13.1f} {seconds:>9.3f}")


def _timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median stall, worst RSS)")
    args = parser.parse_args()

    frame = normalize(read_source(REGINE_NJ)).frame
    train = frame[(frame["counted_at"] >= pd.Timestamp("2024-01-01", tz="UTC"))]
    model = build_model("hgb", {"max_iter": 30}).fit(train)
    split = SplitMetrics(r2=0.8, rmse=40.0, mae=25.0)

    with served_champion(model, train, split, workers=1) as served:
        keys = {
            "predict": {"X-API-Key": served.predict_key},
            "none": {},
            "wrong": {"X-API-Key": "not-" + served.predict_key},
        }
        max_body = served.settings.serving_max_body_bytes
        _run_cases(served.url, served.pid, frame, max_body, keys, args.repeats)


if __name__ == "__main__":
    main()
