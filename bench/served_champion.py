"""For the serving benchmarks: a fitted model as the dev champion of a fresh registry, served by uvicorn.

``served_champion`` uploads the model to the local stack's GCS emulator, registers and promotes it
in a registry object of its own, starts ``uvicorn velocast_serving.main:create_app`` on a free
port of 127.0.0.1 with fresh keys, waits for ``/ready`` and stops the server afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd

from velocast.gcp.clients import storage_client
from velocast.local.stack import running_stack, venv_executable
from velocast.ml.model_base import VelocastModel
from velocast.ml.registry import Registry
from velocast.ml.registry_entries import DataWindow, EntryMetrics, RegistryEntry, SplitMetrics
from velocast.settings import VelocastSettings, get_settings

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "paris_bike_counts"
REGINE_NJ = DATA / "regine_nj_projetvelo" / "dataset_projet_velo.parquet"


@dataclass(frozen=True)
class ServedChampion:
    url: str
    pid: int  # the server's process (with one worker, the worker itself)
    predict_key: str
    settings: VelocastSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _register(
    model: VelocastModel, train: pd.DataFrame, split: SplitMetrics, settings: VelocastSettings
) -> None:
    with tempfile.TemporaryDirectory(prefix="velocast-bench-") as tmp:
        path = model.save(Path(tmp) / "model.joblib")
        object_name = f"bench/{uuid.uuid4().hex}/model.joblib"
        storage_client(settings).bucket(settings.bucket).blob(object_name).upload_from_filename(str(path))
    registry = Registry(settings)
    registry.add_entry(
        "dev",
        RegistryEntry(
            run_id="bench",
            model_uri=f"gs://{settings.bucket}/{object_name}",
            model_type=model.model_type,
            metrics=EntryMetrics(test_baseline=split, test_current=split),
            data_window=DataWindow(start=train["counted_at"].min(), end=train["counted_at"].max()),
            created_at=datetime.now(UTC),
        ),
    )
    registry.promote("dev", model.model_type, "bench")


@contextmanager
def served_champion(
    model: VelocastModel, train: pd.DataFrame, split: SplitMetrics, *, workers: int
) -> Iterator[ServedChampion]:
    """``model`` (fitted on ``train``, scoring ``split``) served by ``workers`` uvicorn workers."""
    predict_key = secrets.token_urlsafe(24)
    settings = get_settings().model_copy(update={"registry_object": f"bench/{uuid.uuid4().hex}/summary.json"})
    with running_stack(settings):
        _register(model, train, split, settings)
        env = {
            **os.environ,
            "VELOCAST_REGISTRY_OBJECT": settings.registry_object,
            "VELOCAST_SERVING_ADMIN_API_KEY": secrets.token_urlsafe(24),
            "VELOCAST_SERVING_PREDICT_API_KEYS": json.dumps([predict_key]),
            "VELOCAST_SERVING_ENV": "dev",
            "STORAGE_EMULATOR_HOST": str(settings.storage_emulator_host),
            "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="velocast-prom-"),
        }
        port = _free_port()
        command = [venv_executable("uvicorn"), "velocast_serving.main:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        server = subprocess.Popen([*command, "--log-level", "warning"], env=env, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, server)
            yield ServedChampion(url=url, pid=server.pid, predict_key=predict_key, settings=settings)
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit("the sidecar did not become ready")
