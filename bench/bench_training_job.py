"""Training-job benchmark: ``POST /train`` through the sidecar next to the same training in process.

Real data: the regine_nj export. Baseline = 2023 (its last 20 % by time is test_baseline), current
window = the first 4 weeks of 2024, loaded into a raw-contract BigQuery table and referenced by
window (what DAG 3 sends). Both runs train the default model (``hgb``) on the same sliding window
and log to the local MLflow server:

1. through the sidecar: ``POST /train`` → poll ``GET /train/{id}`` until done (the job is a child
   process of the app's worker);
2. in process: ``run_training(request)``.

The sidecar runs first, so that the worker's RSS is measured before any training ran in this process.

Prints wall time of each, the ratio (the job's overhead: process start, imports, status files),
the peak RSS of the job's process, and the worker's RSS before and after (the training's memory
stays out of the serving worker):

    .venv/bin/python bench/bench_training_job.py
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from fastapi.testclient import TestClient
from pydantic import SecretStr
from velocast_serving.main import create_app

from velocast.contract import RAW_COUNTS, load_contract
from velocast.data.normalize import normalize
from velocast.data.readers import read_source
from velocast.gcp.storage import Storage
from velocast.gcp.warehouse import Warehouse, contract_frame
from velocast.local.airflow_env import airflow_environment
from velocast.local.mlflow_server import MlflowServer
from velocast.local.stack import running, running_stack
from velocast.ml.reference_data import BaselineLocation, create_baseline
from velocast.ml.training import run_training
from velocast.ml.training_request import TrainingRequest
from velocast.settings import get_settings

SHARED = Path(__file__).resolve().parents[1] / "tests" / "data" / "paris_bike_counts"
ADMIN_KEY = "bench-admin-key-" + uuid.uuid4().hex


def _rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=SHARED / "regine_nj_projetvelo" / "dataset_projet_velo.parquet"
    )
    parser.add_argument("--current-weeks", type=int, default=4)
    args = parser.parse_args()

    unique = uuid.uuid4().hex[:8]
    base = get_settings()
    settings = base.model_copy(
        update={
            "registry_object": f"bench/{unique}/summary.json",
            "registered_model_name": f"velocast-bench-{unique}",
            "raw_table": f"hourly_counts_bench_{unique}",
            "serving_admin_api_key": SecretStr(ADMIN_KEY),
            "serving_jobs_dir": Path(tempfile.mkdtemp(prefix="velocast-bench-jobs-")),
        }
    )
    for noisy in ("httpx", "httpx2"):  # one line per status poll otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The BigQuery table is loaded through the Airflow hook (as DAG 1 does): its connection.
    os.environ.update(airflow_environment(settings))
    raw = read_source(args.data)
    frame = normalize(raw).frame
    start = pd.Timestamp("2024-01-01", tz="UTC")
    end = start + pd.Timedelta(weeks=args.current_weeks)
    history = raw[raw["annee_comptage"] == 2023]
    current = frame[(frame["counted_at"] >= start) & (frame["counted_at"] < end)]

    with running_stack(settings), running(MlflowServer(settings)), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        history_path = folder / "history.parquet"
        history.to_parquet(history_path)
        location = BaselineLocation(bucket=settings.bucket, prefix=f"bench/{unique}/data")
        manifest = create_baseline(history_path, settings, location=location)
        contract = load_contract(RAW_COUNTS)
        warehouse = Warehouse(settings)
        warehouse.ensure_table(contract)
        now = pd.Timestamp.now(tz="UTC")
        rows = contract_frame(current, contract, ingestion_run_id="bench", ingested_at=now)
        warehouse.load_frame(
            rows,
            contract,
            settings.raw_table_id,
            storage=Storage(settings),
            object_name=f"bench/{unique}/current.parquet",
        )
        body: dict[str, Any] = {
            "model_type": "hgb",
            "env": "dev",
            "data_source": location.uri(),
            "current_window": {"start": start.isoformat(), "end": end.isoformat()},
        }
        print(
            f"baseline: {manifest['train']['n_rows']:,} train + {manifest['test']['n_rows']:,} test rows; "
            f"current window {start.date()} → {end.date()}: {len(current):,} rows in BigQuery"
        )

        with TestClient(create_app(settings)) as client:
            worker = psutil.Process(os.getpid())
            worker_before = _rss_mb(worker)
            headers = {"X-API-Key": ADMIN_KEY}
            started = time.perf_counter()
            accepted = client.post("/train", headers=headers, json=body)
            answered = time.perf_counter() - started
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            peak_child = 0.0
            while True:
                status = client.get(f"/train/{job_id}", headers=headers).json()
                for child in worker.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        peak_child = max(peak_child, _rss_mb(child))
                if status["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.2)
            via_job = time.perf_counter() - started
            worker_after = _rss_mb(worker)
        assert status["status"] == "succeeded", status["error"]
        started = time.perf_counter()
        # A registry of its own: neither run sees the other's model as a champion to score.
        own_registry = settings.model_copy(update={"registry_object": f"bench/{unique}/in-process.json"})
        result = run_training(TrainingRequest.model_validate(body), own_registry)
        in_process = time.perf_counter() - started
        print(f"in process: {in_process:.1f} s ({result.decision['decision']}, timings {result.timings})")

        print(f"POST /train answered in {answered * 1000:.0f} ms (202, job {job_id[:8]})")
        job_total = float(status["timings"]["total"])
        print(
            f"through the sidecar: {via_job:.1f} s ({status['deployment_decision']['decision']}, "
            f"timings {status['timings']}; outside the training steps: {via_job - job_total:.1f} s)"
        )
        overhead = via_job - in_process
        print(f"ratio sidecar job / in process: {via_job / in_process:.2f} (overhead {overhead:+.1f} s)")
        print(f"job process peak RSS (sampled every 0.2 s): {peak_child:.0f} MB")
        print(
            f"serving process RSS during the job: {worker_after - worker_before:+.0f} MB "
            f"({worker_after:.0f} MB: this process also holds the source data)"
        )
        Warehouse(settings).drop_table(settings.raw_table_id)


if __name__ == "__main__":
    main()
