"""Model-load benchmark: a champion loaded by its ``models:/<name>@<alias>`` URI, as a sidecar worker does.

On the local stack (GCS emulator, MLflow server with proxied artifacts), the default ``hgb`` model is
fitted on the first ``--months`` months of 2023 of the regine_nj export (12: the ≈0.6 MB model of
the README), logged and registered by ``Tracker.log_training`` and given the ``champion-dev`` alias.
Three ways of loading it back, each in fresh processes that first import the sidecar app (what a
worker holds before its store loads a model):

- mlflow: ``mlflow.pyfunc.load_model`` + ``unwrap_python_model()`` (the whole model folder, MLflow's
  requirement checks);
- pyfunc: ``velocast.ml.pyfunc.load_velocast_model`` (MLflow's client: the version resolved once,
  ``MLmodel`` and the joblib file only);
- sidecar: ``velocast_serving.model_store.load_model_uri`` → ``velocast.ml.model_uri_loader`` (the
  same two files through the tracking server's REST API, without importing MLflow).

Printed per path: the cold load (first load in the process, imports included: a worker's
start-up, what the store logs as ``load_seconds``), the same with ``--workers`` processes starting
together, the warm load (a second load in the same process: a hot reload), the ratios to the
mlflow path, and whether the process imported MLflow. The medians of ``--repeat`` runs; each run
also checks that the paths predict the same values.

    .venv/bin/python bench/bench_model_load.py
    .venv/bin/python bench/bench_model_load.py --months 3 --repeat 5 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from served_champion import REGINE_NJ

PATHS = ("mlflow", "pyfunc", "sidecar")
PROBE_ROWS = 500


# --- in the child process: one path, timed -------------------------------------------------------


def _load_mlflow(uri: str) -> Any:
    import mlflow
    import mlflow.pyfunc

    from velocast.settings import get_settings

    tracking_uri = get_settings().mlflow_tracking_uri
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def _load_pyfunc(uri: str) -> Any:
    from velocast.ml.pyfunc import load_velocast_model

    return load_velocast_model(uri)


def _load_sidecar(uri: str) -> Any:
    from velocast_serving.model_store import load_model_uri

    from velocast.gcp.clients import storage_client
    from velocast.settings import get_settings

    return load_model_uri(uri, storage_client(get_settings()))


def child(path: str, uri: str, probe: str) -> None:
    """Print ``{"cold", "warm", "prediction_sum", "mlflow_imported"}`` for one load path as JSON."""
    import velocast_serving.main  # noqa: F401  # the worker's imports before its first load

    load = {"mlflow": _load_mlflow, "pyfunc": _load_pyfunc, "sidecar": _load_sidecar}[path]
    started = time.perf_counter()
    model = load(uri)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    load(uri)
    warm = time.perf_counter() - started
    values = model.predict(pd.read_parquet(probe))
    mlflow_imported = "mlflow" in sys.modules
    print(
        json.dumps(
            {
                "cold": cold,
                "warm": warm,
                "prediction_sum": float(values.sum()),
                "mlflow_imported": mlflow_imported,
            }
        )
    )


# --- in the parent: the stack, the model, the runs -------------------------------------------------


def _training_frame(months: int) -> pd.DataFrame:
    from velocast.data.normalize import normalize

    raw = pd.read_parquet(
        REGINE_NJ,
        filters=[("annee_comptage", "=", 2023), ("mois_comptage", "in", list(range(1, months + 1)))],
    )
    frame = normalize(raw).frame
    return frame[frame["hourly_count"].notna()].reset_index(drop=True)


def _register(settings: Any, frame: pd.DataFrame) -> tuple[str, float]:
    """``models:/<name>@champion-dev`` of a default hgb fitted on ``frame``, and its file's size (MB)."""
    from velocast.ml.evaluation import double_evaluate
    from velocast.ml.model_base import model_size_mb
    from velocast.ml.models import build_model
    from velocast.ml.tracking import ChampionAliases, Tracker

    started = time.perf_counter()
    model = build_model("hgb", {}).fit(frame)
    with tempfile.TemporaryDirectory() as tmp:
        size = model_size_mb(model.save(Path(tmp) / "model.joblib"))
    test = frame.tail(2_000)
    logged = Tracker(settings, experiment_name="bench-model-load").log_training(
        model,
        double_evaluate(model, None, test, test),
        None,
        {"rows": len(frame)},
        {"test_baseline": test, "test_current": test},
    )
    alias = ChampionAliases.from_settings(settings).move(logged.registered_name, logged.version, "dev")
    print(f"fitted, logged and registered {logged.model_uri} in {time.perf_counter() - started:.1f} s")
    return f"models:/{logged.registered_name}@{alias}", size


def _run_children(
    path: str, uri: str, probe: str, workers: int, env: dict[str, str]
) -> list[dict[str, float]]:
    """``workers`` fresh processes loading ``uri`` at the same time, like a sidecar's workers."""
    command = [sys.executable, __file__, "--child", path, "--uri", uri, "--probe", probe]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(workers)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            sys.exit(f"the {path} load failed (exit {process.returncode}); run the child alone to see why")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _cleanup(settings: Any) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    for model in client.search_registered_models(f"name LIKE '{settings.registered_model_name}-%'"):
        client.delete_registered_model(model.name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13), metavar="1..12")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.uri, args.probe)
        return

    from velocast.local.mlflow_server import MlflowServer
    from velocast.local.stack import running, running_stack, stack_environment
    from velocast.settings import get_settings

    settings = get_settings().model_copy(
        update={"registered_model_name": f"velocast-bench-{uuid.uuid4().hex[:8]}"}
    )
    frame = _training_frame(args.months)
    env = {**os.environ, **stack_environment(settings)}
    env["VELOCAST_MLFLOW_TRACKING_URI"] = str(settings.mlflow_tracking_uri)
    with running_stack(settings), running(MlflowServer(settings)), tempfile.TemporaryDirectory() as tmp:
        uri, size = _register(settings, frame)
        probe = str(Path(tmp) / "probe.parquet")
        frame.sample(PROBE_ROWS, random_state=0).drop(columns=["hourly_count"]).to_parquet(probe)
        print(f"{uri}: hgb fitted on {len(frame):,} rows of 2023 (months 1-{args.months}), {size:.2f} MB")
        cold: dict[tuple[str, int], list[float]] = {}
        warm: dict[str, list[float]] = {path: [] for path in PATHS}
        imported: dict[str, set[bool]] = {path: set() for path in PATHS}
        try:
            for _ in range(args.repeat):
                sums: set[float] = set()
                for workers in args.workers:
                    for path in PATHS:  # interleaved: the machine's load weighs on all alike
                        results = _run_children(path, uri, probe, workers, env)
                        cold.setdefault((path, workers), []).extend(r["cold"] for r in results)
                        warm[path].extend(r["warm"] for r in results)
                        imported[path].update(bool(r["mlflow_imported"]) for r in results)
                        sums.update(round(r["prediction_sum"], 6) for r in results)
                if len(sums) != 1:
                    sys.exit(f"the paths predict different values (sums {sorted(sums)})")
        finally:
            _cleanup(settings)

    print(f"medians of {args.repeat} runs (seconds per worker; same predictions on {PROBE_ROWS} rows):")
    names = "  ".join(f"{path:>7}" for path in PATHS)
    print(f"  {'':<38} {names}   speed-up vs mlflow ({', '.join(PATHS[1:])})")
    rows = [
        (
            "cold, 1 worker" if n == 1 else f"cold, {n} workers starting together",
            [cold[(p, n)] for p in PATHS],
        )
        for n in args.workers
    ]
    rows.append(("warm (hot reload, same process)", [warm[p] for p in PATHS]))
    for label, samples in rows:
        medians = [statistics.median(values) for values in samples]
        ratios = ", ".join(f"{medians[0] / m:.1f}" for m in medians[1:])
        print(f"  {label:<38} " + "  ".join(f"{m:7.2f}" for m in medians) + f"   x {ratios}")
    flags = ", ".join(f"{path} {'yes' if True in imported[path] else 'no'}" for path in PATHS)
    print(f"  MLflow imported by the load: {flags}")


if __name__ == "__main__":
    main()
