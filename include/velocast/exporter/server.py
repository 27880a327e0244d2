"""The MLOps exporter's service: a collector over the sources and the HTTP server (``:9101``).

Prometheus scrapes ``GET /metrics``; every value is computed at scrape time from the sources
(``velocast.exporter.sources``). Each source is read at most once per
``settings.exporter_cache_seconds`` (a scrape inside that time reuses the last result: BigQuery
bills every query). A source that cannot be read — missing table or dataset, emulator down,
malformed registry — never fails the scrape: its series are absent,
``velocast_exporter_source_up{source}`` is 0 and ``velocast_exporter_scrape_errors_total{source,kind}``
counts the failed reads (``kind``: ``not_found`` for a missing table/dataset/bucket, ``error`` for
anything else). An empty registry or an empty table is not an error: the source is up and only the
series that need a row are absent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.api_core.exceptions import NotFound
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import start_wsgi_server

from velocast.exporter.catalog import DECISION_WINDOW_DAYS, ERROR_KINDS, ErrorKind
from velocast.exporter.families import new_family
from velocast.exporter.sources import Reader, WarehouseSources
from velocast.settings import VelocastSettings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


log = logging.getLogger(__name__)


def error_kind(error: BaseException) -> ErrorKind:
    return "not_found" if isinstance(error, NotFound) else "error"


@dataclass
class _Reading:
    families: list[Metric]
    up: bool
    read_at: float  # monotonic
    finished_at: float  # wall clock
    duration: float


class MlopsCollector:
    """A prometheus_client collector: reads each source when its cached reading is too old."""

    def __init__(
        self,
        readers: Mapping[str, Reader],
        *,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.readers = dict(readers)
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self._readings: dict[str, _Reading] = {}
        self._errors: dict[tuple[str, ErrorKind], int] = {}
        # One scrape refreshes at a time (the HTTP server is threaded): no duplicate queries.
        self._lock = threading.Lock()

    def _read(self, source: str, reader: Reader) -> _Reading:
        started = self.monotonic()
        try:
            families, up = reader(), True
        except Exception as error:  # a source must never fail the scrape
            kind = error_kind(error)
            log.warning("exporter: reading %s failed (%s): %s", source, kind, error)
            self._errors[(source, kind)] = self._errors.get((source, kind), 0) + 1
            families, up = [], False
        finished = self.monotonic()
        return _Reading(families, up, started, self.wall_clock(), finished - started)

    def refresh(self) -> dict[str, _Reading]:
        with self._lock:
            now = self.monotonic()
            for source, reader in self.readers.items():
                reading = self._readings.get(source)
                if reading is None or now - reading.read_at >= self.cache_seconds:
                    self._readings[source] = self._read(source, reader)
            return dict(self._readings)

    def collect(self) -> Iterator[Metric]:
        readings = self.refresh()
        for reading in readings.values():
            yield from reading.families
        up = new_family("exporter_source_up")
        duration = new_family("exporter_source_refresh_duration_seconds")
        refreshed = new_family("exporter_source_refresh_timestamp_seconds")
        for source, reading in readings.items():
            up.add_metric([source], 1.0 if reading.up else 0.0)
            duration.add_metric([source], reading.duration)
            refreshed.add_metric([source], reading.finished_at)
        errors = new_family("exporter_scrape_errors_total")
        for source in self.readers:
            for kind in ERROR_KINDS:
                errors.add_metric([source, kind], float(self._errors.get((source, kind), 0)))
        yield from (up, errors, duration, refreshed)


def build_registry(
    settings: VelocastSettings,
    *,
    readers: Mapping[str, Reader] | None = None,
    window_days: int = DECISION_WINDOW_DAYS,
) -> CollectorRegistry:
    """A registry holding the exporter's collector (readers default to the real sources)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = MlopsCollector(
        readers if readers is not None else WarehouseSources(settings, window_days=window_days).readers(),
        cache_seconds=settings.exporter_cache_seconds,
    )
    registry.register(collector)
    return registry


def start_exporter(
    settings: VelocastSettings,
    *,
    host: str = "0.0.0.0",  # scraped from the network in a container
    port: int | None = None,
    readers: Mapping[str, Reader] | None = None,
    window_days: int = DECISION_WINDOW_DAYS,
) -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` (0 picks a free port) in a daemon thread.

    Stop with ``server.shutdown(); server.server_close()``; ``server.server_port`` is the port.
    """
    server, _thread = start_wsgi_server(
        settings.exporter_port if port is None else port,
        addr=host,
        registry=build_registry(settings, readers=readers, window_days=window_days),
    )
    log.info("velocast exporter serving http://%s:%d/metrics", host, server.server_port)
    return server


def serve_forever(
    settings: VelocastSettings, *, host: str, port: int, window_days: int = DECISION_WINDOW_DAYS
) -> None:
    """The ``velocast exporter`` command: serve until interrupted."""
    server = start_exporter(settings, host=host, port=port, window_days=window_days)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
