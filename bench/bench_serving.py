"""Serving benchmark: ``/predict`` over HTTP next to the bare in-process ``predict``.

Trains the default model on a real slice (2023, the counters of the shipped data), registers it
as the dev champion in the local stack's registry, starts the sidecar with uvicorn on
127.0.0.1, then prints p50/p99 latency for 1, 100, 1 000 and 10 000 records (and the ratio to
the bare ``model.predict`` of the same rows), and req/s under 32 concurrent clients for 30 s:

    .venv/bin/python bench/bench_serving.py [--seconds 30] [--clients 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from served_champion import REGINE_NJ, served_champion

from velocast.data.normalize import normalize
from velocast.data.readers import read_source
from velocast.ml.evaluation import score
from velocast.ml.models import build_model
from velocast.ml.registry_entries import SplitMetrics

SIZES = (1, 100, 1_000, 10_000)
REPEATS = {1: 200, 100: 100, 1_000: 40, 10_000: 10}


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


def _records(frame: pd.DataFrame, size: int) -> list[dict[str, Any]]:
    rows = frame.sample(n=size, replace=size > len(frame), random_state=size)
    return [
        {"counter_id": str(c), "counted_at": ts.isoformat()}
        for c, ts in zip(rows["counter_id"], rows["counted_at"], strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REGINE_NJ)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    frame = normalize(read_source(args.data)).frame
    train = frame[frame["counted_at"] < pd.Timestamp("2024-01-01", tz="UTC")]
    test = frame[frame["counted_at"] >= pd.Timestamp("2024-01-01", tz="UTC")]
    grid = test[["counter_id", "counted_at"]]
    started = time.perf_counter()
    model = build_model().fit(train)
    print(f"trained {model.model_type} on {len(train):,} rows in {time.perf_counter() - started:.1f} s")
    held_out = score(test["hourly_count"].to_numpy(dtype=float), model.predict(test))
    split = SplitMetrics(r2=held_out.r2, rmse=held_out.rmse, mae=held_out.mae)

    with served_champion(model, train, split, workers=args.workers) as served:
        _latencies(served.url, served.predict_key, grid, model)
        _throughput(served.url, served.predict_key, grid, args.clients, args.seconds)


def _latencies(url: str, key: str, grid: pd.DataFrame, model: Any) -> None:
    print(
        f"\n{'records':>8} {'HTTP p50 ms':>12} {'HTTP p99 ms':>12} {'bare p50 ms':>12} {'bare p99 ms':>12} "
        f"{'p50 ratio':>10}"
    )
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
        for size in SIZES:
            body = {"records": _records(grid, size)}
            rows = pd.DataFrame(body["records"])
            rows["counted_at"] = pd.to_datetime(rows["counted_at"], utc=True)
            client.post("/predict", json=body).raise_for_status()  # warm-up
            http, bare = [], []
            for _ in range(REPEATS[size]):
                began = time.perf_counter()
                response = client.post("/predict", json=body)
                http.append(time.perf_counter() - began)
                response.raise_for_status()
                began = time.perf_counter()
                values = model.predict(rows)
                bare.append(time.perf_counter() - began)
            assert len(values) == size and np.all(values >= 0)
            (h50, h99), (b50, b99) = _percentiles(http), _percentiles(bare)
            print(f"{size:>8} {h50:>12.1f} {h99:>12.1f} {b50:>12.1f} {b99:>12.1f} {h50 / b50:>10.2f}")


def _throughput(url: str, key: str, grid: pd.DataFrame, clients: int, seconds: float) -> None:
    body = {"records": _records(grid, 24)}  # one counter-day per request
    counts, errors = [0] * clients, [0] * clients
    stop = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
            while time.monotonic() < stop:
                if client.post("/predict", json=body).status_code == 200:
                    counts[index] += 1
                else:
                    errors[index] += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        f"\n{clients} concurrent clients, {seconds:.0f} s, 24 records/request: "
        f"{sum(counts) / seconds:.1f} req/s, {sum(errors)} errors"
    )


if __name__ == "__main__":
    main()
