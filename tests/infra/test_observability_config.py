"""Observability as code: Prometheus, Alertmanager, Grafana provisioning and the statsd mapping.

Prometheus and Alertmanager run here (Debian packages `prometheus`, `prometheus-alertmanager`,
installed by `make tools`): their configuration is checked by `promtool` / `amtool`, the alert
rules by `promtool test rules`, and both binaries are started for real on 127.0.0.1 (Prometheus
scraping the real exporter; Alertmanager delivering to a local stand-in for Discord's webhook).
Grafana does not install here: its provisioning and dashboards are validated statically, their
PromQL through `promtool check rules`. Every metric name used by a rule or a panel must exist: in
the sidecar's metrics, the exporter's `METRICS`, the statsd mapping, or Prometheus' own (`up`,
`ALERTS`).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.core import GaugeMetricFamily, Metric

from velocast.exporter import server as exporter
from velocast.exporter.catalog import metric_names as exporter_metric_names
from velocast.settings import VelocastSettings

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "observability"
PROMETHEUS_CONFIG = OBS / "prometheus" / "prometheus.yml"
RULES_DIR = OBS / "prometheus" / "rules"
RULE_TESTS_DIR = OBS / "prometheus" / "tests"
ALERTMANAGER_CONFIG = OBS / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_TEMPLATES = OBS / "alertmanager" / "templates"
STATSD_MAPPING = OBS / "statsd" / "mapping.yml"
GRAFANA = OBS / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DATASOURCE_UID = "velocast-prometheus"
# The two training-job metrics of the sidecar (serving/velocast_serving/jobs.py, counts.json).
TRAINING_METRICS = {"velocast_training_jobs_total", "velocast_training_job_running"}
PROMETHEUS_BUILTINS = {"up", "ALERTS"}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, (
        f"{name} is missing: `make tools` installs it (Debian packages prometheus, prometheus-alertmanager)"
    )
    return path


def run(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, check=False)
    if ok:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- known metric names and the names PromQL uses ---------------------------------------------------


def serving_metric_names() -> set[str]:
    """The sample names the sidecar's registry can expose (the families' names with their suffixes)."""
    from velocast_serving.metrics import ServingMetrics

    names: set[str] = set()
    for family in ServingMetrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def statsd_name_patterns() -> list[re.Pattern[str]]:
    """The statsd mapping's output names as patterns (``${1}`` matches any name part)."""
    patterns = []
    for mapping in load_yaml(STATSD_MAPPING)["mappings"]:
        name = re.escape(mapping["name"])
        name = re.sub(r"\\\$\\\{\d+\\\}|\\\$\d+", "[a-zA-Z0-9_]+", name)
        suffix = "(_bucket|_sum|_count)?" if mapping.get("observer_type") == "histogram" else ""
        patterns.append(re.compile(f"{name}{suffix}"))
    return patterns


def is_known(name: str) -> bool:
    return (
        name in KNOWN_NAMES
        or name in TRAINING_METRICS
        or any(pattern.fullmatch(name) for pattern in STATSD_PATTERNS)
    )


KNOWN_NAMES = serving_metric_names() | set(exporter_metric_names()) | PROMETHEUS_BUILTINS
STATSD_PATTERNS = statsd_name_patterns()

_NOT_METRICS = {
    *("sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group"),
    *("count_values", "by", "without", "on", "ignoring", "group_left", "group_right"),
    *("and", "or", "unless", "bool", "offset", "inf", "nan"),
}


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, matchers, ranges, clauses removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name not in _NOT_METRICS:
            found.add(name)
    return found


def test_the_metric_name_extraction() -> None:
    assert metric_names_in(
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route="/x", le!~"1e3"}[$__rate_interval])'
        '))  / on() group_left b_total > 2e3 and up{job="x"} == 1 or vector(0)'
    ) == {"a_bucket", "b_total", "up"}
    assert metric_names_in("time() - c_seconds > 36 * 3600") == {"c_seconds"}
    assert is_known("velocast_serving_request_duration_seconds_bucket")
    assert is_known("velocast_ingest_rows_loaded_total")  # velocast_ingest_${1}_total
    assert is_known("airflow_dagrun_duration_seconds_count")  # a histogram observer
    assert not is_known("velocast_serving_requests")
    assert not is_known("airflow_ti_finish_seconds")


# --- Prometheus ----------------------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES_DIR.glob("*.yml"))
        for g in load_yaml(path)["groups"]
        for rule in g["rules"]
    ]


def test_promtool_checks_the_config_and_the_rules(tmp_path: Path) -> None:
    promtool = tool("promtool")
    # As shipped (the rules' path is the container's, /etc/prometheus/rules/).
    run(promtool, "check", "config", PROMETHEUS_CONFIG)
    # With the rules where this repository has them: the config loads all of them.
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    checked = run(promtool, "check", "config", local)
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    run(promtool, "check", "rules", *sorted(RULES_DIR.glob("*.yml")))


def test_the_scrape_and_alerting_targets() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "serving": ["serving:8000"],
        "mlops-exporter": ["mlops-exporter:9101"],
        "statsd-exporter": ["statsd-exporter:9102"],
        "prometheus": ["prometheus:9090"],
        "alertmanager": ["alertmanager:9093"],
    }
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]


def test_promtool_rule_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", *sorted(RULE_TESTS_DIR.glob("*.yml")))
    assert "FAILED" not in result.stdout + result.stderr


def test_the_rule_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The rule tests are sensitive: an alert made laxer (48 h instead of 36 h) fails them."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = (RULES_DIR / "velocast.yml").read_text()
    assert text.count("> 36 * 3600") == 1
    (tmp_path / "rules" / "velocast.yml").write_text(text.replace("> 36 * 3600", "> 48 * 3600"))
    shutil.copy(RULE_TESTS_DIR / "velocast_test.yml", tmp_path / "tests")
    result = run(tool("promtool"), "test", "rules", tmp_path / "tests" / "velocast_test.yml", ok=False)
    assert result.returncode != 0
    assert "IngestionStale" in result.stdout + result.stderr


def test_every_alert_is_documented_and_tested() -> None:
    expectations: dict[str, list[int]] = {}
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                expectations.setdefault(check["alertname"], []).append(len(check.get("exp_alerts") or []))
    readme = (OBS / "README.md").read_text().lower()
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["component"] in {"ingestion", "serving", "model", "platform"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook"].startswith(f"observability/README.md#{name.lower()}:"), name
        assert f'<a id="{name.lower()}"></a>' in readme, (
            f"{name}: no runbook section in observability/README.md"
        )
        # Tested both ways: an expectation with alerts and one without.
        counts = expectations.get(name, [])
        assert 0 in counts, f"{name}: no not-firing case"
        assert any(counts), f"{name}: no firing case"
    assert set(expectations) == {rule["alert"] for rule in rules()}


def test_rules_use_only_existing_metric_names() -> None:
    unknown = {
        rule["alert"]: sorted(n for n in metric_names_in(rule["expr"]) if not is_known(n)) for rule in rules()
    }
    assert {alert: names for alert, names in unknown.items() if names} == {}
    assert all(metric_names_in(rule["expr"]) for rule in rules())


# --- Alertmanager --------------------------------------------------------------------------------------


def local_alertmanager_config(webhook_url: str, *, fast: bool) -> dict[str, Any]:
    """The shipped config made loadable by the local (Debian, 0.25) alertmanager.

    ``webhook_url_file`` exists from Alertmanager 0.27/0.28 (docker-compose runs v0.28): locally
    the URL is inlined. ``fast`` shortens the group waits for the delivery test.
    """
    config: dict[str, Any] = load_yaml(ALERTMANAGER_CONFIG)
    config["templates"] = [str(ALERTMANAGER_TEMPLATES / "*.tmpl")]
    for receiver in config["receivers"]:
        for discord in receiver.get("discord_configs", []):
            assert discord.pop("webhook_url_file") == "/etc/alertmanager/secrets/discord_webhook_url"
            discord["webhook_url"] = webhook_url
    if fast:
        routes = [config["route"], *config["route"].get("routes", [])]
        for route in routes:
            route["group_wait"] = "1s"
    return config


def test_alertmanager_config_routes_to_discord_with_the_url_from_a_file(tmp_path: Path) -> None:
    amtool = tool("amtool")
    text = ALERTMANAGER_CONFIG.read_text()
    assert "webhook_url_file:" in text
    assert not re.search(r"webhook_url:|discord(app)?\.com/api/webhooks", text), (
        "no webhook URL in the repository"
    )
    local = tmp_path / "alertmanager.yml"
    local.write_text(
        yaml.safe_dump(
            local_alertmanager_config("https://discord.com/api/webhooks/0/placeholder", fast=False)
        )
    )
    checked = run(amtool, "check-config", local)
    assert "1 templates" in checked.stdout
    for labels, receiver in (
        ({"alertname": "ServingDown", "severity": "critical"}, "discord"),
        ({"alertname": "DriftShareHigh", "severity": "warning"}, "discord"),
    ):
        routed = run(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={local}",
            *(f"{k}={v}" for k, v in labels.items()),
        )
        assert routed.stdout.strip() == receiver


class _Capture(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def discord_stand_in() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server taking Discord webhook posts."""
    server = HTTPServer(("127.0.0.1", 0), _Capture)
    received: list[dict[str, Any]] = []
    server.received = received  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/webhooks/1/token", received
    server.shutdown()
    server.server_close()


def wait_for(predicate: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def test_alertmanager_delivers_the_discord_message_and_inhibits_symptoms(
    tmp_path: Path, discord_stand_in: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = discord_stand_in
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(local_alertmanager_config(url, fast=True)))
    port = free_port()
    process = subprocess.Popen(
        [
            tool("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("w"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: _ok(f"{base}/-/ready"), 30, "alertmanager to start", log=tmp_path / "alertmanager.log"
        )
        common = {"project": "velocast", "job": "serving", "instance": "serving:8000", "component": "serving"}
        alerts = [
            {
                "labels": {**common, "alertname": "ServingDown", "severity": "critical"},
                "annotations": {
                    "summary": "The serving sidecar (serving:8000) is down",
                    "description": "Prometheus cannot scrape serving:8000/metrics.",
                    "runbook": "observability/README.md#servingdown: check the container's logs",
                },
            },
            # A symptom of the same outage: inhibited by ServingDown.
            {
                "labels": {**common, "alertname": "ServingNoChampionLoaded", "severity": "critical"},
                "annotations": {"summary": "no model", "description": "-", "runbook": "-"},
            },
        ]
        httpx.post(f"{base}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()
        wait_for(lambda: bool(received), 30, "the Discord message")
        time.sleep(3)  # the inhibited group would have been flushed by now
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert len(received) == 1, received
    embed = received[0]["embeds"][0]
    assert embed["title"] == "[FIRING x1] ServingDown (critical) - serving"
    description = embed["description"]
    assert description.startswith("**FIRING: The serving sidecar (serving:8000) is down**\n")
    assert "Runbook: observability/README.md#servingdown: check the container's logs" in description
    assert "Labels: instance=serving:8000 job=serving" in description
    assert "Since " in description
    assert "no model" not in json.dumps(received)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- a real Prometheus scraping the real exporter -----------------------------------------------------


def test_prometheus_scrapes_the_exporter_with_the_shipped_config(
    tmp_path: Path, settings: VelocastSettings
) -> None:
    def decisions() -> list[Metric]:
        family = GaugeMetricFamily("velocast_model_drift_share", "test", labels=["env", "model_type"])
        family.add_metric(["prod", "hgb"], 0.75)
        return [family]

    def broken() -> list[Metric]:
        raise RuntimeError("BigQuery unreachable")

    server = exporter.start_exporter(
        settings, host="127.0.0.1", port=0, readers={"model_decisions": decisions, "ingestion_log": broken}
    )
    exporter_target = f"127.0.0.1:{server.server_port}"
    prom_port = free_port()
    config = load_yaml(PROMETHEUS_CONFIG)
    # The shipped config with local addresses, 1 s intervals and the repository's rules.
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{free_port()}"]
    local_targets = {"mlops-exporter": exporter_target, "prometheus": f"127.0.0.1:{prom_port}"}
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job["scrape_timeout"] = "1s"
        job["static_configs"][0]["targets"] = [local_targets.get(job["job_name"], f"127.0.0.1:{free_port()}")]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{api}/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    try:
        wait_for(
            lambda: _ok(f"http://127.0.0.1:{prom_port}/-/ready"),
            30,
            "prometheus to start",
            log=tmp_path / "prometheus.log",
        )
        wait_for(lambda: bool(query("velocast_exporter_source_up")), 30, "the first scrape of the exporter")
        up = {r["metric"]["source"]: r["value"][1] for r in query("velocast_exporter_source_up")}
        assert up == {"model_decisions": "1", "ingestion_log": "0"}
        drift = query("velocast_model_drift_share")
        assert [(r["metric"]["job"], r["metric"]["component"], r["value"][1]) for r in drift] == [
            ("mlops-exporter", "mlops-exporter", "0.75")
        ]
        # The metric relabelling drops prometheus_client's *_created series.
        assert query('{__name__=~"velocast_.+_created"}') == []
        assert query('velocast_exporter_scrape_errors_total{source="ingestion_log", kind="error"} >= 1')
        # Every rule group of the repository is loaded and evaluated.
        loaded = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
        assert sorted(rule["name"] for group in loaded for rule in group["rules"]) == sorted(
            r["alert"] for r in rules()
        )
        wait_for(
            lambda: any(
                a["labels"]["alertname"] == "DriftShareHigh"
                for a in httpx.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"]
            ),
            30,
            "DriftShareHigh to fire on the exporter's 0.75",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        server.shutdown()
        server.server_close()


# --- Grafana (static) -----------------------------------------------------------------------------------


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, expr)`` of every panel target."""
    return [
        (f"{board['uid']}/{panel['id']}/{target['refId']}", target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def as_promql(expr: str) -> str:
    """Grafana's variables replaced by what they stand for at query time."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1d")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def test_dashboards_are_valid_and_their_ids_unique() -> None:
    assert [path.name for path in DASHBOARDS] == [
        "airflow.json",
        "ingestion.json",
        "model_quality.json",
        "serving.json",
    ]
    boards = [json.loads(path.read_text()) for path in DASHBOARDS]
    uids = [board["uid"] for board in boards]
    assert len(set(uids)) == len(uids) == 4
    assert {board["title"] for board in boards} == {
        "velocast · Ingestion (DAG 1)",
        "velocast · Serving",
        "velocast · Model quality & MLOps",
        "velocast · Airflow platform",
    }
    for board in boards:
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), board["uid"]
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, (
                board["uid"],
                panel["id"],
            )
            assert panel["targets"], (board["uid"], panel["id"])
            refs = [target["refId"] for target in panel["targets"]]
            assert len(set(refs)) == len(refs)
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == DATASOURCE_UID


def test_dashboard_promql_parses_and_uses_existing_metrics(tmp_path: Path) -> None:
    boards = [json.loads(path.read_text()) for path in DASHBOARDS]
    queries = [query for board in boards for query in dashboard_queries(board)]
    assert len(queries) > 40
    records = [
        {"record": "velocast_dashboard_check:" + re.sub(r"\W", "_", where), "expr": as_promql(expr)}
        for where, expr in queries
    ]
    rule_file = tmp_path / "dashboards.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}))
    checked = run(tool("promtool"), "check", "rules", rule_file)
    assert f"SUCCESS: {len(records)} rules found" in checked.stdout
    unknown = {where: sorted(n for n in metric_names_in(expr) if not is_known(n)) for where, expr in queries}
    assert {where: names for where, names in unknown.items() if names} == {}
    # The variables' label_values() queries too.
    for board in boards:
        for variable in board["templating"]["list"]:
            metric = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
            assert metric and is_known(metric.group(1)), variable["definition"]


def test_a_misspelt_metric_in_a_dashboard_is_caught() -> None:
    assert not all(
        is_known(n)
        for n in metric_names_in(as_promql("rate(velocast_serving_request_total[$__rate_interval])"))
    )


def test_grafana_provisioning() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert datasources["apiVersion"] == 1
    [prometheus] = datasources["datasources"]
    assert (prometheus["uid"], prometheus["type"], prometheus["url"]) == (
        DATASOURCE_UID,
        "prometheus",
        "http://prometheus:9090",
    )
    [provider] = load_yaml(GRAFANA / "provisioning" / "dashboards" / "velocast.yml")["providers"]
    assert provider["type"] == "file"
    alerting = load_yaml(GRAFANA / "provisioning" / "alerting" / "discord.yml")
    [contact_point] = alerting["contactPoints"]
    [receiver] = contact_point["receivers"]
    assert receiver["type"] == "discord"
    assert receiver["settings"]["url"] == "$DISCORD_WEBHOOK_URL"
    [policy] = alerting["policies"]
    assert policy["receiver"] == contact_point["name"]
    # Every other "$" of the file would be expanded by Grafana as an environment variable.
    text = (GRAFANA / "provisioning" / "alerting" / "discord.yml").read_text()
    assert re.findall(r"\$(?!\$)\{?\w+", text) == ["$DISCORD_WEBHOOK_URL"]


def test_paths_match_the_compose_mounts() -> None:
    """The container paths the configs reference are the ones docker-compose.yaml mounts."""
    services = load_yaml(COMPOSE_FILE)["services"]

    def mounts(service: str) -> dict[str, str]:
        volumes = [
            v for v in services[service].get("volumes", []) if isinstance(v, str) and v.startswith("./")
        ]
        return {v.split(":")[1]: v.split(":")[0] for v in volumes}

    prometheus = mounts("prometheus")
    assert prometheus["/etc/prometheus/prometheus.yml"] == "./observability/prometheus/prometheus.yml"
    assert prometheus["/etc/prometheus/rules"] == "./observability/prometheus/rules"
    alertmanager = mounts("alertmanager")
    assert alertmanager["/etc/alertmanager/templates"] == "./observability/alertmanager/templates"
    secrets = [s["target"] for s in services["alertmanager"]["secrets"] if isinstance(s, dict)]
    assert "/etc/alertmanager/secrets/discord_webhook_url" in secrets
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == "./observability/grafana/provisioning"
    [provider] = load_yaml(GRAFANA / "provisioning" / "dashboards" / "velocast.yml")["providers"]
    assert grafana[provider["options"]["path"]] == "./observability/grafana/dashboards"
    assert "DISCORD_WEBHOOK_URL" in services["grafana"]["environment"]
    assert {"serving", "mlops-exporter", "statsd-exporter", "prometheus", "alertmanager"} <= set(services)


# --- statsd mapping ---------------------------------------------------------------------------------------


def statsd_map(name: str) -> tuple[str, dict[str, str]] | None:
    """statsd-exporter's glob mapping (first match wins; ``*`` is one dot-free part)."""
    for mapping in load_yaml(STATSD_MAPPING)["mappings"]:
        pattern = "^" + re.escape(mapping["match"]).replace(r"\*", "([^.]+)") + "$"
        match = re.match(pattern, name)
        if match is None:
            continue

        def expand(template: str, match: re.Match[str] = match) -> str:
            return re.sub(r"\$\{?(\d+)\}?", lambda m: match.group(int(m.group(1))), template)

        return expand(mapping["name"]), {k: expand(v) for k, v in mapping.get("labels", {}).items()}
    return None


@pytest.mark.parametrize(
    ("statsd", "expected"),
    [
        ("airflow.scheduler_heartbeat", ("airflow_scheduler_heartbeat_total", {})),
        (
            "airflow.dagrun.duration.success.ingest_bike_counts",
            ("airflow_dagrun_duration_seconds", {"state": "success", "dag_id": "ingest_bike_counts"}),
        ),
        (
            "airflow.ti.finish.ingest_bike_counts.load.failed",
            (
                "airflow_ti_finish_total",
                {"dag_id": "ingest_bike_counts", "task_id": "load", "state": "failed"},
            ),
        ),
        (
            "airflow.dagrun.schedule_delay.monitor_and_train",
            ("airflow_dagrun_schedule_delay_seconds", {"dag_id": "monitor_and_train"}),
        ),
        ("airflow.velocast.ingest.runs.rejected", ("velocast_ingest_runs_total", {"status": "rejected"})),
        ("airflow.velocast.ingest.rows_loaded", ("velocast_ingest_rows_loaded_total", {})),
        ("airflow.velocast.ingest.last_rows_loaded", ("velocast_ingest_last_rows_loaded", {})),
        ("airflow.velocast.ingest.rejected_share", ("velocast_ingest_rejected_share", {})),
        ("airflow.velocast.ingest.duration", ("velocast_ingest_duration_seconds", {})),
    ],
)
def test_statsd_mapping_of_the_metrics_airflow_and_dag_1_emit(
    statsd: str, expected: tuple[str, dict[str, str]]
) -> None:
    assert statsd_map(statsd) == expected
