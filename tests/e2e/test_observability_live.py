"""The observability stack live: a real Prometheus scrapes the real sidecar and MLOps exporter after
DAG runs on the local stack, every Grafana panel and alert rule is evaluated against it, and an
alert reaches the Discord stand-in through the real Alertmanager.

The runs: DAG 1 ingests a day from the replay, DAG 2 forecasts two days (so that one is scored),
DAG 3 monitors a quiet week (WAIT), and clients call the sidecar (predictions and a bad request).
Prometheus (Debian package, the shipped config with local targets and 1 s intervals) scrapes the
sidecar and an exporter reading the real tables and registry.

Left out, and why:

- series fed by Airflow's statsd client through statsd-exporter (``airflow_*``, ``velocast_ingest_*``):
  statsd-exporter is neither a Debian, PyPI nor npm package, so it cannot run here; its mapping is
  checked against the names Airflow and DAG 1 emit in ``tests/infra/test_observability_config.py``;
- series that a quiet week does not have (``AFTER_EVENTS``): a failure's (checked after a failed DAG 3
  run, which also fires ``MonitorRunFailed`` through Alertmanager to the Discord stand-in), and a
  promotion's or a training job's (their values are checked against the audit table and the
  registry in ``tests/dags/test_monitor_and_train.py``, not through Prometheus).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.infra.test_observability_config import (
    PROMETHEUS_CONFIG,
    RULES_DIR,
    as_promql,
    dashboard_queries,
    free_port,
    load_yaml,
    local_alertmanager_config,
    metric_names_in,
    rules,
    tool,
    wait_for,
)
from velocast.contract import PARIS
from velocast.local.airflow_env import local_sidecar_admin_key
from velocast.local.discord import LOCAL_WEBHOOK_ENDPOINT
from velocast.settings import VelocastSettings, get_settings

pytestmark = [pytest.mark.airflow]

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO_ROOT / "observability" / "grafana" / "dashboards"
STATSD_FED = ("airflow_", "velocast_ingest_")
# Series that exist only once something happened that a quiet week does not have.
AFTER_EVENTS = (
    "ALERTS",
    "velocast_exporter_scrape_errors_total",
    "velocast_model_last_promotion_timestamp_seconds",
    "velocast_training_jobs_total",
    "velocast_model_challenger_r2",
)
# Selectors that match only after a failure (a 5xx from the sidecar).
AFTER_FAILURE_SELECTORS = ('status=~"5.."',)
QUIET_REAL_DAY = datetime(2024, 2, 19).date()  # see tests/dags/test_monitor_and_train.py


def _dags(settings: VelocastSettings) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.airflow_dags_folder))
    assert bag.import_errors == {}
    return bag


def _paris(day: Any, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=PARIS).astimezone(UTC)


@pytest.fixture(scope="module")
def runs(
    local_stack: Any, serving_sidecar: Any, settings: VelocastSettings, airflow_db: None
) -> dict[str, Any]:
    """The DAG runs and the sidecar traffic the metrics describe."""
    from velocast.gcp.warehouse import Warehouse
    from velocast.local.champion import served_shift_weeks
    from velocast.local.seed import seed_raw_counts
    from velocast.predict.steps import ensure_tables

    seeded = seed_raw_counts(settings, 8, run_id="test_observability_seed")
    ensure_tables(Warehouse(settings))
    bag = _dags(settings)
    yesterday = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0) - timedelta(days=1)
    ingest = bag.get_dag("ingest_bike_counts").test(logical_date=yesterday)
    last = seeded.complete_days[1]
    predict = bag.get_dag("predict_bike_counts")
    forecasts = [predict.test(logical_date=_paris(day, 4)) for day in (last - timedelta(days=1), last)]
    quiet = QUIET_REAL_DAY + timedelta(weeks=served_shift_weeks(settings, datetime.now(UTC)))
    conf = {"force_retrain": False, "test_mode": False, "model_type": "hgb"}
    monitor = bag.get_dag("monitor_and_train").test(logical_date=_paris(quiet, 6), run_conf=conf)
    states = [str(run.state) for run in (ingest, *forecasts, monitor)]
    assert states == ["success"] * 4, states

    key = local_sidecar_admin_key(settings)
    url = f"http://{settings.local_host}:{settings.serving_port}"
    record = {"counter_id": "100003096-353242251", "counted_at": "2024-02-26T08:00:00Z"}
    for _ in range(5):
        answer = httpx.post(
            f"{url}/predict", json={"records": [record] * 10}, headers={"X-API-Key": key}, timeout=30
        )
        assert answer.status_code == 200, answer.text
    bad = httpx.post(
        f"{url}/predict", json={"records": [{"counter_id": 1}]}, headers={"X-API-Key": key}, timeout=30
    )
    assert bad.status_code == 422
    return {"bag": bag, "quiet": quiet}


class Observed:
    """Prometheus (and its Alertmanager) over the real sidecar and a real exporter."""

    def __init__(self, api: str) -> None:
        self.api = api

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.api}/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"{self.api}/alerts", timeout=10).json()["data"]["alerts"]
        return found


@pytest.fixture(scope="module")
def observed(
    runs: dict[str, Any], settings: VelocastSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    from velocast.exporter.server import start_exporter

    folder = tmp_path_factory.mktemp("observability")
    exporter = start_exporter(
        settings.model_copy(update={"exporter_cache_seconds": 0.0}), host="127.0.0.1", port=0
    )
    discord_url = f"http://{settings.local_host}:{settings.discord_port}/api/{LOCAL_WEBHOOK_ENDPOINT}"
    am_port, prom_port = free_port(), free_port()
    am_config = folder / "alertmanager.yml"
    alerting = local_alertmanager_config(discord_url, fast=True)
    # An alert joining a group that has notified already waits group_interval (5 min shipped).
    for route in [alerting["route"], *alerting["route"].get("routes", [])]:
        route["group_interval"] = "1s"
    am_config.write_text(yaml.safe_dump(alerting))
    config = load_yaml(PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    targets = {
        "serving": f"{settings.local_host}:{settings.serving_port}",
        "mlops-exporter": f"127.0.0.1:{exporter.server_port}",
        "prometheus": f"127.0.0.1:{prom_port}",
        "alertmanager": f"127.0.0.1:{am_port}",
    }
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job["scrape_timeout"] = "1s"
        job["static_configs"][0]["targets"] = [targets.get(job["job_name"], f"127.0.0.1:{free_port()}")]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    processes = [
        subprocess.Popen(
            [
                tool("prometheus-alertmanager"),
                f"--config.file={am_config}",
                f"--storage.path={folder / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "alertmanager.log").open("w"),
        ),
        subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "prometheus.log").open("w"),
        ),
    ]
    try:
        view = Observed(f"http://127.0.0.1:{prom_port}/api/v1")
        for port, name in ((am_port, "alertmanager"), (prom_port, "prometheus")):
            wait_for(lambda port=port: _ready(port), 60, f"{name} to start", log=folder / f"{name}.log")
        wait_for(
            lambda: bool(view.query("velocast_model_last_run_timestamp_seconds")), 60, "the first scrapes"
        )
        # Rates need two scrapes of the serving counters within their window.
        wait_for(
            lambda: bool(view.query("rate(velocast_serving_requests_total[1m]) > 0")), 60, "a serving rate"
        )
        yield view
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        exporter.shutdown()
        exporter.server_close()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _excluded(names: set[str]) -> bool:
    return any(name.startswith(STATSD_FED) or name in AFTER_EVENTS for name in names)


def panel_queries() -> list[tuple[str, str]]:
    return [
        (where, expr)
        for path in sorted(DASHBOARDS.glob("*.json"))
        for where, expr in dashboard_queries(json.loads(path.read_text(encoding="utf-8")))
    ]


def test_every_dashboard_panel_has_data(observed: Observed) -> None:
    checked, empty = 0, []
    for where, expr in panel_queries():
        if _excluded(metric_names_in(expr)) or any(selector in expr for selector in AFTER_FAILURE_SELECTORS):
            continue
        checked += 1
        if not observed.query(as_promql(expr)):
            empty.append(f"{where}: {expr}")
    assert empty == [], "\n".join(empty)
    assert checked >= 25  # most panels are checked, not excluded


def test_every_alert_rule_reads_series_that_exist(observed: Observed) -> None:
    checked, missing = 0, []
    for rule in rules():
        for name in sorted(metric_names_in(rule["expr"])):
            if _excluded({name}):
                continue
            checked += 1
            if not observed.query(name):
                missing.append(f"{rule['alert']}: {name}")
    assert missing == []
    assert checked >= 12


def test_a_failed_run_shows_in_the_failure_series_and_reaches_discord(
    observed: Observed, runs: dict[str, Any], settings: VelocastSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    discord = httpx.Client(base_url=f"http://{settings.local_host}:{settings.discord_port}", timeout=10)
    discord.delete("/__admin/messages")
    closed = free_port()
    connection = {"conn_type": "http", "host": "127.0.0.1", "schema": "http", "port": closed}
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.sidecar_conn_id.upper()}", json.dumps(connection))
    monkeypatch.setenv("VELOCAST_SIDECAR_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    conf = {"force_retrain": False, "test_mode": False, "model_type": "hgb"}
    try:
        failed = (
            runs["bag"]
            .get_dag("monitor_and_train")
            .test(logical_date=_paris(runs["quiet"], 7), run_conf=conf)
        )
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert str(failed.state) == "failed"
    wait_for(
        lambda: bool(observed.query('velocast_model_last_run_failed{env="dev", model_type="hgb"} == 1')),
        60,
        "the failed run in the exporter",
    )
    wait_for(
        lambda: any(a["labels"]["alertname"] == "MonitorRunFailed" for a in observed.alerts()),
        60,
        "MonitorRunFailed to fire",
    )
    assert observed.query('ALERTS{alertname="MonitorRunFailed", alertstate="firing"}')

    def delivered() -> bool:
        sent = json.dumps(discord.get("/__admin/messages").json()["messages"])
        return "MonitorRunFailed" in sent

    wait_for(delivered, 60, "the alert in the Discord stand-in")
    messages = json.dumps(discord.get("/__admin/messages").json()["messages"])
    assert "monitorrunfailed" in messages.lower() and "check_champion" in messages
