"""What the routes share within one app: settings, keys, the model store and the metrics.

The routes get it through ``velocast_serving.api.deps.Context``.
"""

from __future__ import annotations

from dataclasses import dataclass

from velocast.settings import VelocastSettings
from velocast_serving.auth import ApiKeys
from velocast_serving.jobs import JobStore
from velocast_serving.metrics import ServingMetrics
from velocast_serving.model_store import ModelStore
from velocast_serving.workers import WorkerBoard


@dataclass(frozen=True)
class ServingContext:
    settings: VelocastSettings
    api_keys: ApiKeys
    store: ModelStore
    metrics: ServingMetrics
    jobs: JobStore
    workers: WorkerBoard
