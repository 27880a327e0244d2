"""Model benchmark on real data: the temporal hold-out the model types are chosen on.

Train on 2023 (local Paris dates), test on 2024-01-01 → 2024-02-25: the only honest test for a
forecaster (a random split leaks the days around each test hour into training). The data are the
``regine_nj`` parquet (101 counters, hourly, 2023-01 → 2024-02; see
``tests/data/paris_bike_counts/SOURCES.md``), read through ``velocast.data.normalize``.

Each model runs in its own process, so the peak RSS is that model's (data + fit + predict):

    .venv/bin/python bench/bench_models.py                   # every entry (rf takes minutes)
    .venv/bin/python bench/bench_models.py --models hgb      # a subset
    .venv/bin/python bench/bench_models.py --data other.parquet

Entries: ``rf`` (the original system's model), ``hgb`` (the default, its default
hyper-parameters), ``hgb_calendar`` (the same without recency weights and level factors: calendar
only) and ``last_week`` (the count at the same local hour one week earlier, from the actuals, so
it needs data the 24-hour forecast does not have; a reference, not a model type).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "data"
    / "paris_bike_counts"
    / "regine_nj_projetvelo"
    / "dataset_projet_velo.parquet"
)
TRAIN_START, TEST_START, TEST_END = (
    pd.Timestamp("2023-01-01"),
    pd.Timestamp("2024-01-01"),
    pd.Timestamp("2024-02-26"),
)
COLUMNS = ["counter_id", "counted_at", "hourly_count"]
# name → (model type, hyper-parameters); None is the last-week reference.
ENTRIES: dict[str, tuple[str, dict[str, Any]] | None] = {
    "rf": ("rf", {}),
    "hgb": ("hgb", {}),
    "hgb_calendar": ("hgb", {"recency_half_life_days": None, "level_window_days": 0}),
    "last_week": None,
}


def split(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalize the file and split it by local Paris date."""
    from velocast.data.normalize import normalize
    from velocast.data.readers import read_source

    result = normalize(read_source(path))
    if not result.rejected.empty:
        print(f"normalize rejected {len(result.rejected)} rows", file=sys.stderr)
    frame = result.frame.loc[result.frame["hourly_count"].notna(), COLUMNS].reset_index(drop=True)
    local = frame["counted_at"].dt.tz_convert("Europe/Paris").dt.tz_localize(None)
    train = frame[(local >= TRAIN_START) & (local < TEST_START)].reset_index(drop=True)
    test = frame[(local >= TEST_START) & (local < TEST_END)].reset_index(drop=True)
    return train, test


def scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "r2": float(r2_score(actual, predicted)),
        "rmse": float(np.sqrt(mean_squared_error(actual, predicted))),
        "mae": float(mean_absolute_error(actual, predicted)),
    }


def _peak_rss_mb() -> float:
    """Peak RSS of this process since it started.

    ``getrusage``'s ``ru_maxrss`` survives exec on Linux, so a spawned child would report its
    parent's peak at fork time; ``VmHWM`` belongs to the process's own address space.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def _run_model(name: str, workdir: str, queue: Any) -> None:
    from velocast.ml.model_base import load_model, model_size_mb
    from velocast.ml.models import build_model

    entry = ENTRIES[name]
    assert entry is not None
    model_type, hyperparams = entry
    train = pd.read_parquet(Path(workdir) / "train.parquet")
    test = pd.read_parquet(Path(workdir) / "test.parquet")
    model = build_model(model_type, hyperparams)
    started = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    prediction = model.predict_with_report(test)
    predict_s = time.perf_counter() - started
    path = model.save(Path(workdir) / f"{name}.joblib")
    reloaded = load_model(path).predict(test)
    actual = test["hourly_count"].to_numpy(dtype=np.float64)
    queue.put(
        {
            **scores(actual, prediction.values),
            "fit_s": fit_s,
            "predict_s": predict_s,
            "size_mb": model_size_mb(path),
            "peak_rss_mb": _peak_rss_mb(),
            "unseen_counter_rows": prediction.unseen_counter_rows,
            # Not an assert: a mismatch should not throw away a long fit's numbers.
            "reload_max_abs_diff": float(np.max(np.abs(reloaded - prediction.values), initial=0.0)),
        }
    )


def last_week_predictions(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Count of the same counter at the same local hour 7 days earlier.

    Where that hour is missing, the counter's mean at that weekday and hour in the training data
    stands in (and the number of such rows is returned).
    """
    history = pd.concat([train, test], ignore_index=True)
    history_local = history["counted_at"].dt.tz_convert("Europe/Paris").dt.tz_localize(None)
    test_local = test["counted_at"].dt.tz_convert("Europe/Paris").dt.tz_localize(None)
    # The autumn clock change makes one local hour appear twice: keep the first reading.
    lookup = (
        pd.DataFrame(
            {"counter_id": history["counter_id"], "at": history_local, "lag": history["hourly_count"]}
        )
        .drop_duplicates(["counter_id", "at"])
        .set_index(["counter_id", "at"])["lag"]
    )
    keys = pd.MultiIndex.from_arrays([test["counter_id"], test_local - pd.Timedelta(days=7)])
    lagged = lookup.reindex(keys).to_numpy(dtype=np.float64, na_value=np.nan)

    train_local = train["counted_at"].dt.tz_convert("Europe/Paris").dt.tz_localize(None)
    profile = (
        train.assign(weekday=train_local.dt.dayofweek, hour=train_local.dt.hour)
        .groupby(["counter_id", "weekday", "hour"])["hourly_count"]
        .mean()
    )
    fallback_keys = pd.MultiIndex.from_arrays(
        [test["counter_id"], test_local.dt.dayofweek, test_local.dt.hour]
    )
    fallback = profile.reindex(fallback_keys).to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(lagged)
    filled = np.where(missing, fallback, lagged)
    return np.nan_to_num(filled, nan=0.0), int(missing.sum())


def _run_last_week(name: str, workdir: str, queue: Any) -> None:
    train = pd.read_parquet(Path(workdir) / "train.parquet")
    test = pd.read_parquet(Path(workdir) / "test.parquet")
    started = time.perf_counter()
    predicted, filled = last_week_predictions(train, test)
    elapsed = time.perf_counter() - started
    actual = test["hourly_count"].to_numpy(dtype=np.float64)
    queue.put(
        {
            **scores(actual, predicted),
            "fit_s": 0.0,
            "predict_s": elapsed,
            "size_mb": float("nan"),
            "peak_rss_mb": _peak_rss_mb(),
            "filled_rows": filled,
        }
    )


def run_in_subprocess(name: str, workdir: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    target = _run_last_week if ENTRIES[name] is None else _run_model
    process = context.Process(target=target, args=(name, str(workdir), queue))
    process.start()
    result: dict[str, Any] = queue.get()  # before join: a large result would block the child
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{name} failed with exit code {process.exitcode}")
    return result


def _number(value: float, spec: str) -> str:
    return "-" if np.isnan(value) else format(value, spec)


def _ratio(value: float, reference: float | None) -> str:
    if reference is None or not reference or np.isnan(value) or np.isnan(reference):
        return "-"
    return f"{value / reference:.3f}"


def print_table(results: dict[str, dict[str, Any]]) -> None:
    rf = results.get("rf")
    header = (
        f"{'model':<13} {'R²':>6} {'RMSE':>6} {'MAE':>6} {'fit s':>7} {'size MB':>8} {'peak RSS MB':>12} "
        f"{'ΔR² vs rf':>10} {'fit/rf':>7} {'size/rf':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        delta = f"{row['r2'] - rf['r2']:+.3f}" if rf is not None else "-"
        print(
            f"{name:<13} {row['r2']:>6.3f} {row['rmse']:>6.1f} {row['mae']:>6.1f} {row['fit_s']:>7.1f} "
            f"{_number(row['size_mb'], '.2f'):>8} {row['peak_rss_mb']:>12.0f} {delta:>10} "
            f"{_ratio(row['fit_s'], rf['fit_s'] if rf else None):>7} "
            f"{_ratio(row['size_mb'], rf['size_mb'] if rf else None):>8}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the regine_nj parquet")
    parser.add_argument(
        "--models",
        default=",".join(ENTRIES),
        help=f"comma-separated entries among {', '.join(ENTRIES)} (default: all)",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENTRIES]
    if unknown:
        parser.error(f"unknown entries {unknown}; choose among {', '.join(ENTRIES)}")

    # OpenMP threads that spin while waiting steal the cores from the working ones when other
    # processes share the machine (HistGradientBoosting fits took 2-4x longer here); the spawned
    # children inherit this. Deployments should set the same variable.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.perf_counter()
    train, test = split(args.data)
    print(
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}\n"
        f"data: {args.data.name}, normalized and split in {time.perf_counter() - started:.1f} s\n"
        f"train: {len(train):,} rows, {train['counter_id'].nunique()} counters, local 2023\n"
        f"test:  {len(test):,} rows, {test['counter_id'].nunique()} counters, "
        f"local {TEST_START.date()} → {(TEST_END - pd.Timedelta(days=1)).date()}\n"
    )
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="velocast-bench-") as workdir:
        train.to_parquet(Path(workdir) / "train.parquet")
        test.to_parquet(Path(workdir) / "test.parquet")
        for name in names:
            results[name] = run_in_subprocess(name, Path(workdir))
            row = results[name]
            print(f"  {name}: R² {row['r2']:.3f}, fit {row['fit_s']:.1f} s", flush=True)
    # Fit times depend on what else runs: the load says how busy the cores were.
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs, load average (1/5/15 min) at the end: {load}\n")
    print_table(results)
    notes = []
    if "last_week" in results:
        notes.append(
            f"last_week uses actuals up to 7 days before each test hour "
            f"({results['last_week']['filled_rows']:,} rows filled from the 2023 weekday×hour mean)"
        )
    unseen = {
        name: row["unseen_counter_rows"] for name, row in results.items() if row.get("unseen_counter_rows")
    }
    if unseen:
        notes.append(f"test rows of counters unseen in training: {unseen}")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
