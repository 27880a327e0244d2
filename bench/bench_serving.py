"""Serving benchmark: ``/predict`` over HTTP next to the bare in-process ``predict``.

Trains the default model on a real slice (2023, the counters of the shipped data), registers it
as the dev champion in the local stack's registry, starts the sidecar with uvicorn on
127.0.0.1, then prints, for 1, 100, 1 000 and 10 000 records: p50/p99 latency over HTTP, of the
bare ``model.predict`` (compiled trees) and of ``model.predict_reference`` (scikit-learn's own
``predict`` on a feature frame: the path before the compiled trees), and the HTTP / bare ratio.
Then req/s of one-record and 24-record requests on ``--clients`` keep-alive connections for
``--seconds`` each (``load_client``: one asyncio process, its CPU share printed beside):

    .venv/bin/python bench/bench_serving.py [--seconds 30] [--clients 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from load_client import run_load
from served_champion import REGINE_NJ, served_champion

from velocast.data.normalize import normalize
from velocast.data.readers import read_source
from velocast.ml.evaluation import score
from velocast.ml.models import build_model
from velocast.ml.registry_entries import SplitMetrics

SIZES = (1, 100, 1_000, 10_000)
JSON = {"Content-Type": "application/json"}
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


def _timed(call: Any, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return samples


def _latencies(url: str, key: str, grid: pd.DataFrame, model: Any) -> None:
    print(
        f"\n{'records':>8} {'HTTP p50':>9} {'HTTP p99':>9} {'bare p50':>9} {'bare p99':>9} "
        f"{'ref p50':>9} {'ref p99':>9} {'HTTP/bare':>10} {'ref/bare':>9}   (ms)"
    )
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
        for size in SIZES:
            body = {"records": _records(grid, size)}
            rows = pd.DataFrame(body["records"])
            rows["counted_at"] = pd.to_datetime(rows["counted_at"], utc=True)
            client.post("/predict", json=body).raise_for_status()  # warm-up
            values = model.predict(rows)
            assert len(values) == size and np.all(values >= 0)
            assert np.array_equal(values, model.predict_reference(rows))

            # The body encoded once: the client's own JSON encoding is not the server's latency.
            content = json.dumps(body).encode()

            def post(content: bytes = content) -> None:
                client.post("/predict", content=content, headers=JSON).raise_for_status()

            http = _timed(post, REPEATS[size])
            bare = _timed(lambda rows=rows: model.predict(rows), REPEATS[size])
            reference = _timed(lambda rows=rows: model.predict_reference(rows), REPEATS[size])
            (h50, h99), (b50, b99), (r50, r99) = map(_percentiles, (http, bare, reference))
            print(
                f"{size:>8} {h50:>9.2f} {h99:>9.2f} {b50:>9.2f} {b99:>9.2f} {r50:>9.2f} {r99:>9.2f} "
                f"{h50 / b50:>10.2f} {r50 / b50:>9.1f}"
            )


def _throughput(url: str, key: str, grid: pd.DataFrame, clients: int, seconds: float) -> None:
    print(f"\n{clients} keep-alive connections, {seconds:.0f} s each:")
    for size in (1, 24):  # one record; one counter-day
        result = run_load(
            url,
            "/predict",
            {"records": _records(grid, size)},
            {"X-API-Key": key},
            connections=clients,
            seconds=seconds,
        )
        p50, p99 = _percentiles(result.latencies) if result.latencies else (float("nan"),) * 2
        print(
            f"  {size:>2} record(s)/request: {result.rate:7.1f} req/s ({result.rate * size:8.0f} rows/s), "
            f"{result.errors} errors, latency p50 {p50:.1f} ms p99 {p99:.1f} ms, "
            f"client CPU {100 * result.client_cpu_share:.0f} % of the machine"
        )


if __name__ == "__main__":
    main()
