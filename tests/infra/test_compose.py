"""Static checks of docker-compose.yaml, .env.example and the Dockerfiles.

No Docker engine or `docker compose` runs here, so the compose file is checked statically: against
the Compose Specification JSON schema (vendored, see compose-spec.schema.NOTICE.md) and against the
platform's own rules. Each rule is a function returning the problems it finds; the positive tests
assert the repository has none, and the negative tests prove each rule reports a deliberately
broken copy (modified in memory, never on disk).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
import yaml

from velocast.settings import VelocastSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.schema.json")
AIRFLOW_DOCKERFILE = ROOT / "airflow" / "Dockerfile"
SERVING_DOCKERFILE = ROOT / "serving" / "Dockerfile"
ALERTMANAGER_CONFIG = ROOT / "observability" / "alertmanager" / "alertmanager.yml"
README_SECTION = "Running the platform with docker compose"

Compose = dict[str, Any]
Service = dict[str, Any]

# Names of variables and environment keys that hold secrets.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY|KEYS$|TOKEN|WEBHOOK|CREDENTIAL|_AUTH$")
# Published port of each service = the settings field the code reads.
PORT_SETTINGS = {
    "airflow-apiserver": "airflow_api_port",
    "mlflow": "mlflow_port",
    "serving": "serving_port",
    "mlops-exporter": "exporter_port",
}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Variables docker compose itself reads (not interpolated in the file).
COMPOSE_CLI_VARIABLES = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE"}


# --- loading ------------------------------------------------------------------------------------
def load_compose(text: str | None = None) -> Compose:
    """The compose file as Compose reads it before interpolation (anchors and merge keys resolved)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text() if text is None else text)
    assert isinstance(document, dict)
    return document


def services(doc: Compose) -> dict[str, Service]:
    result = doc.get("services") or {}
    assert isinstance(result, dict)
    return result


def environment(service: Service) -> dict[str, str | None]:
    """A service's environment as a mapping (list syntax converted); None = passed through."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {key: value for key, value in pairs}
    return {str(key): None if value is None else str(value) for key, value in env.items()}


def profiles(service: Service) -> set[str]:
    return set(service.get("profiles") or [])


# --- interpolation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariableUse:
    name: str
    operator: str  # "" (plain), ":-", "-", ":?", "?", ":+", "+"
    argument: str
    where: str

    @property
    def required(self) -> bool:
        return self.operator == ":?"


_INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
# user:password@ in a URL, where either part may be a ${…} interpolation (messages hold spaces and colons).
_URL_PASSWORD = re.compile(r"://(?:\$\{[^}]*\}|[^/\s:@$])*:((?:\$\{[^}]*\}|[^@\s$/])*)@")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>.*))?", re.S)


def interpolations(value: str, where: str) -> Iterator[VariableUse]:
    for match in _INTERPOLATION.finditer(value):
        if match.group("escaped"):
            continue
        if match.group("named"):
            yield VariableUse(match.group("named"), "", "", where)
            continue
        braced = _BRACED.fullmatch(match.group("braced"))
        assert braced, f"{where}: invalid interpolation {match.group(0)!r}"
        yield VariableUse(braced["name"], braced["operator"] or "", braced["argument"] or "", where)


def walk_strings(node: object, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string value of the document with its path (keys are not interpolated by Compose)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_strings(value, f"{where}[{index}]")
    elif isinstance(node, str):
        yield where, node


def variable_uses(doc: Compose) -> list[VariableUse]:
    uses = [use for where, text in walk_strings(doc) for use in interpolations(text, where)]
    return uses


def variables_read(doc: Compose) -> set[str]:
    """Interpolated variables, passed-through environment keys and secrets sourced from variables."""
    names = {use.name for use in variable_uses(doc)}
    for service in services(doc).values():
        names |= {key for key, value in environment(service).items() if value is None}
    for secret in (doc.get("secrets") or {}).values():
        if isinstance(secret, dict) and "environment" in secret:
            names.add(str(secret["environment"]))
    return names


def env_example_entries(text: str) -> dict[str, str]:
    """NAME=value lines of .env.example; commented-out assignments (`# NAME=…`) count as listed."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^#?\s*([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if match:
            entries[match.group(1)] = match.group(2).strip()
    return entries


# --- the rules ----------------------------------------------------------------------------------
def check_schema(doc: Compose) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(doc)
    ]


def depends_on(service: Service) -> dict[str, Any]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: no condition
        return {name: None for name in deps}
    assert isinstance(deps, dict)
    return deps


def check_depends_on(doc: Compose) -> list[str]:
    problems = []
    all_services = services(doc)
    for name, service in all_services.items():
        for target, spec in depends_on(service).items():
            if target not in all_services:
                problems.append(f"{name} depends on undefined service {target}")
                continue
            if not isinstance(spec, dict) or spec.get("condition") not in DEPENDS_CONDITIONS:
                problems.append(f"{name} depends on {target} without a condition")
                continue
            if spec["condition"] == "service_healthy" and "healthcheck" not in all_services[target]:
                problems.append(f"{name} waits for {target} to be healthy but {target} has no healthcheck")
            # A dependency that a profile can disable while the dependent runs must be optional.
            mine, theirs = profiles(service), profiles(all_services[target])
            may_be_disabled = bool(theirs) and not (mine and mine <= theirs)
            if may_be_disabled and spec.get("required", True) is not False:
                problems.append(f"{name} requires {target}, which its profiles {sorted(theirs)} may disable")
    return problems


@dataclass(frozen=True)
class Mount:
    service: str
    kind: str  # "volume" | "bind"
    source: str
    target: str


def mounts(doc: Compose) -> Iterator[Mount]:
    for name, service in services(doc).items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                source, target = str(volume.get("source", "")), str(volume["target"])
                kind = str(volume.get("type", "volume"))
            else:
                parts = str(volume).split(":")
                if len(parts) == 1:  # anonymous volume
                    continue
                source, target = parts[0], parts[1]
                kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
            yield Mount(name, kind, source, target)


def check_named_volumes(doc: Compose) -> list[str]:
    declared = set(doc.get("volumes") or {})
    return [
        f"{mount.service} mounts undeclared volume {mount.source}"
        for mount in mounts(doc)
        if mount.kind == "volume" and mount.source not in declared
    ]


def check_bind_mounts(doc: Compose, root: Path = ROOT) -> list[str]:
    problems = []
    for mount in mounts(doc):
        if mount.kind != "bind":
            continue
        if not mount.source.startswith("./"):
            problems.append(f"{mount.service} bind-mounts {mount.source}, outside the repository")
            continue
        path = root / mount.source
        if not path.exists():
            problems.append(f"{mount.service} bind-mounts {mount.source}, which does not exist")
        elif Path(mount.target).suffix in {".yml", ".yaml", ".json"} and not path.is_file():
            problems.append(f"{mount.service} bind-mounts {mount.source} as a file, but it is not one")
    return problems


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (the colon belonged to a registry port)
        return False
    return tag != "latest" and "$" not in image and bool(re.search(r"\d", tag))


def check_images(doc: Compose, root: Path = ROOT) -> list[str]:
    problems = []
    builds: dict[str, str] = {}
    for name, service in services(doc).items():
        image = service.get("image")
        if not isinstance(image, str) or not image_is_pinned(image):
            problems.append(f"{name}: image {image!r} is not pinned to an explicit version")
            continue
        build = service.get("build")
        if build is None:
            continue
        build = {"context": build} if isinstance(build, str) else build
        dockerfile = root / str(build.get("context", ".")) / str(build.get("dockerfile", "Dockerfile"))
        if not dockerfile.is_file():
            problems.append(f"{name}: Dockerfile {dockerfile.relative_to(root)} does not exist")
        elif build.get("target") and not re.search(
            rf"^FROM\s+\S+\s+AS\s+{re.escape(str(build['target']))}\s*$", dockerfile.read_text(), re.M | re.I
        ):
            problems.append(f"{name}: build target {build['target']} is not a stage of {dockerfile.name}")
        signature = json.dumps(build, sort_keys=True)
        if builds.setdefault(image, signature) != signature:
            problems.append(f"{name}: image {image} is built from two different build configurations")
    return problems


def is_one_shot(name: str, doc: Compose) -> bool:
    """Run to completion: restart "no" and awaited with service_completed_successfully."""
    awaited = any(
        isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"
        for service in services(doc).values()
        for target, spec in depends_on(service).items()
        if target == name
    )
    return awaited and str(services(doc)[name].get("restart", "no")) == "no"


def check_healthchecks(doc: Compose) -> list[str]:
    problems = []
    for name, service in services(doc).items():
        if is_one_shot(name, doc):
            continue
        check = service.get("healthcheck")
        if not isinstance(check, dict) or check.get("disable") or not check.get("test"):
            problems.append(f"{name}: long-running service without a healthcheck")
        elif check["test"] in (["NONE"], "NONE"):
            problems.append(f"{name}: healthcheck disabled with NONE")
    return problems


def readme_section(text: str) -> str:
    match = re.search(rf"^## {re.escape(README_SECTION)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no section '## {README_SECTION}'"
    return match.group(1)


def readme_services(text: str) -> set[str]:
    """Services the README's compose section names: the first cell of each row of its tables."""
    names = set()
    for line in readme_section(text).splitlines():
        cell = re.match(r"^\|\s*([^|]*)\|", line)
        if cell:
            names |= set(re.findall(r"`([a-z0-9][a-z0-9_.-]*)`", cell.group(1)))
    return names


def check_readme_services(doc: Compose, text: str) -> list[str]:
    declared, mentioned = set(services(doc)), readme_services(text)
    problems = [
        f"README mentions service {name}, which the compose file lacks" for name in mentioned - declared
    ]
    problems += [f"README does not describe service {name}" for name in declared - mentioned]
    return problems


@dataclass(frozen=True)
class Published:
    host_ip: str
    host: int
    container: int
    protocol: str


def published_ports(service: Service) -> list[Published]:
    result = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is None:
                continue
            host_ip, host, container = (
                str(port.get("host_ip", "")),
                int(port["published"]),
                int(port["target"]),
            )
            protocol = str(port.get("protocol", "tcp"))
        else:
            spec, _, protocol = str(port).partition("/")
            parts = spec.rsplit(":", 2)
            if len(parts) == 1:  # container port only: an ephemeral host port
                continue
            host_ip = parts[0] if len(parts) == 3 else ""
            host, container = int(parts[-2]), int(parts[-1])
        result.append(Published(host_ip, host, container, protocol or "tcp"))
    return result


def container_settings(service: Service) -> VelocastSettings:
    """The settings velocast's code reads inside the container: defaults + the service's literal
    VELOCAST_* variables (interpolated ones come from .env and never touch a port)."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VELOCAST_") and key not in {"STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"}
    }
    literal = {
        key: value
        for key, value in environment(service).items()
        if key.startswith("VELOCAST_") and value is not None and "$" not in value
    }
    with mock.patch.dict(os.environ, {**base, **literal}, clear=True):
        return VelocastSettings()


def check_ports(doc: Compose) -> list[str]:
    problems = []
    all_services = services(doc)
    for name, field in PORT_SETTINGS.items():
        if name not in all_services:
            problems.append(f"{name}: missing")
            continue
        expected = int(getattr(container_settings(all_services[name]), field))
        ports = published_ports(all_services[name])
        if [(port.host, port.container) for port in ports] != [(expected, expected)]:
            problems.append(f"{name}: publishes {ports}, settings.{field} is {expected}")
    seen: dict[tuple[int, str], str] = {}
    for name, service in all_services.items():
        for port in published_ports(service):
            if port.host_ip not in {"127.0.0.1", "::1"}:
                problems.append(f"{name}: port {port.host} is published on all interfaces")
            other = seen.setdefault((port.host, port.protocol), name)
            if other != name:
                problems.append(f"{name}: host port {port.host} is also published by {other}")
    # The processes listen where the ports lead.
    api_env = environment(all_services.get("airflow-apiserver", {}))
    settings = container_settings(all_services.get("airflow-apiserver", {}))
    if api_env.get("AIRFLOW__API__PORT") != str(settings.airflow_api_port):
        problems.append("airflow-apiserver: AIRFLOW__API__PORT differs from settings.airflow_api_port")
    execution_url = f"http://airflow-apiserver:{settings.airflow_api_port}/execution/"
    if api_env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") != execution_url:
        problems.append(f"AIRFLOW__CORE__EXECUTION_API_SERVER_URL is not {execution_url}")
    mlflow = all_services.get("mlflow", {})
    command = [str(part) for part in mlflow.get("command") or []]
    mlflow_port = container_settings(mlflow).mlflow_port
    if "--port" not in command or command[command.index("--port") + 1] != str(mlflow_port):
        problems.append(f"mlflow: the server does not listen on settings.mlflow_port {mlflow_port}")
    for name, service in all_services.items():
        uri = environment(service).get("VELOCAST_MLFLOW_TRACKING_URI")
        if uri is not None and uri != f"http://mlflow:{mlflow_port}":
            problems.append(f"{name}: VELOCAST_MLFLOW_TRACKING_URI {uri} is not the mlflow service")
    return problems


def check_redis(doc: Compose) -> list[str]:
    problems = []
    redis = services(doc).get("redis")
    if redis is None:
        return ["redis: missing"]
    if redis.get("ports"):
        problems.append("redis: published on the host")
    command = redis.get("command")
    command_text = " ".join(command) if isinstance(command, list) else str(command or "")
    if "--requirepass" not in command_text:
        problems.append("redis: started without --requirepass")
    password = environment(redis).get("REDIS_PASSWORD") or ""
    if not any(use.required for use in interpolations(password, "redis.environment.REDIS_PASSWORD")):
        problems.append("redis: REDIS_PASSWORD does not come from a required variable")
    for name, service in services(doc).items():
        broker = environment(service).get("AIRFLOW__CELERY__BROKER_URL")
        if broker is not None and not re.fullmatch(
            r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/\d+", broker
        ):
            problems.append(f"{name}: the Celery broker URL does not authenticate with REDIS_PASSWORD")
    return problems


def check_no_secret_defaults(doc: Compose) -> list[str]:
    problems = []
    for use in variable_uses(doc):
        if SECRET_NAME.search(use.name) and not use.required:
            problems.append(
                f"{use.where}: secret {use.name} is not required (${{{use.name}{use.operator}…}})"
            )
    for where, text in walk_strings(doc):
        # Credentials inside URLs (user:password@host) must be a required variable, nothing else.
        for password in _URL_PASSWORD.findall(text):
            uses = list(interpolations(password, where))
            if len(uses) != 1 or not uses[0].required or _INTERPOLATION.sub("", password):
                problems.append(f"{where}: the password in {text!r} is not one required variable")
    for name, service in services(doc).items():
        for key, value in environment(service).items():
            if not SECRET_NAME.search(key) or key.endswith("_FILE") or value is None:
                continue
            if not any(use.required for use in interpolations(value, f"{name}.{key}")):
                problems.append(f"{name}: {key} is set without a required variable")
    return problems


def check_env_example(doc: Compose, text: str) -> list[str]:
    listed = env_example_entries(text)
    read = variables_read(doc)
    problems = [f".env.example does not list {name}" for name in sorted(read - set(listed))]
    problems += [
        f".env.example lists {name}, which the compose file does not read"
        for name in sorted(set(listed) - read - COMPOSE_CLI_VARIABLES)
    ]
    problems += [
        f".env.example gives secret {name} a value: leave it empty"
        for name, value in listed.items()
        if SECRET_NAME.search(name) and value
    ]
    return problems


def secret_targets(service: Service) -> dict[str, str]:
    """Secret name → path of the file in the container (short syntax: /run/secrets/<name>)."""
    targets = {}
    for secret in service.get("secrets") or []:
        if isinstance(secret, str):
            targets[secret] = f"/run/secrets/{secret}"
        else:
            target = str(secret.get("target", secret["source"]))
            targets[str(secret["source"])] = target if target.startswith("/") else f"/run/secrets/{target}"
    return targets


def airflow_services(doc: Compose) -> dict[str, Service]:
    return {name: s for name, s in services(doc).items() if "AIRFLOW__CORE__EXECUTOR" in environment(s)}


def check_platform(doc: Compose) -> list[str]:
    """The topology the issue asks for (Airflow 3 + CeleryExecutor, MLflow, serving, monitoring)."""
    problems = []
    all_services = services(doc)
    expected_profiles = {
        "flower": {"flower"},
        "cloud-sql-proxy": {"gcp"},
        **{name: {"local"} for name in ("mlflow-postgres", "gcs-emulator", "bigquery-emulator", "replay")},
        **{
            name: {"monitoring"}
            for name in ("prometheus", "alertmanager", "grafana", "statsd-exporter", "mlops-exporter")
        },
        **{
            name: set()
            for name in (
                "postgres",
                "redis",
                "airflow-init",
                "airflow-apiserver",
                "airflow-scheduler",
                "airflow-dag-processor",
                "airflow-triggerer",
                "airflow-worker",
                "mlflow",
                "serving",
            )
        },
    }
    for name, wanted in expected_profiles.items():
        if name not in all_services:
            problems.append(f"{name}: missing")
        elif profiles(all_services[name]) != wanted:
            problems.append(
                f"{name}: profiles {sorted(profiles(all_services[name]))}, expected {sorted(wanted)}"
            )
    airflow = airflow_services(doc)
    shared = (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
    )
    for key in shared:
        values = {environment(s).get(key) for s in airflow.values()}
        if len(values) != 1 or None in values:
            problems.append(f"{key} is not one value shared by every Airflow service")
    expected_env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__METRICS__STATSD_ON": "true",
        "AIRFLOW__METRICS__STATSD_HOST": "statsd-exporter",
        "AIRFLOW__METRICS__STATSD_PORT": "9125",
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    for name, service in airflow.items():
        env = environment(service)
        problems += [
            f"{name}: {key} is not {value}" for key, value in expected_env.items() if env.get(key) != value
        ]
        if not str(env.get("AIRFLOW__CELERY__RESULT_BACKEND", "")).startswith("db+postgresql"):
            problems.append(f"{name}: the Celery result backend is not db+postgresql")
        if (
            name != "airflow-init"
            and (depends_on(service).get("airflow-init", {}) or {}).get("condition")
            != "service_completed_successfully"
        ):
            problems.append(f"{name}: does not wait for airflow-init to complete")
    for name, command in {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
        "flower": "celery flower",
    }.items():
        if all_services.get(name, {}).get("command") != command:
            problems.append(f"{name}: command is not `{command}`")
    init = " ".join(map(str, all_services.get("airflow-init", {}).get("command") or []))
    if "airflow db migrate" not in init or "airflow connections add" not in init:
        problems.append("airflow-init: does not migrate the DB and create the connections")
    proxy = all_services.get("cloud-sql-proxy", {})
    proxy_command = [str(part) for part in proxy.get("command") or []]
    if not str(proxy.get("image", "")).startswith("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2."):
        problems.append("cloud-sql-proxy: not the v2 image gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.x")
    if "--private-ip" not in proxy_command:
        problems.append("cloud-sql-proxy: no --private-ip")
    if not any(
        use.name == "CLOUD_SQL_INSTANCE_CONNECTION_NAME" and use.required
        for part in proxy_command
        for use in interpolations(part, "cloud-sql-proxy.command")
    ):
        problems.append("cloud-sql-proxy: the instance connection name is not a required variable")
    mlflow = all_services.get("mlflow", {})
    mlflow_env = environment(mlflow)
    if "--allowed-hosts" not in [str(part) for part in mlflow.get("command") or []]:
        problems.append("mlflow: no --allowed-hosts")
    if not re.fullmatch(
        r"gs://\$\{VELOCAST_BUCKET:\?[^}]*\}/mlflow", mlflow_env.get("MLFLOW_ARTIFACTS_DESTINATION") or ""
    ):
        problems.append("mlflow: artifacts are not in gs://<bucket>/mlflow")
    if "@mlflow-db:5432/" not in (mlflow_env.get("MLFLOW_BACKEND_STORE_URI") or ""):
        problems.append("mlflow: the backend store is not mlflow-db")
    for name in ("cloud-sql-proxy", "mlflow-postgres"):
        aliases = ((all_services.get(name, {}).get("networks") or {}).get("default") or {}).get(
            "aliases"
        ) or []
        if "mlflow-db" not in aliases:
            problems.append(f"{name}: not reachable as mlflow-db")
    serving = all_services.get("serving", {})
    serving_env = environment(serving)
    if not (serving.get("mem_limit") or ((serving.get("deploy") or {}).get("resources") or {}).get("limits")):
        problems.append("serving: no memory limit")
    if serving_env.get("OMP_WAIT_POLICY") != "PASSIVE":
        problems.append("serving: OMP_WAIT_POLICY is not PASSIVE")
    admin = serving_env.get("VELOCAST_SERVING_ADMIN_API_KEY") or ""
    if not any(use.required for use in interpolations(admin, "serving.environment")):
        problems.append("serving: the admin key is not required")
    if "serving/Dockerfile" not in json.dumps(serving.get("build")):
        problems.append("serving: not built from serving/Dockerfile")
    statsd = " ".join(map(str, all_services.get("statsd-exporter", {}).get("command") or []))
    if "--statsd.mapping-config=" not in statsd or ":9125" not in statsd or ":9102" not in statsd:
        problems.append(
            "statsd-exporter: not mapping observability/statsd/mapping.yml, ingest :9125, metrics :9102"
        )
    exporter = [str(part) for part in all_services.get("mlops-exporter", {}).get("command") or []]
    if exporter[:2] != ["velocast", "exporter"]:
        problems.append("mlops-exporter: command is not `velocast exporter`")
    webhook_targets = {
        name: secret_targets(service).get("discord_webhook_url") for name, service in all_services.items()
    }
    webhook_targets = {name: target for name, target in webhook_targets.items() if target}
    if sorted(webhook_targets) != ["alertmanager", "grafana"]:
        problems.append(
            f"the Discord webhook secret reaches {sorted(webhook_targets)}, not alertmanager and grafana"
        )
    if (doc.get("secrets") or {}).get("discord_webhook_url") != {"environment": "DISCORD_WEBHOOK_URL"}:
        problems.append("the discord_webhook_url secret does not come from DISCORD_WEBHOOK_URL")
    alertmanager_file = re.search(r"webhook_url_file:\s*(\S+)", ALERTMANAGER_CONFIG.read_text())
    if alertmanager_file and webhook_targets.get("alertmanager") != alertmanager_file.group(1):
        problems.append(
            f"alertmanager reads the webhook from {alertmanager_file.group(1)}, not the secret's target"
        )
    return problems


# --- Dockerfiles --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    result = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return result


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def check_dockerfile_bases(text: str) -> list[str]:
    problems = []
    names = set()
    for stage in stages(dockerfile_instructions(text)):
        words = stage[0].arguments.split()
        words = [word for word in words if not word.startswith("--platform")]
        image = words[0]
        if len(words) >= 3 and words[1].upper() == "AS":
            names.add(words[2])
        if image not in names and not image_is_pinned(image):
            problems.append(f"FROM {image} is not pinned to an explicit version")
    return problems


def final_user(text: str) -> str | None:
    final = stages(dockerfile_instructions(text))[-1]
    users = [instruction.arguments for instruction in final if instruction.keyword == "USER"]
    return users[-1] if users else None


def check_non_root(text: str) -> list[str]:
    user = final_user(text)
    if user is None:
        return ["the final stage never switches to a non-root USER"]
    if user.split(":")[0] in {"root", "0"}:
        return [f"the final stage runs as {user}"]
    return []


def lock_pin(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, f"requirements.txt does not pin {package}"
    return match.group(1)


def check_airflow_dockerfile(text: str) -> list[str]:
    problems = check_dockerfile_bases(text)
    final = stages(dockerfile_instructions(text))[-1]
    airflow_version = lock_pin("apache-airflow")
    base = f"apache/airflow:{airflow_version}-python3.11"
    if final[0].arguments.split()[0] != base:
        problems.append(f"the final stage is not FROM {base} (the lock's Airflow)")
    runs = [instruction.arguments for instruction in final if instruction.keyword == "RUN"]
    lock_installs = [
        run
        for run in runs
        if re.search(r"pip install --no-cache-dir\b.*-r \S*requirements\.txt", run)
        and re.search(r"apache-airflow==(\$\{AIRFLOW_VERSION\}|" + re.escape(airflow_version) + ")", run)
    ]
    if not lock_installs:
        problems.append(
            "the lock is not installed: pip install --no-cache-dir apache-airflow==… -r requirements.txt"
        )
    if not any(re.search(r"pip install --no-cache-dir --no-deps \S+", run) for run in runs):
        problems.append("the project is not installed with `pip install --no-deps`")
    copies = " ".join(i.arguments for i in final if i.keyword in {"COPY", "ADD"})
    for path in ("requirements.txt", "include", "airflow/dags", "plugins"):
        if not re.search(rf"(^|\s){re.escape(path)}(\s|$)", copies):
            problems.append(f"{path} is not copied into the image")
    env = " ".join(i.arguments for i in final if i.keyword == "ENV")
    if "OMP_WAIT_POLICY=PASSIVE" not in env:
        problems.append("OMP_WAIT_POLICY=PASSIVE is not set")
    return problems


# --- positive tests -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc() -> Compose:
    return load_compose()


def test_compose_file_validates_against_the_compose_spec_schema(doc: Compose) -> None:
    assert check_schema(doc) == []


def test_depends_on_targets_exist_and_use_conditions(doc: Compose) -> None:
    assert check_depends_on(doc) == []


def test_named_volumes_are_declared(doc: Compose) -> None:
    assert check_named_volumes(doc) == []


def test_bind_mounted_repository_paths_exist(doc: Compose) -> None:
    assert check_bind_mounts(doc) == []


def test_images_are_pinned_and_builds_exist(doc: Compose) -> None:
    assert check_images(doc) == []


def test_long_running_services_have_healthchecks(doc: Compose) -> None:
    assert check_healthchecks(doc) == []


def test_readme_describes_exactly_the_compose_services(doc: Compose) -> None:
    assert check_readme_services(doc, README.read_text()) == []


def test_published_ports_match_the_settings(doc: Compose) -> None:
    assert check_ports(doc) == []
    # The numbers the issue names, so that a changed default is a deliberate change here too.
    published = {name: published_ports(services(doc)[name])[0].host for name in PORT_SETTINGS}
    assert published == {"airflow-apiserver": 8081, "mlflow": 5000, "serving": 8000, "mlops-exporter": 9101}


def test_redis_is_private_and_password_protected(doc: Compose) -> None:
    assert check_redis(doc) == []


def test_no_secret_has_a_default(doc: Compose) -> None:
    assert check_no_secret_defaults(doc) == []


def test_env_example_lists_every_variable(doc: Compose) -> None:
    assert check_env_example(doc, ENV_EXAMPLE.read_text()) == []


def test_platform_topology(doc: Compose) -> None:
    assert check_platform(doc) == []


def test_airflow_image_is_pinned_and_installs_the_lock() -> None:
    assert check_airflow_dockerfile(AIRFLOW_DOCKERFILE.read_text()) == []


def test_serving_image_runs_as_non_root_from_a_pinned_base() -> None:
    text = SERVING_DOCKERFILE.read_text()
    assert check_dockerfile_bases(text) == []
    assert check_non_root(text) == []


def test_dockerignore_keeps_environments_state_and_secrets_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip()[:1] not in {"", "#"}
    }
    assert {".venv", ".venv*", ".velocast", ".env", ".git", "tests", "**/__pycache__"} <= patterns


# --- negative tests: every rule reports a broken copy -------------------------------------------
Mutation = Callable[[Compose], None]


def _set(path: str, value: object) -> Mutation:
    def mutate(doc: Compose) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: Compose) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _add_env(service: str, key: str, value: str | None) -> Mutation:
    def mutate(doc: Compose) -> None:
        services(doc)[service]["environment"] = {**environment(services(doc)[service]), key: value}

    return mutate


NEGATIVE_CASES: list[tuple[str, Callable[[Compose], list[str]], Mutation, str]] = [
    (
        "schema: unknown key",
        check_schema,
        _set("services.serving.restart_policy", "always"),
        "restart_policy",
    ),
    ("schema: wrong type", check_schema, _set("services.serving.ports", 8000), "ports"),
    (
        "depends_on: undefined",
        check_depends_on,
        _set("services.serving.depends_on.ghost", {"condition": "service_started"}),
        "undefined service ghost",
    ),
    (
        "depends_on: short syntax",
        check_depends_on,
        _set("services.serving.depends_on", ["mlflow"]),
        "without a condition",
    ),
    (
        "depends_on: no condition",
        check_depends_on,
        _set("services.serving.depends_on.mlflow", {"restart": True}),
        "without a condition",
    ),
    (
        "depends_on: profiled, required",
        check_depends_on,
        _delete("services.mlflow.depends_on.cloud-sql-proxy.required"),
        "may disable",
    ),
    (
        "depends_on: healthy without check",
        check_depends_on,
        _delete("services.mlflow.healthcheck"),
        "has no healthcheck",
    ),
    (
        "volumes: undeclared",
        check_named_volumes,
        _delete("volumes.grafana-data"),
        "undeclared volume grafana-data",
    ),
    (
        "bind: missing path",
        check_bind_mounts,
        _set("services.prometheus.volumes", ["./observability/nope.yml:/etc/x.yml:ro"]),
        "does not exist",
    ),
    (
        "bind: outside repo",
        check_bind_mounts,
        _set("services.prometheus.volumes", ["/etc/passwd:/etc/x:ro"]),
        "outside the repository",
    ),
    (
        "bind: file is a directory",
        check_bind_mounts,
        _set("services.prometheus.volumes", ["./observability/statsd:/etc/mapping.yml:ro"]),
        "not one",
    ),
    ("image: latest", check_images, _set("services.redis.image", "redis:latest"), "redis: image"),
    ("image: bare name", check_images, _set("services.redis.image", "redis"), "redis: image"),
    (
        "image: registry port, no tag",
        check_images,
        _set("services.redis.image", "registry:5000/redis"),
        "redis: image",
    ),
    ("image: variable tag", check_images, _set("services.redis.image", "redis:${TAG:-7}"), "redis: image"),
    (
        "image: build without tag",
        check_images,
        _set("services.serving.image", "velocast/serving"),
        "serving: image",
    ),
    (
        "image: missing Dockerfile",
        check_images,
        _set("services.serving.build", {"context": ".", "dockerfile": "nope/Dockerfile"}),
        "does not exist",
    ),
    (
        "image: missing stage",
        check_images,
        _set("services.bigquery-emulator.build.target", "ghost"),
        "not a stage",
    ),
    (
        "image: two builds, one tag",
        check_images,
        _set("services.bigquery-emulator.image", "velocast/airflow:0.1.0"),
        "two different build",
    ),
    (
        "healthcheck: missing",
        check_healthchecks,
        _delete("services.serving.healthcheck"),
        "serving: long-running",
    ),
    (
        "healthcheck: disabled",
        check_healthchecks,
        _set("services.grafana.healthcheck", {"disable": True}),
        "grafana: long-running",
    ),
    (
        "healthcheck: NONE",
        check_healthchecks,
        _set("services.grafana.healthcheck", {"test": ["NONE"]}),
        "NONE",
    ),
    (
        "healthcheck: init made long-running",
        check_healthchecks,
        _set("services.airflow-init.restart", "always"),
        "airflow-init",
    ),
    (
        "ports: wrong host port",
        check_ports,
        _set("services.mlflow.ports", ["127.0.0.1:5001:5000"]),
        "settings.mlflow_port is 5000",
    ),
    (
        "ports: wrong container port",
        check_ports,
        _set("services.serving.ports", ["127.0.0.1:8000:8080"]),
        "settings.serving_port",
    ),
    (
        "ports: exporter env moved",
        check_ports,
        _add_env("mlops-exporter", "VELOCAST_EXPORTER_PORT", "9200"),
        "settings.exporter_port is 9200",
    ),
    ("ports: all interfaces", check_ports, _set("services.grafana.ports", ["3000:3000"]), "all interfaces"),
    (
        "ports: duplicate",
        check_ports,
        _set("services.grafana.ports", ["127.0.0.1:9090:3000"]),
        "also published",
    ),
    (
        "ports: api port",
        check_ports,
        _add_env("airflow-apiserver", "AIRFLOW__API__PORT", "8080"),
        "AIRFLOW__API__PORT",
    ),
    (
        "ports: execution url",
        check_ports,
        _add_env(
            "airflow-apiserver",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
            "http://airflow-apiserver:8080/execution/",
        ),
        "EXECUTION_API_SERVER_URL",
    ),
    (
        "ports: mlflow listen",
        check_ports,
        _set("services.mlflow.command", ["mlflow", "server", "--port", "5001"]),
        "mlflow_port",
    ),
    (
        "ports: tracking uri",
        check_ports,
        _add_env("serving", "VELOCAST_MLFLOW_TRACKING_URI", "http://mlflow:5001"),
        "TRACKING_URI",
    ),
    ("redis: published", check_redis, _set("services.redis.ports", ["127.0.0.1:6379:6379"]), "published"),
    ("redis: no password", check_redis, _set("services.redis.command", ["redis-server"]), "requirepass"),
    (
        "redis: default password",
        check_redis,
        _add_env("redis", "REDIS_PASSWORD", "${REDIS_PASSWORD:-redis}"),
        "required variable",
    ),
    (
        "redis: broker without password",
        check_redis,
        _add_env("airflow-worker", "AIRFLOW__CELERY__BROKER_URL", "redis://:@redis:6379/0"),
        "broker",
    ),
    (
        "secrets: default",
        check_no_secret_defaults,
        _add_env("grafana", "GF_SECURITY_ADMIN_PASSWORD", "${GRAFANA_ADMIN_PASSWORD:-admin}"),
        "not required",
    ),
    (
        "secrets: optional",
        check_no_secret_defaults,
        _add_env("serving", "VELOCAST_SERVING_ADMIN_API_KEY", "${VELOCAST_SERVING_ADMIN_API_KEY}"),
        "not required",
    ),
    (
        "secrets: literal",
        check_no_secret_defaults,
        _add_env("postgres", "POSTGRES_PASSWORD", "airflow"),
        "without a required variable",
    ),
    (
        "secrets: in a URL",
        check_no_secret_defaults,
        _add_env("mlflow", "MLFLOW_BACKEND_STORE_URI", "postgresql://mlflow:mlflow@mlflow-db/mlflow"),
        "password in",
    ),
    (
        "platform: executor",
        check_platform,
        _add_env("airflow-worker", "AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        "AIRFLOW__CORE__EXECUTOR",
    ),
    (
        "platform: jwt not shared",
        check_platform,
        _add_env("airflow-worker", "AIRFLOW__API_AUTH__JWT_SECRET", "${OTHER_SECRET:?x}"),
        "JWT_SECRET is not one value",
    ),
    (
        "platform: statsd host",
        check_platform,
        _add_env("airflow-scheduler", "AIRFLOW__METRICS__STATSD_HOST", "localhost"),
        "STATSD_HOST",
    ),
    (
        "platform: result backend",
        check_platform,
        _add_env("airflow-scheduler", "AIRFLOW__CELERY__RESULT_BACKEND", "redis://x"),
        "result backend",
    ),
    (
        "platform: init not awaited",
        check_platform,
        _set("services.airflow-scheduler.depends_on.airflow-init", {"condition": "service_started"}),
        "airflow-init",
    ),
    (
        "platform: no private ip",
        check_platform,
        _set(
            "services.cloud-sql-proxy.command",
            ["--address=0.0.0.0", "${CLOUD_SQL_INSTANCE_CONNECTION_NAME:?x}"],
        ),
        "--private-ip",
    ),
    (
        "platform: proxy v1",
        check_platform,
        _set("services.cloud-sql-proxy.image", "gcr.io/cloudsql-docker/gce-proxy:1.33.2"),
        "v2 image",
    ),
    ("platform: profile", check_platform, _delete("services.grafana.profiles"), "grafana: profiles"),
    ("platform: no memory limit", check_platform, _delete("services.serving.mem_limit"), "memory limit"),
    (
        "platform: no allowed hosts",
        check_platform,
        _set("services.mlflow.command", ["mlflow", "server"]),
        "--allowed-hosts",
    ),
    ("platform: webhook", check_platform, _delete("services.alertmanager.secrets"), "Discord webhook"),
    (
        "platform: webhook path",
        check_platform,
        _set("services.alertmanager.secrets", ["discord_webhook_url"]),
        "not the secret's target",
    ),
]


@pytest.mark.parametrize(
    ("check", "mutate", "expected"),
    [case[1:] for case in NEGATIVE_CASES],
    ids=[case[0] for case in NEGATIVE_CASES],
)
def test_each_rule_reports_a_broken_copy(
    doc: Compose, check: Callable[[Compose], list[str]], mutate: Mutation, expected: str
) -> None:
    broken = copy.deepcopy(doc)
    mutate(broken)
    problems = check(broken)
    assert any(expected in problem for problem in problems), problems


def test_readme_check_reports_unknown_and_undescribed_services(doc: Compose) -> None:
    text = README.read_text()
    ghost = text.replace(
        f"## {README_SECTION}\n", f"## {README_SECTION}\n\n| `ghost-service` | nothing |\n", 1
    )
    assert "README mentions service ghost-service, which the compose file lacks" in check_readme_services(
        doc, ghost
    )
    extra = copy.deepcopy(doc)
    services(extra)["undocumented"] = {"image": "busybox:1.36.1"}
    assert "README does not describe service undocumented" in check_readme_services(extra, text)


def test_env_example_check_reports_missing_stale_and_filled_entries(doc: Compose) -> None:
    text = ENV_EXAMPLE.read_text()
    missing = re.sub(r"^REDIS_PASSWORD=.*$", "", text, flags=re.M)
    assert ".env.example does not list REDIS_PASSWORD" in check_env_example(doc, missing)
    stale = text + "\nUNUSED_SETTING=1\n"
    assert ".env.example lists UNUSED_SETTING, which the compose file does not read" in check_env_example(
        doc, stale
    )
    filled = re.sub(r"^AIRFLOW_JWT_SECRET=.*$", "AIRFLOW_JWT_SECRET=changeme", text, flags=re.M)
    assert ".env.example gives secret AIRFLOW_JWT_SECRET a value: leave it empty" in check_env_example(
        doc, filled
    )
    # Passed-through environment keys and secrets sourced from variables count as read.
    passthrough = copy.deepcopy(doc)
    _add_env("serving", "NEW_PASSTHROUGH", None)(passthrough)
    assert ".env.example does not list NEW_PASSTHROUGH" in check_env_example(passthrough, text)
    sourced = copy.deepcopy(doc)
    sourced["secrets"]["other"] = {"environment": "OTHER_SOURCE"}
    assert ".env.example does not list OTHER_SOURCE" in check_env_example(sourced, text)


def test_interpolation_parser_reads_compose_syntax() -> None:
    uses = list(interpolations("a $$ESCAPED ${A:?msg: x} ${B:-d} ${C-d} ${D} $E ${F?m} ${G:+x}", "w"))
    assert [(use.name, use.operator) for use in uses] == [
        ("A", ":?"),
        ("B", ":-"),
        ("C", "-"),
        ("D", ""),
        ("E", ""),
        ("F", "?"),
        ("G", ":+"),
    ]
    assert uses[0].argument == "msg: x"


def test_published_port_parser_reads_short_and_long_syntax() -> None:
    service = {
        "ports": [
            "127.0.0.1:8000:8000",
            "9000:9001/udp",
            "5000",
            {"target": 3000, "published": 3001, "host_ip": "127.0.0.1"},
        ]
    }
    assert published_ports(service) == [
        Published("127.0.0.1", 8000, 8000, "tcp"),
        Published("", 9000, 9001, "udp"),
        Published("127.0.0.1", 3001, 3000, "tcp"),
    ]


DOCKERFILE_CASES: list[tuple[str, Path, Callable[[str], list[str]], Callable[[str], str], str]] = [
    (
        "airflow: latest base",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace("apache/airflow:3.3.2-python3.11", "apache/airflow:latest"),
        "not pinned",
    ),
    (
        "airflow: other airflow",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace("apache/airflow:3.3.2-python3.11", "apache/airflow:3.1.0-python3.11"),
        "the lock's Airflow",
    ),
    (
        "airflow: bare builder",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace("FROM python:3.11.13-slim-bookworm", "FROM python"),
        "FROM python is not pinned",
    ),
    (
        "airflow: no lock",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace("-r /opt/airflow/requirements.txt", ""),
        "lock is not installed",
    ),
    (
        "airflow: lock without airflow pin",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace('"apache-airflow==${AIRFLOW_VERSION}" ', ""),
        "lock is not installed",
    ),
    (
        "airflow: no project",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace("--no-deps /opt/velocast", "/opt/velocast"),
        "--no-deps",
    ),
    (
        "airflow: no dags",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace("COPY --chown=airflow:0 airflow/dags", "# "),
        "airflow/dags is not copied",
    ),
    (
        "airflow: no omp",
        AIRFLOW_DOCKERFILE,
        check_airflow_dockerfile,
        lambda t: t.replace("OMP_WAIT_POLICY=PASSIVE", "OMP_WAIT_POLICY=ACTIVE"),
        "OMP_WAIT_POLICY",
    ),
    (
        "serving: root",
        SERVING_DOCKERFILE,
        check_non_root,
        lambda t: t.replace("USER velocast", "USER root"),
        "runs as root",
    ),
    (
        "serving: no user",
        SERVING_DOCKERFILE,
        check_non_root,
        lambda t: t.replace("USER velocast", ""),
        "never switches",
    ),
    (
        "serving: latest",
        SERVING_DOCKERFILE,
        check_dockerfile_bases,
        lambda t: t.replace("FROM python:3.11.13-slim-bookworm", "FROM python:latest"),
        "not pinned",
    ),
]


@pytest.mark.parametrize(
    ("path", "check", "edit", "expected"),
    [case[1:] for case in DOCKERFILE_CASES],
    ids=[case[0] for case in DOCKERFILE_CASES],
)
def test_each_dockerfile_rule_reports_a_broken_copy(
    path: Path, check: Callable[[str], list[str]], edit: Callable[[str], str], expected: str
) -> None:
    text = path.read_text()
    edited = edit(text)
    assert edited != text, "the edit no longer applies to the Dockerfile"
    assert any(expected in problem for problem in check(edited)), check(edited)
