"""Drift benchmark: the weekly monitor's drift step (``velocast.ml.drift``) on the full packaged data.

The packaged counts (``include/velocast/local/data/bike_counts.parquet``, 101 counters, hourly,
2023-01 → 2024-02) are normalized; the last 7 days are the current window and everything before
them the reference (≈960k rows: the worst case, a whole training set as reference). A fake
champion prediction, each counter's mean count at that hour of the week, gives both sides
residuals, so the three columns and every counter are measured. Then, for comparison, the
reference the DAG uses: ``reference_slice`` of the same rows for the same window.

Prints the seconds of each phase (importing Evidently apart: it takes seconds once per process),
peak RSS (``ru_maxrss``) after each phase, rows, HTML size, the measured shares and scores::

    .venv/bin/python bench/bench_drift.py
    .venv/bin/python bench/bench_drift.py --html /tmp/drift.html     # keep the report
    .venv/bin/python bench/bench_drift.py --data other.parquet --current-days 14

Budget of the drift step (``drift_frame`` + ``measure_drift``) on the full reference: ≤ 30 s, ≤ 1.5 GB.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1] / "include" / "velocast" / "local" / "data" / "bike_counts.parquet"
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


class Phases:
    """Wall time and peak RSS after each phase, printed as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = work(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - started
        print(f"{name:<34} {self.seconds[name]:7.2f} s   peak RSS {peak_rss_mb():7.0f} MB")
        return result


def load(path: Path) -> pd.DataFrame:
    from velocast.data.normalize import normalize
    from velocast.data.readers import read_source

    frame = normalize(read_source(path)).frame
    rows: pd.DataFrame = frame.loc[
        frame["hourly_count"].notna(), ["counter_id", "counted_at", "hourly_count"]
    ]
    return rows.reset_index(drop=True)


def with_fake_predictions(rows: pd.DataFrame) -> pd.DataFrame:
    """Each counter's mean count at that Paris hour of the week: a stand-in for the champion."""
    local = rows["counted_at"].dt.tz_convert("Europe/Paris")
    hour_of_week = local.dt.dayofweek * 24 + local.dt.hour
    mean = (
        rows["hourly_count"].astype("float64").groupby([rows["counter_id"], hour_of_week]).transform("mean")
    )
    return rows.assign(predicted_count=mean)


def describe(label: str, result: Any, html: str) -> None:
    scores = ", ".join(f"{name} {score:.3f}" for name, score in result.column_scores.items())
    counter_share = "n/a" if result.counter_share is None else f"{result.counter_share:.3f}"
    print(
        f"{label}: reference {result.reference_rows} rows, current {result.current_rows} rows\n"
        f"  share {result.share:.3f} ({result.drifted_count}/{len(result.columns)}: "
        f"{', '.join(result.drifted_columns) or 'none'}), method {result.method}, scores: {scores}\n"
        f"  counter share {counter_share} "
        f"({len(result.drifted_counters)}/{result.counters_compared} counters)\n"
        f"  measure_drift's own clock {result.seconds:.2f} s, HTML {len(html) / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="counts file (any variant normalize reads)"
    )
    parser.add_argument("--current-days", type=int, default=7, help="the current window: the last N days")
    parser.add_argument("--html", type=Path, help="write the full-reference HTML report here")
    args = parser.parse_args()

    from velocast.ml.drift import drift_frame, measure_drift, reference_slice

    phases = Phases()
    rows = phases.run("read + normalize", load, args.data)
    rows = phases.run("fake predictions", with_fake_predictions, rows)
    end = rows["counted_at"].max() + pd.Timedelta(hours=1)
    start = end - pd.Timedelta(days=args.current_days)
    reference_rows, current_rows = rows[rows["counted_at"] < start], rows[rows["counted_at"] >= start]
    print(f"rows: reference {len(reference_rows)}, current {len(current_rows)} ({start} → {end})")

    phases.run("import evidently", __import__, "evidently.metrics")
    reference = phases.run("drift_frame (reference)", drift_frame, reference_rows)
    current = phases.run("drift_frame (current)", drift_frame, current_rows)
    report = phases.run("measure_drift (full reference)", measure_drift, reference, current)
    step = sum(phases.seconds[name] for name in ("drift_frame (reference)", "drift_frame (current)"))
    step += phases.seconds["measure_drift (full reference)"]
    print(
        f"drift step on the full reference: {step:.2f} s (budget 30 s), "
        f"peak RSS {peak_rss_mb():.0f} MB (budget 1536 MB)"
    )
    describe("full reference", report.result, report.html)
    if args.html:
        args.html.write_text(report.html, encoding="utf-8")
        print(f"HTML written to {args.html}")

    sliced, rule = phases.run(
        "reference_slice", reference_slice, reference_rows, start.to_pydatetime(), end.to_pydatetime()
    )
    print(f"reference_slice: {rule}")
    sliced_report = phases.run("measure_drift (DAG reference)", measure_drift, drift_frame(sliced), current)
    describe("DAG reference", sliced_report.result, sliced_report.html)
    print(f"peak RSS of the process: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
