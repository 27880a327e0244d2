"""Prometheus metrics of the sidecar, exposed on ``GET /metrics``.

Families (prefix ``{settings.metrics_prefix}_serving_``, ``velocast_serving_`` by default):

* ``requests_total{route,method,status}``, ``request_duration_seconds{route,method}`` (histogram),
  ``errors_total{route,status}`` (status ≥ 400): ``route`` is the route template (``/predict``),
  ``<unmatched>`` for unknown paths and ``method`` one of the standard methods or ``other``, so
  scanners cannot blow up the label space;
* ``predictions_total{model_type}``: rows predicted;
* ``model_info{model_type,run_id,model_uri,env}``: 1 for the model each worker serves, 0 for one it
  stopped serving;
* ``model_reloads_total{model_type,result}``: champion loads, ``result`` = success | failure;
* ``registry_poll_errors_total``: failed reads of the registry.

Training jobs (``velocast_serving.jobs``; the same value from every worker, read from the jobs'
files at scrape time): ``{prefix}_training_jobs_total{status}`` (finished jobs, ``succeeded`` |
``failed`` | ``cancelled``) and ``{prefix}_training_job_running`` (1 while a job runs).

Several uvicorn workers: start the server with ``PROMETHEUS_MULTIPROC_DIR`` set to an empty,
writable directory (created and emptied *before* the workers start, e.g. by the container's
command). prometheus_client then keeps each worker's values in files there, and any worker's
``/metrics`` answers for all of them (counters summed; ``model_info`` per live worker, with a
``pid`` label). Without the variable, each process has its own plain registry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from velocast.ml.registry_entries import RegistryEntry
from velocast_serving.jobs import JobStore

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE: Final = "<unmatched>"
# HTTP methods as labels: any other token a client sends (servers accept arbitrary ones) is "other".
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD: Final = "other"
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def method_label(method: str) -> str:
    """The ``method`` label: one of ``KNOWN_METHODS``, else ``other`` (a bounded label set)."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


class TrainingJobsCollector(Collector):
    """Training-job metrics read from the job store's files on every scrape."""

    def __init__(self, jobs: JobStore, prefix: str = "velocast") -> None:
        self.jobs = jobs
        self.prefix = prefix

    def collect(self) -> list[Metric]:
        finished = CounterMetricFamily(
            f"{self.prefix}_training_jobs", "Finished training jobs by outcome", labels=["status"]
        )
        for outcome, count in self.jobs.counts().items():
            finished.add_metric([outcome], count)
        running = GaugeMetricFamily(f"{self.prefix}_training_job_running", "1 while a training job runs")
        running.add_metric([], 1.0 if self.jobs.current() is not None else 0.0)
        return [finished, running]


class ServingMetrics:
    """The metric objects of one app (its own registry, so apps in one process do not collide)."""

    content_type: Final = CONTENT_TYPE_LATEST

    def __init__(self, prefix: str = "velocast") -> None:
        self.multiprocess_dir = multiprocess_dir()
        self.registry = CollectorRegistry()
        name = f"{prefix}_serving"
        self.requests = Counter(
            f"{name}_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{name}_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            f"{name}_errors",
            "HTTP responses with a status >= 400, by route template and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.predictions = Counter(
            f"{name}_predictions",
            "Rows predicted",
            ["model_type"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            f"{name}_model_info",
            "1 for the model a worker serves (per model type), 0 for one it stopped serving",
            ["model_type", "run_id", "model_uri", "env"],
            registry=self.registry,
            # One series per live worker (pid label): shows which worker serves what.
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            f"{name}_model_reloads",
            "Champion loads by result (success | failure)",
            ["model_type", "result"],
            registry=self.registry,
        )
        self.registry_errors = Counter(
            f"{name}_registry_poll_errors",
            "Failed reads of the model registry",
            registry=self.registry,
        )
        self._served: dict[str, tuple[str, str, str, str]] = {}
        self._collectors: list[Collector] = []

    def add_collector(self, collector: Collector) -> None:
        """A collector computed at scrape time (the same in every worker: not per process)."""
        self._collectors.append(collector)
        self.registry.register(collector)

    # --- the model store's listener interface -------------------------------------------------
    def model_loaded(self, entry: RegistryEntry) -> None:
        self.reloads.labels(entry.model_type, "success").inc()

    def model_load_failed(self, model_type: str) -> None:
        self.reloads.labels(model_type, "failure").inc()

    def registry_poll_failed(self) -> None:
        self.registry_errors.inc()

    def models_changed(self, env: str, entries: Mapping[str, RegistryEntry]) -> None:
        """``entries``: what is served now, by model type."""
        served = {t: (t, e.run_id, e.model_uri, env) for t, e in entries.items()}
        for labels in set(self._served.values()) - set(served.values()):
            if self.multiprocess_dir is None:
                self.model_info.remove(*labels)
            else:
                # Label removal does not exist in multiprocess mode: mark the series stale.
                self.model_info.labels(*labels).set(0)
        for labels in served.values():
            self.model_info.labels(*labels).set(1)
        self._served = served

    # --- exposition -------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry)

    def worker_exited(self) -> None:
        """Drop this worker's live gauges (``model_info``) from the shared directory."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
