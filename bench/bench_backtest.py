"""Forecast quality with recent history: the rolling-origin backtest on three windows of real data.

Each window fits ``hgb`` with its history stage once on the rows before ``train_until``, then
forecasts every day of the window at horizons 1 and 2 days with a publication lag of 2 days
(``velocast.ml.backtest``), and prints, overall and per ISO week, the R² of the model, of its
calendar-only twin (the same fit's first stage) and of the same-hour-last-week baseline on the
same rows, the 80 % interval's coverage, and the issue's goals beside them:

* winter (train until 2024-01-01, days 2024-01-01 → 2024-02-25): R² ≥ 0.90 and better than
  same-hour-last-week in every ISO week;
* every window: no worse than the calendar-only twin by more than 0.005 R², interval coverage
  within 77–83 %;
* fitting the full year (the winter window) ≤ 60 s.

    .venv/bin/python bench/bench_backtest.py                     # the three windows
    .venv/bin/python bench/bench_backtest.py --windows winter    # a subset
    .venv/bin/python bench/bench_backtest.py --hyperparams '{"max_iter": 200}'

Data: the ``regine_nj`` parquet (101 counters, hourly, 2023-01 → 2024-02; Ville de Paris –
opendata.paris.fr, ODbL: see ``tests/data/paris_bike_counts/NOTICE.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from served_champion import REGINE_NJ

WINDOWS: dict[str, tuple[str, str, str]] = {
    "winter": ("2024-01-01", "2024-01-01", "2024-02-26"),
    "summer": ("2023-07-01", "2023-07-01", "2023-09-11"),
    "autumn": ("2023-10-01", "2023-10-01", "2023-12-01"),
}
GUARD_R2 = 0.005
COVERAGE_GOAL = (0.77, 0.83)


def _r2(block: dict[str, Any], name: str) -> float:
    value = block[name]["r2"]
    return float("nan") if value is None else float(value)


def report(name: str, metrics: dict[str, Any]) -> list[str]:
    """Print a window's numbers; return the goals it misses."""
    missed: list[str] = []
    overall = metrics["overall"]
    model, twin, last_week = (_r2(overall, key) for key in ("model", "calendar_only", "last_week"))
    coverage = overall["model"]["interval_coverage"]
    print(
        f"\n## {name}: train until {metrics['window']['train_until']}, days {metrics['window']['from']} → "
        f"{metrics['window']['to']} ({overall['rows']:,} scored rows × horizons, history used on "
        f"{overall['history_used_share']:.1%})"
    )
    print(f"fit {metrics['timings']['fit_s']:.1f} s on {metrics['training_rows']:,} rows")
    print("| week | model R² | calendar-only R² | last-week R² | coverage | mean width |")
    print("|---|---|---|---|---|---|")
    for week, block in metrics["by_week"].items():
        print(
            f"| {week} | {_r2(block, 'model'):.3f} | {_r2(block, 'calendar_only'):.3f} | "
            f"{_r2(block, 'last_week'):.3f} | {block['model']['interval_coverage']:.1%} | "
            f"{block['model']['interval_mean_width']:.1f} |"
        )
        if name == "winter" and _r2(block, "model") <= _r2(block, "last_week"):
            missed.append(
                f"winter {week}: model R² {_r2(block, 'model'):.3f} ≤ last week {_r2(block, 'last_week'):.3f}"
            )
    print(
        f"| **all** | **{model:.4f}** | {twin:.4f} | {last_week:.4f} | {coverage:.1%} | "
        f"{overall['model']['interval_mean_width']:.1f} |"
    )
    healthy = metrics["overall_without_broken_actuals"]
    print(
        f"without the counts of broken loops ({overall['rows'] - healthy['rows']:,} rows): model R² "
        f"{_r2(healthy, 'model'):.4f}, calendar-only {_r2(healthy, 'calendar_only'):.4f}, "
        f"last week {_r2(healthy, 'last_week'):.4f}"
    )
    for horizon, block in metrics["by_horizon"].items():
        print(
            f"horizon {horizon} d: model R² {_r2(block, 'model'):.4f}, "
            f"coverage {block['model']['interval_coverage']:.1%}"
        )
    if model < twin - GUARD_R2:
        missed.append(f"{name}: model R² {model:.4f} < calendar-only twin {twin:.4f} − {GUARD_R2}")
    if not COVERAGE_GOAL[0] <= coverage <= COVERAGE_GOAL[1]:
        missed.append(f"{name}: 80 % interval coverage {coverage:.1%} outside 77–83 %")
    if name == "winter" and model < 0.90:
        missed.append(f"winter: R² {model:.4f} < 0.90")
    if name == "winter" and metrics["timings"]["fit_s"] > 60:
        missed.append(f"winter: fitting the full year took {metrics['timings']['fit_s']:.0f} s > 60 s")
    return missed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=REGINE_NJ, help="counts file (any variant normalize reads)"
    )
    parser.add_argument("--windows", nargs="+", choices=sorted(WINDOWS), default=list(WINDOWS))
    parser.add_argument("--hyperparams", default="{}", help="JSON object for hgb")
    parser.add_argument("--json", type=Path, help="also write every window's metrics to this file")
    args = parser.parse_args(argv)

    from velocast.data.normalize import normalize
    from velocast.data.readers import read_source
    from velocast.ml.backtest import BacktestWindow, run_backtest

    started = time.perf_counter()
    frame = normalize(read_source(args.data)).frame
    print(
        f"read and normalized {len(frame):,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr
    )
    missed: list[str] = []
    results: dict[str, Any] = {}
    for name in args.windows:
        started = time.perf_counter()
        result = run_backtest(
            frame, BacktestWindow.of(*WINDOWS[name]), hyperparams=json.loads(args.hyperparams)
        )
        print(f"{name}: backtest in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results[name] = result.metrics
        missed += report(name, result.metrics)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("\ngoals missed:" if missed else "\nevery goal met")
    for line in missed:
        print(f"- {line}")


if __name__ == "__main__":
    main()
