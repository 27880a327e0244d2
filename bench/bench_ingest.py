"""Ingestion benchmark: 30 days and 13 months of replayed data through the real DAG 1 steps.

Runs each scale in its own process (so peak RSS is per scale) against the local stack
(emulators + API replay) and prints rows/s for each step and the peak RSS:

    .venv/bin/python -m bench.bench_ingest            # both scales
    .venv/bin/python -m bench.bench_ingest --days 30  # one scale

Steps timed: fetch (API export → NDJSON staged in GCS), normalize+validate (NDJSON →
normalized, Great Expectations suite → Parquet staged in GCS), load (load jobs + the
replace-days transaction in BigQuery).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from datetime import UTC, datetime, timedelta
from typing import Any

SCALES = {"30 days": 30, "13 months": 395}


def _run_scale(days: int, queue: Any) -> None:
    from velocast.ingest import steps
    from velocast.ingest.run import IngestionRun
    from velocast.ingest.window import IngestionWindow
    from velocast.settings import get_settings

    settings = get_settings()
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = IngestionWindow(logical_date=end.date(), start=end - timedelta(days=days), end=end)
    run = IngestionRun(window=window, run_id=f"bench__{days}d", settings=settings)
    steps.ensure_tables(settings)

    started = time.perf_counter()
    extracted = steps.extract(run)
    fetched_at = time.perf_counter()
    outcome = steps.transform(run, extracted)
    transformed_at = time.perf_counter()
    loaded = steps.load(run, outcome)
    loaded_at = time.perf_counter()
    queue.put(
        {
            "rows": outcome.rows_fetched,
            "valid": outcome.rows_valid,
            "fetch_s": fetched_at - started,
            "transform_s": transformed_at - fetched_at,
            "load_s": loaded_at - transformed_at,
            "loaded": loaded.rows_loaded,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, action="append", help="window length(s) in days")
    args = parser.parse_args()
    scales = {f"{d} days": d for d in args.days} if args.days else SCALES

    from velocast.local.airflow_env import airflow_environment
    from velocast.local.stack import running_stack
    from velocast.settings import get_settings

    settings = get_settings()
    os.environ.update(airflow_environment(settings))
    context = multiprocessing.get_context("spawn")
    print(
        f"{'scale':>10} {'rows':>9} {'fetch r/s':>10} {'norm+val r/s':>13} {'load r/s':>9} "
        f"{'total s':>8} {'peak RSS MB':>12}"
    )
    with running_stack(settings):
        for label, days in scales.items():
            queue = context.Queue()
            process = context.Process(target=_run_scale, args=(days, queue))
            process.start()
            result = queue.get()
            process.join()
            rows = result["rows"]
            total = result["fetch_s"] + result["transform_s"] + result["load_s"]
            print(
                f"{label:>10} {rows:>9} {rows / result['fetch_s']:>10.0f} "
                f"{rows / result['transform_s']:>13.0f} "
                f"{result['valid'] / result['load_s']:>9.0f} {total:>8.1f} {result['peak_rss_mb']:>12.0f}"
            )


if __name__ == "__main__":
    main()
