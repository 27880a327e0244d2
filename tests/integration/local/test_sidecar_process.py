"""The serving sidecar as a process of the local stack, with a champion trained on the shipped data.

The session's ``serving_sidecar`` is the real ``uvicorn velocast_serving.main:create_app`` process
(``velocast.local.serving``); its champion comes from ``velocast.local.champion`` (the default
model type fitted on the packaged Paris counts, in the GCS emulator and the registry). The DAGs'
``SidecarHook`` reaches it through the ``velocast_sidecar`` connection that ``tests/conftest.py``
exports from the local Airflow environment, as a task would.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from datetime import timedelta

import pandas as pd
import pytest

from velocast.errors import UnavailableError
from velocast.gcp.clients import storage_client
from velocast.local.airflow_env import sidecar_connection_json
from velocast.local.champion import BootstrappedChampion, bootstrap_champion, shipped_counts
from velocast.local.serving import ServingSidecar
from velocast.local.stack import LocalStack
from velocast.ml.models import DEFAULT_MODEL_TYPE
from velocast.ml.registry import Registry
from velocast.orchestration.sidecar import SidecarHook
from velocast.orchestration.sidecar_errors import SidecarUnavailableError
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]


def active_counter_ids(settings: VelocastSettings) -> list[str]:
    """The counters the replay published in the last 2 weeks (DAG 2's active counters)."""
    return sorted(str(c) for c in shipped_counts(settings, weeks=2)["counter_id"].unique())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tomorrow_hours(counters: list[str]) -> list[dict[str, str]]:
    """One record per counter and hour of tomorrow (UTC), the grid DAG 2 asks for."""
    start = pd.Timestamp.now(tz="UTC").normalize() + timedelta(days=1)
    hours = pd.date_range(start, periods=24, freq="h")
    return [{"counter_id": c, "counted_at": hour.isoformat()} for c in counters for hour in hours]


def test_bootstrap_trains_registers_and_promotes_a_real_champion_once(
    local_stack: LocalStack, settings: VelocastSettings
) -> None:
    own = settings.model_copy(update={"registry_object": f"tests/{uuid.uuid4().hex}/summary.json"})
    champion = bootstrap_champion(own)
    entry = champion.entry
    assert champion.created
    assert entry.is_champion and entry.model_type == DEFAULT_MODEL_TYPE and not entry.test_mode
    assert Registry(own).champion(own.serving_env) == entry
    bucket, _, name = entry.model_uri.removeprefix("gs://").partition("/")
    assert bucket == own.bucket and name.startswith("models/bootstrap/")
    assert storage_client(own).bucket(bucket).get_blob(name) is not None
    assert entry.extra["bootstrap"] is True and entry.extra["train_rows"] > 10_000
    # Scored on a held-out week of real counts: a real model, not a constant.
    r2 = entry.metrics.test_current.r2
    assert r2 is not None and r2 > 0.5
    # Dated as the replay serves the counts (up to about now), not as in the file (2023-2024).
    now = pd.Timestamp.now(tz="UTC")
    held_out_end = pd.Timestamp(entry.extra["held_out_window"]["end"])
    assert now - timedelta(days=8) < held_out_end < now
    assert entry.data_window.end < pd.Timestamp(entry.extra["held_out_window"]["start"])

    started = time.perf_counter()
    again = bootstrap_champion(own)
    assert not again.created and again.entry == entry
    assert time.perf_counter() - started < 5  # nothing trained


def test_the_hook_sees_the_champion_as_ready(
    serving_sidecar: ServingSidecar, sidecar_champion: BootstrappedChampion, settings: VelocastSettings
) -> None:
    readiness = SidecarHook().ready()
    assert readiness.ready
    assert readiness.env == settings.serving_env
    assert readiness.champions == {DEFAULT_MODEL_TYPE: sidecar_champion.entry.run_id}


def test_the_hook_reads_the_model_summary(
    serving_sidecar: ServingSidecar, sidecar_champion: BootstrappedChampion, settings: VelocastSettings
) -> None:
    summary = SidecarHook().model_summary()
    assert summary.registry == f"gs://{settings.bucket}/{settings.registry_object}"
    champion = summary.champion
    assert champion is not None
    assert champion.run_id == sidecar_champion.entry.run_id
    assert champion.model_uri == sidecar_champion.entry.model_uri
    assert any(entry["run_id"] == champion.run_id for entry in summary.entries)
    assert summary.errors == {}


def test_the_hook_predicts_one_count_per_record_for_real_counters(
    serving_sidecar: ServingSidecar, sidecar_champion: BootstrappedChampion, settings: VelocastSettings
) -> None:
    counters = active_counter_ids(settings)
    assert len(counters) > 90
    records = tomorrow_hours(counters)
    predictions = SidecarHook().predict(records)
    assert len(predictions.predictions) == len(records) == len(counters) * 24
    assert [(p.counter_id, p.counted_at) for p in predictions.predictions] == [
        (r["counter_id"], pd.Timestamp(r["counted_at"]).to_pydatetime()) for r in records
    ]
    values = [p.predicted_count for p in predictions.predictions]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert max(values) > 50  # busy Paris counters at rush hour, not a flat zero
    assert predictions.champion.run_id == sidecar_champion.entry.run_id
    assert predictions.unseen_counters == [] and predictions.unseen_counter_rows == 0


def test_the_hook_batches_and_flags_unknown_counters_on_the_real_sidecar(
    serving_sidecar: ServingSidecar, settings: VelocastSettings
) -> None:
    counters = active_counter_ids(settings)[:3]
    records = [
        *tomorrow_hours(counters),
        {"counter_id": "no-such-counter", "counted_at": "2026-01-05T08:00Z"},
    ]
    whole = SidecarHook().predict(records)
    batched = SidecarHook(max_records=20).predict(records)
    assert batched.batches == 4 and whole.batches == 1
    assert [p.predicted_count for p in batched.predictions] == [p.predicted_count for p in whole.predictions]
    assert batched.unseen_counters == ["no-such-counter"] and batched.unseen_counter_rows == 1


def test_a_stopped_sidecar_process_is_unavailable_to_the_hook_after_its_retries(
    serving_sidecar: ServingSidecar, settings: VelocastSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = settings.model_copy(update={"serving_port": free_port()})
    sidecar = ServingSidecar(other, name="serving-stopped")
    assert sidecar.up() == ["serving-stopped"]
    pid = int((sidecar.run_dir / "serving-stopped.pid").read_text())
    monkeypatch.setenv("AIRFLOW_CONN_VELOCAST_SIDECAR_STOPPED", sidecar_connection_json(other))
    hook = SidecarHook(
        "velocast_sidecar_stopped", max_attempts=3, backoff_seconds=0.05, max_backoff_seconds=0.1
    )
    assert hook.ready().env == other.serving_env  # up: it answers (the champion is the same registry's)

    assert sidecar.down() == ["serving-stopped"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    started = time.perf_counter()
    with pytest.raises(SidecarUnavailableError) as raised:
        hook.ready()
    assert isinstance(raised.value, UnavailableError)  # the family Airflow retries
    assert "cannot reach the serving sidecar" in str(raised.value)
    assert "the hook gave up after 3 attempts" in getattr(raised.value, "__notes__", [])
    assert time.perf_counter() - started < 10
    assert sidecar.status() == {"serving-stopped": False}
