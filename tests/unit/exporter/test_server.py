"""The exporter's service: the caching collector, failing sources, the registry it is served from."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core.exceptions import NotFound
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.exporter.metric_samples import names, samples, value
from velocast.exporter import server as exporter_server
from velocast.exporter.catalog import DECISION_WINDOW_DAYS
from velocast.exporter.families import registry_families
from velocast.exporter.server import MlopsCollector, build_registry, error_kind
from velocast.settings import VelocastSettings

# --- the collector: caching and failing sources ---------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.error: Exception | None = None

    def __call__(self) -> list[Metric]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        family = GaugeMetricFamily(f"velocast_test_{self.name}", "test", labels=[])
        family.add_metric([], float(self.calls))
        return [family]


def test_collector_caches_reads_and_survives_failing_sources() -> None:
    clock = Clock()
    good, missing, broken = Source("good"), Source("missing"), Source("broken")
    missing.error = NotFound("table model_decisions not found")
    broken.error = RuntimeError("BigQuery is down")
    collector = MlopsCollector(
        {"good": good, "missing": missing, "broken": broken},
        cache_seconds=60,
        monotonic=clock,
        wall_clock=lambda: 1_700_000_000.0,
    )

    first = samples(collector.collect())
    assert value(first, "velocast_test_good") == 1
    assert value(first, "velocast_exporter_source_up", source="good") == 1
    assert value(first, "velocast_exporter_source_up", source="missing") == 0
    assert value(first, "velocast_exporter_source_up", source="broken") == 0
    assert value(first, "velocast_exporter_scrape_errors_total", source="missing", kind="not_found") == 1
    assert value(first, "velocast_exporter_scrape_errors_total", source="missing", kind="error") == 0
    assert value(first, "velocast_exporter_scrape_errors_total", source="broken", kind="error") == 1
    assert (
        value(first, "velocast_exporter_source_refresh_timestamp_seconds", source="good") == 1_700_000_000.0
    )
    assert "velocast_test_missing" not in names(first)

    # Within the cache time: no new reads, same values, errors not counted twice.
    clock.now += 59
    second = samples(collector.collect())
    assert (good.calls, missing.calls, broken.calls) == (1, 1, 1)
    assert second == first

    # After it: every source is read again; a recovered source is up, the counter keeps its count.
    clock.now += 1
    broken.error = None
    third = samples(collector.collect())
    assert (good.calls, missing.calls, broken.calls) == (2, 2, 2)
    assert value(third, "velocast_test_good") == 2
    assert value(third, "velocast_exporter_source_up", source="broken") == 1
    assert value(third, "velocast_exporter_scrape_errors_total", source="broken", kind="error") == 1
    assert value(third, "velocast_exporter_scrape_errors_total", source="missing", kind="not_found") == 2


def test_a_malformed_registry_is_a_source_error(settings: VelocastSettings) -> None:
    def registry() -> list[Metric]:
        return registry_families(
            {"schema_version": 1, "environments": {"dev": {"models": [{"run_id": "x"}]}}}
        )

    text = generate_latest(build_registry(settings, readers={"registry": registry})).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    up = families["velocast_exporter_source_up"].samples
    assert [(s.labels, s.value) for s in up] == [({"source": "registry"}, 0.0)]
    assert "velocast_registry_champions" not in families


def test_a_missing_table_is_not_found_anything_else_an_error() -> None:
    assert error_kind(NotFound("dataset audit not found")) == "not_found"
    assert error_kind(RuntimeError("BigQuery is down")) == "error"
    assert error_kind(PermissionError("denied")) == "error"


# --- the CLI subcommand (kept with the server it starts; tests/unit/cli has the CLI's own tests) ----


def test_cli_exporter_command(monkeypatch: pytest.MonkeyPatch, settings: VelocastSettings) -> None:
    from velocast.cli import main as cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(exporter_server, "serve_forever", lambda s, **kwargs: calls.append(kwargs))
    assert cli.main(["exporter"]) == 0
    assert cli.main(["exporter", "--host", "127.0.0.1", "--port", "19101", "--window-days", "7"]) == 0
    assert calls == [
        {"host": "0.0.0.0", "port": settings.exporter_port, "window_days": DECISION_WINDOW_DAYS},
        {"host": "127.0.0.1", "port": 19101, "window_days": 7},
    ]
    assert settings.exporter_port == 9101
    assert cli.main(["exporter", "--window-days", "0"]) == 2
    assert len(calls) == 2
