"""Offline checks of terraform/: everything that can be verified without the provider registry.

``terraform init/validate/plan`` of the configuration need registry.terraform.io, which this
machine cannot reach, so it is checked in four offline ways:

1. ``terraform fmt -check -recursive`` (the terraform binary must be on PATH);
2. the HCL parsed with python-hcl2: every table in ``velocast.contract.ALL_TABLES`` is created
   from its own contract file (schema, partitioning, clustering, dataset), the datasets default to
   the settings' names, variables and outputs are documented, Cloud SQL has no public IP and
   the bucket is private, uniform and versioned;
3. Terraform itself on a provider-free module built from the configuration: the variables with
   their validation rules, the locals that read the contracts and the contract table's attribute
   expressions (on the built-in ``terraform_data``) are applied in a temporary directory;
4. checkov (own venv ``.venv-checkov``, ``make venv``) with zero failed checks, every skip
   justified inline.

Each check is a function over a directory that returns the problems it found, so that the
negative tests below can run it on a broken copy of terraform/ and see it fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import hcl2
import pytest

from velocast.contract import ALL_TABLES, load_contract
from velocast.settings import VelocastSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
CONTRACT_DIR = Path(str(resources.files("velocast.contract")))
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_TIMEOUT_SECONDS = 300

# A tool must never wait on the network here: no checkpoint calls, no Prisma Cloud platform.
OFFLINE_ENV = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
PLATFORM_VARIABLES = ("BC_API_KEY", "PRISMA_API_URL")

# What the docker-compose .env is built from (see terraform/README.md).
REQUIRED_OUTPUTS = {
    "project_id",
    "region",
    "bucket_name",
    "dataset_ids",
    "table_ids",
    "service_account_emails",
    "sql_instance_connection_name",
    "mlflow_database_name",
    "mlflow_database_user",
    "secret_ids",
    "velocast_environment",
}
REQUIRED_SECRETS = {
    "mlflow_db_password",
    "discord_webhook",
    "serving_predict_api_key",
    "serving_admin_api_key",
}
ALLOWED_SSL_MODES = {"ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"}

_HCL_OPTIONS = hcl2.SerializationOptions(with_comments=False, strip_string_quotes=True)
_SKIP_COMMENT = re.compile(r"checkov:skip=([A-Za-z0-9_]+)(?::(.*))?$", re.MULTILINE)
MIN_SKIP_REASON_CHARS = 20


# --- Loading the configuration -------------------------------------------------------------


@dataclass
class TerraformConfig:
    """The top-level blocks of every ``*.tf`` file of one directory, merged."""

    directory: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def resources_of(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (rtype, name), body in self.resources.items() if rtype == kind}


def load_config(directory: Path) -> TerraformConfig:
    config = TerraformConfig(directory=directory)
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed: dict[str, Any] = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
        for entry in parsed.get("variable", []):
            config.variables.update(entry)
        for entry in parsed.get("output", []):
            config.outputs.update(entry)
        for entry in parsed.get("locals", []):
            config.locals.update({key: value for key, value in entry.items() if not key.startswith("__")})
        for entry in parsed.get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    config.resources[(rtype, name)] = body
    return config


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block ``name`` of a body ({} when absent)."""
    blocks = body.get(name) or [{}]
    first: dict[str, Any] = blocks[0]
    return first


def expr(text: str) -> str:
    """An expression without insignificant whitespace, for comparisons."""
    return re.sub(r"\s+", " ", text).strip()


# --- 1. terraform fmt ----------------------------------------------------------------------


def terraform_binary() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail(
            "terraform is not on PATH: install Terraform >= 1.5 (this machine has /usr/local/bin/terraform "
            "1.11.4) to run `terraform fmt -check`",
            pytrace=False,
        )
    return binary


def terraform_fmt_problems(directory: Path) -> list[str]:
    completed = subprocess.run(
        [terraform_binary(), "fmt", "-check", "-recursive", "-diff", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **OFFLINE_ENV},
    )
    if completed.returncode == 0:
        return []
    return [
        f"terraform fmt -check failed (exit {completed.returncode}):\n{completed.stdout}{completed.stderr}"
    ]


# --- 2. Contract tables --------------------------------------------------------------------


class NotFromContractError(ValueError):
    """A table attribute that is not taken from the table's contract."""


_EACH_VALUE = re.compile(r"\$\{each\.value((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\}")
_JSONENCODE_EACH_VALUE = re.compile(r"\$\{jsonencode\(each\.value((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\)\}")
_CONTRACTS_LOCAL = re.compile(
    r"\$\{\{for (\w+) in local\.contract_tables : \1 => "
    r'jsondecode\(file\("\$\{local\.contract_dir\}/\$\{\1\}\.json"\)\)\}\}'
)
_DATASET_REFERENCE = re.compile(r"\$\{google_bigquery_dataset\.(\w+)\[each\.value\.dataset\]\.dataset_id\}")
_LOCAL_REFERENCE = re.compile(r"\$\{local\.(\w+)\}")
_VARIABLE_REFERENCE = re.compile(r"\$\{var\.(\w+)\}")


def resolve_contract_expression(value: Any, name: str, contract: dict[str, Any]) -> Any:
    """The value Terraform computes for ``value`` in the instance ``name`` of a for_each over contracts.

    Only expressions that read the contract are accepted: ``each.key``, ``each.value.<path>``
    and ``jsonencode(each.value.<path>)``. Anything else (a literal, another file, another
    local) is not from the contract and raises ``NotFromContractError``.
    """
    if not isinstance(value, str):
        raise NotFromContractError(f"the literal {value!r} is not from the contract")
    if value == "${each.key}":
        return name
    for pattern, encoded in ((_EACH_VALUE, False), (_JSONENCODE_EACH_VALUE, True)):
        match = pattern.fullmatch(value)
        if match is None:
            continue
        node: Any = contract
        for key in match.group(1).strip(".").split("."):
            if not isinstance(node, dict) or key not in node:
                raise NotFromContractError(
                    f"{value} does not exist in contract {name} (Terraform would fail)"
                )
            node = node[key]
        return json.loads(json.dumps(node)) if encoded else node
    raise NotFromContractError(f"{value!r} is not taken from the contract")


def contract_directory(config: TerraformConfig) -> Path | None:
    raw = config.locals.get("contract_dir")
    if not isinstance(raw, str) or not raw.startswith("${path.module}/"):
        return None
    return (config.directory / raw.removeprefix("${path.module}/")).resolve()


def contract_table_problems(
    config: TerraformConfig,
    *,
    tables: Iterable[str] = ALL_TABLES,
    contract_dir: Path = CONTRACT_DIR,
) -> list[str]:
    """Why the BigQuery tables in ``config`` differ from the contracts ``tables`` in ``contract_dir``."""
    tables = tuple(tables)
    problems: list[str] = []

    # The contract files Terraform reads are the code's own.
    read_dir = contract_directory(config)
    if read_dir is None or not read_dir.is_dir() or not read_dir.samefile(contract_dir):
        problems.append(
            f"local.contract_dir must be ${{path.module}}/... pointing at {contract_dir}: {read_dir}"
        )
    contracts_local = config.locals.get("contracts")
    if not isinstance(contracts_local, str) or not _CONTRACTS_LOCAL.fullmatch(expr(contracts_local)):
        problems.append(
            "local.contracts must map every name of local.contract_tables to "
            f'jsondecode(file("${{local.contract_dir}}/${{name}}.json")), found {contracts_local!r}'
        )
    listed = config.locals.get("contract_tables")
    listed_names = list(listed) if isinstance(listed, list) else []
    problems += [
        f"contract {name} has no table in local.contract_tables"
        for name in tables
        if name not in listed_names
    ]
    problems += [
        f"local.contract_tables lists {name}, not in ALL_TABLES"
        for name in listed_names
        if name not in tables
    ]
    if len(set(listed_names)) != len(listed_names):
        problems.append(f"local.contract_tables has duplicates: {listed_names}")

    # Any other table resource must not re-declare a contract table by hand.
    tables_by_name = config.resources_of("google_bigquery_table")
    for resource_name, body in tables_by_name.items():
        if body.get("for_each") != "${local.contracts}" and body.get("table_id") in tables:
            problems.append(
                f"google_bigquery_table.{resource_name} hard-codes contract table {body['table_id']}"
            )
    contract_resources = [
        body for body in tables_by_name.values() if body.get("for_each") == "${local.contracts}"
    ]
    if len(contract_resources) != 1:
        problems.append(
            "expected one google_bigquery_table with for_each = local.contracts, "
            f"found {len(contract_resources)}"
        )
        return problems
    table = contract_resources[0]

    # The dataset resource: one per logical key of local.<datasets>, named by a variable.
    dataset_match = _DATASET_REFERENCE.fullmatch(str(table.get("dataset_id")))
    dataset_resource: dict[str, Any] = {}
    datasets_local: dict[str, Any] = {}
    if dataset_match is None:
        problems.append(
            "dataset_id must be google_bigquery_dataset.<name>[each.value.dataset].dataset_id, "
            f"found {table.get('dataset_id')!r}"
        )
    else:
        dataset_resource = config.resources_of("google_bigquery_dataset").get(dataset_match.group(1), {})
        local_match = _LOCAL_REFERENCE.fullmatch(str(dataset_resource.get("for_each")))
        datasets_local = config.locals.get(local_match.group(1), {}) if local_match else {}
        if not datasets_local or dataset_resource.get("dataset_id") != "${each.value.dataset_id}":
            problems.append(
                f"google_bigquery_dataset.{dataset_match.group(1)} must iterate a local map "
                "(logical key => {dataset_id = var...}) and use each.value.dataset_id"
            )

    for name in tables:
        path = contract_dir / f"{name}.json"
        if not path.is_file():
            problems.append(f"contract {name}: {path} does not exist")
            continue
        raw = json.loads(path.read_text(encoding="utf-8"))
        code = load_contract(name) if contract_dir == CONTRACT_DIR else None
        expected_schema = code.bigquery_schema() if code else raw["schema"]
        expected_clustering = list(code.clustering) if code else raw.get("clustering", [])
        expected_field = code.partition_field if code else raw["time_partitioning"]["field"]
        partitioning = block(table, "time_partitioning")
        checks: list[tuple[str, Any, Any]] = [
            ("table_id", table.get("table_id"), name),
            ("schema", table.get("schema"), expected_schema),
            ("clustering", table.get("clustering"), expected_clustering),
            ("time_partitioning.field", partitioning.get("field"), expected_field),
            ("time_partitioning.type", partitioning.get("type"), "DAY"),
        ]
        for attribute, expression, expected in checks:
            try:
                actual = resolve_contract_expression(expression, name, raw)
            except NotFromContractError as error:
                problems.append(f"table {name}: {attribute}: {error}")
                continue
            if actual != expected:
                problems.append(f"table {name}: {attribute} is {actual!r}, the contract says {expected!r}")
        if table.get("deletion_protection") != "${var.deletion_protection}":
            problems.append(f"table {name}: deletion_protection must be var.deletion_protection")

        # Its dataset: the logical key -> local map entry -> variable whose default is the setting.
        key = raw.get("dataset")
        setting = f"{key}_dataset"
        if setting not in VelocastSettings.model_fields:
            problems.append(f"table {name}: dataset key {key!r} has no VelocastSettings.{setting}")
            continue
        if not datasets_local:
            continue
        entry = datasets_local.get(key)
        if not isinstance(entry, dict):
            problems.append(f"table {name}: no dataset for the logical key {key!r}")
            continue
        variable_match = _VARIABLE_REFERENCE.fullmatch(str(entry.get("dataset_id")))
        if variable_match is None:
            problems.append(
                f"dataset {key!r}: dataset_id must be a variable, found {entry.get('dataset_id')!r}"
            )
            continue
        default = config.variables.get(variable_match.group(1), {}).get("default")
        expected_dataset = VelocastSettings.model_fields[setting].default
        if default != expected_dataset:
            problems.append(
                f"table {name}: dataset var.{variable_match.group(1)} defaults to {default!r}, "
                f"VelocastSettings().{setting} is {expected_dataset!r}"
            )
    return problems


# --- 2b. Variables, outputs, secrets, Cloud SQL, bucket -------------------------------------


def documentation_problems(config: TerraformConfig) -> list[str]:
    problems: list[str] = []
    for name, body in config.variables.items():
        if not body.get("type"):
            problems.append(f"variable {name} has no type")
        if not str(body.get("description") or "").strip():
            problems.append(f"variable {name} has no description")
    for name, body in config.outputs.items():
        if not str(body.get("description") or "").strip():
            problems.append(f"output {name} has no description")
    problems += [f"output {name} is missing" for name in sorted(REQUIRED_OUTPUTS - set(config.outputs))]
    environment = config.outputs.get("velocast_environment", {}).get("value", {})
    fields = VelocastSettings.model_fields
    for variable in environment if isinstance(environment, dict) else []:
        setting = variable.lower().removeprefix("velocast_")
        if not variable.startswith("VELOCAST_") or setting not in fields:
            problems.append(f"output velocast_environment: {variable} is no VelocastSettings field")
    example = config.directory / "terraform.tfvars.example"
    if not example.is_file():
        problems.append("terraform.tfvars.example is missing")
    else:
        with example.open(encoding="utf-8") as handle:
            given = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
        problems += [
            f"terraform.tfvars.example sets {name}, which is no variable"
            for name in given
            if not name.startswith("__") and name not in config.variables
        ]
        required = {name for name, body in config.variables.items() if "default" not in body}
        problems += [
            f"terraform.tfvars.example does not set {name}" for name in sorted(required - set(given))
        ]
    secrets = config.locals.get("secrets", {})
    problems += [
        f"secret {name} is missing from local.secrets" for name in sorted(REQUIRED_SECRETS - set(secrets))
    ]
    return problems


def cloudsql_problems(config: TerraformConfig) -> list[str]:
    problems: list[str] = []
    instances = config.resources_of("google_sql_database_instance")
    if not instances:
        problems.append("no google_sql_database_instance")
    protection = config.variables.get("deletion_protection", {}).get("default")
    for name, body in instances.items():
        settings = block(body, "settings")
        network = block(settings, "ip_configuration")
        backups = block(settings, "backup_configuration")
        if network.get("ipv4_enabled") is not False:
            problems.append(f"{name}: ip_configuration.ipv4_enabled must be false (no public IP)")
        if not network.get("private_network"):
            problems.append(f"{name}: ip_configuration.private_network is not set")
        if "authorized_networks" in network:
            problems.append(f"{name}: ip_configuration has authorized_networks")
        if network.get("ssl_mode") not in ALLOWED_SSL_MODES:
            problems.append(
                f"{name}: ssl_mode {network.get('ssl_mode')!r} not in {sorted(ALLOWED_SSL_MODES)}"
            )
        if backups.get("enabled") is not True or backups.get("point_in_time_recovery_enabled") is not True:
            problems.append(f"{name}: automated backups and point-in-time recovery must be enabled")
        if (
            body.get("deletion_protection") not in (True, "${var.deletion_protection}")
            or protection is not True
        ):
            problems.append(f"{name}: deletion_protection must be on (var.deletion_protection, default true)")
    return problems


def bucket_problems(config: TerraformConfig) -> list[str]:
    problems: list[str] = []
    buckets = config.resources_of("google_storage_bucket")
    if not buckets:
        problems.append("no google_storage_bucket")
    for name, body in buckets.items():
        if body.get("uniform_bucket_level_access") is not True:
            problems.append(f"{name}: uniform_bucket_level_access must be true")
        if body.get("public_access_prevention") != "enforced":
            problems.append(f"{name}: public_access_prevention must be enforced")
        if block(body, "versioning").get("enabled") is not True:
            problems.append(f"{name}: versioning must be enabled")
        conditions = [block(rule, "condition") for rule in body.get("lifecycle_rule", [])]
        prefixes = {prefix for condition in conditions for prefix in condition.get("matches_prefix", [])}
        problems += [
            f"{name}: no lifecycle rule for {p}" for p in ("staging/", "drift_reports/") if p not in prefixes
        ]
        if not any("days_since_noncurrent_time" in c or "num_newer_versions" in c for c in conditions):
            problems.append(f"{name}: no lifecycle rule for noncurrent versions")
    return problems


# --- 3. Offline evaluation with Terraform itself ----------------------------------------------
#
# Without the google provider, Terraform can still evaluate everything that is not a provider
# resource: the variables (types, defaults, validation rules), the locals that read the contract
# files, and the contract table's own attribute expressions, re-hosted on the built-in
# terraform_data resource. `terraform init` then needs no registry.

_TOP_LEVEL_BLOCK = re.compile(r'^(locals|variable "[^"]+") \{\n.*?^\}\n', re.DOTALL | re.MULTILINE)
_RESOURCE_REFERENCE = re.compile(r"\b(?:data\.)?(?:google|random)_[a-z0-9_]+\.")
_INTERPOLATION = re.compile(r"\$\{(.*)\}", re.DOTALL)
REQUIRED_VARIABLES = {
    "project_id": "velocast-test-project",
    "network_self_link": "projects/velocast-test-project/global/networks/velocast",
}


def hcl_expression(value: Any) -> str:
    """HCL source of a value parsed by python-hcl2 (quotes stripped)."""
    if isinstance(value, str):
        match = _INTERPOLATION.fullmatch(value)
        return match.group(1) if match else json.dumps(value)
    return json.dumps(value)


def offline_module(directory: Path, work: Path) -> Path:
    """A provider-free module beside a copy of the contracts: variables, resource-free locals and
    the contract table's attribute expressions on terraform_data."""
    config = load_config(directory)
    module = work / "terraform"
    module.mkdir(parents=True)
    read_dir = contract_directory(config)
    assert read_dir is not None and read_dir.is_dir(), f"no contract directory in {directory}"
    shutil.copytree(read_dir, work / "include" / "velocast" / "contract")
    blocks = [
        found.group(0)
        for path in sorted(directory.glob("*.tf"))
        for found in _TOP_LEVEL_BLOCK.finditer(path.read_text(encoding="utf-8"))
        if found.group(1).startswith("variable") or not _RESOURCE_REFERENCE.search(found.group(0))
    ]
    tables = [body for body in config.resources_of("google_bigquery_table").values() if "for_each" in body]
    assert len(tables) == 1, "expected one google_bigquery_table with for_each"
    table = tables[0]
    partitioning = block(table, "time_partitioning")
    dataset = re.fullmatch(
        r"\$\{google_bigquery_dataset\.\w+\[(.+)\]\.dataset_id\}", str(table.get("dataset_id"))
    )
    dataset_key = dataset.group(1) if dataset else json.dumps(str(table.get("dataset_id")))
    blocks.append(
        f"""resource "terraform_data" "contract_table" {{
  for_each = {hcl_expression(table["for_each"])}
  input = {{
    dataset_key = {dataset_key}
    table_id    = {hcl_expression(table.get("table_id"))}
    schema      = {hcl_expression(table.get("schema"))}
    clustering  = {hcl_expression(table.get("clustering"))}
    partition = {{
      type  = {hcl_expression(partitioning.get("type"))}
      field = {hcl_expression(partitioning.get("field"))}
    }}
  }}
}}

output "evaluated" {{
  value = {{
    tables   = {{ for name, table in terraform_data.contract_table : name => table.output }}
    datasets = {{ for key, dataset in local.datasets : key => dataset.dataset_id }}
  }}
}}
"""
    )
    (module / "main.tf").write_text("\n".join(blocks), encoding="utf-8")
    (work / "terraformrc").write_text("", encoding="utf-8")
    return module


def terraform_offline(module: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **OFFLINE_ENV, "TF_CLI_CONFIG_FILE": str(module.parent / "terraformrc")}
    return subprocess.run(
        [terraform_binary(), f"-chdir={module}", *args, "-no-color"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def evaluate_offline(module: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Apply the provider-free module (state stays in tmp) with ``variables``."""
    if not (module / ".terraform").exists():
        init = terraform_offline(module, "init", "-input=false")
        assert init.returncode == 0, init.stdout + init.stderr
    var_args = [f"-var={name}={value}" for name, value in variables.items()]
    return terraform_offline(module, "apply", "-auto-approve", "-input=false", *var_args)


# --- 4. checkov ------------------------------------------------------------------------------


def skip_comment_problems(directory: Path) -> list[str]:
    """Every ``checkov:skip`` must carry a reason."""
    problems: list[str] = []
    for path in sorted(directory.rglob("*.tf")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = _SKIP_COMMENT.search(line)
            if match is None:
                continue
            reason = (match.group(2) or "").strip()
            if len(reason) < MIN_SKIP_REASON_CHARS:
                problems.append(
                    f"{path.name}:{number}: skip of {match.group(1)} has no real reason: {reason!r}"
                )
    return problems


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report for ``directory``, run offline."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: build it with `make venv` (locks/checkov.txt)", pytrace=False)
    env = {key: value for key, value in os.environ.items() if key not in PLATFORM_VARIABLES}
    completed = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=CHECKOV_TIMEOUT_SECONDS,
        check=False,
        env={**env, **OFFLINE_ENV},
        cwd=directory,
    )
    # Exit 1 means failed checks (read them from the report); anything else is a crash.
    assert completed.returncode in (0, 1), (
        f"checkov crashed ({completed.returncode}): {completed.stderr[-3000:]}"
    )
    report = json.loads(completed.stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r.get("check_type") for r in reports] == ["terraform"], reports
    result: dict[str, Any] = reports[0]
    return result


def checkov_problems(report: dict[str, Any]) -> list[str]:
    summary = report["summary"]
    results = report["results"]
    problems = [
        f"{check['check_id']} failed on {check['resource']} ({check['file_path']}): {check['check_name']}"
        for check in results["failed_checks"]
    ]
    if summary["parsing_errors"]:
        problems.append(
            f"checkov could not parse {summary['parsing_errors']} file(s): {results['parsing_errors']}"
        )
    if summary["passed"] == 0:
        problems.append("checkov passed no check: it did not see the resources")
    problems += [
        f"skip of {check['check_id']} on {check['resource']} has no reason"
        for check in results["skipped_checks"]
        if not str(check["check_result"].get("suppress_comment") or "").strip()
    ]
    return problems


# --- Fixtures and helpers for the negative tests ------------------------------------------------


@pytest.fixture(scope="module")
def config() -> TerraformConfig:
    return load_config(TERRAFORM_DIR)


@pytest.fixture
def terraform_copy(tmp_path: Path) -> Path:
    """terraform/ and the contract files copied under tmp_path, in the same relative layout."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    shutil.copytree(
        CONTRACT_DIR, tmp_path / "include" / "velocast" / "contract", ignore=shutil.ignore_patterns("*.py*")
    )
    return copy


@pytest.fixture
def broken_copy(terraform_copy: Path) -> Callable[[str, str, str], Path]:
    """Apply one edit (which must apply) to a file of the copy; returns the copy's terraform/."""
    copy = terraform_copy

    def edit(file_name: str, old: str, new: str) -> Path:
        path = copy / file_name
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{file_name} no longer contains {old!r}: update this negative test"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return copy

    return edit


def copy_contract_problems(directory: Path, tables: Iterable[str] = ALL_TABLES) -> list[str]:
    return contract_table_problems(
        load_config(directory), tables=tables, contract_dir=directory.parent / "include/velocast/contract"
    )


# --- The checks ------------------------------------------------------------------------------


def test_terraform_is_formatted() -> None:
    assert terraform_fmt_problems(TERRAFORM_DIR) == []


def test_fmt_check_catches_unformatted_code(broken_copy: Callable[[str, str, str], Path]) -> None:
    copy = broken_copy("main.tf", "  project = var.project_id\n", "  project    =    var.project_id\n")
    assert terraform_fmt_problems(copy)


def test_every_contract_table_is_created_from_its_contract(config: TerraformConfig) -> None:
    assert contract_table_problems(config) == []
    assert set(config.locals["contract_tables"]) == set(ALL_TABLES)


def test_the_copy_used_by_negative_tests_passes(terraform_copy: Path) -> None:
    config = load_config(terraform_copy)
    assert copy_contract_problems(terraform_copy) == []
    assert documentation_problems(config) == cloudsql_problems(config) == bucket_problems(config) == []
    assert skip_comment_problems(terraform_copy) == []


@pytest.mark.parametrize(
    ("file_name", "old", "new", "expected"),
    [
        pytest.param(
            "bigquery.tf",
            '    "model_decisions",\n',
            "",
            "contract model_decisions has no table",
            id="contract-without-table",
        ),
        pytest.param(
            "bigquery.tf",
            "schema              = jsonencode(each.value.schema)",
            'schema              = jsonencode([{ name = "counter_id", type = "STRING", mode = "REQUIRED" }])',
            "table hourly_counts: schema: ",
            id="hard-coded-schema",
        ),
        pytest.param(
            "bigquery.tf",
            "schema              = jsonencode(each.value.schema)",
            'schema              = file("${path.module}/schemas/${each.key}.json")',
            "is not taken from the contract",
            id="schema-from-another-file",
        ),
        pytest.param(
            "bigquery.tf",
            "field = each.value.time_partitioning.field",
            'field = "ingested_at"',
            "time_partitioning.field: 'ingested_at' is not taken from the contract",
            id="hard-coded-partition-field",
        ),
        pytest.param(
            "bigquery.tf",
            "clustering          = each.value.clustering",
            "clustering          = each.value.primary_key",
            "clustering is",
            id="clustering-from-another-key",
        ),
        pytest.param(
            "bigquery.tf",
            "dataset_id  = var.raw_dataset",
            "dataset_id  = var.audit_dataset",
            "VelocastSettings().raw_dataset is 'bike_traffic_raw'",
            id="raw-tables-in-the-audit-dataset",
        ),
        pytest.param(
            "variables.tf",
            'default     = "bike_traffic_predictions"',
            'default     = "bike_traffic_forecasts"',
            "defaults to 'bike_traffic_forecasts'",
            id="dataset-default-diverges-from-settings",
        ),
        pytest.param(
            "bigquery.tf",
            'contract_dir = "${path.module}/../include/velocast/contract"',
            'contract_dir = "${path.module}/contracts"',
            "local.contract_dir must be",
            id="contracts-read-from-elsewhere",
        ),
    ],
)
def test_contract_check_catches(
    broken_copy: Callable[[str, str, str], Path], file_name: str, old: str, new: str, expected: str
) -> None:
    problems = copy_contract_problems(broken_copy(file_name, old, new))
    assert any(expected in problem for problem in problems), problems


def test_contract_check_catches_a_new_contract_without_table(terraform_copy: Path) -> None:
    copy = terraform_copy
    contract_dir = copy.parent / "include/velocast/contract"
    new = json.loads((contract_dir / "ingestion_log.json").read_text(encoding="utf-8")) | {
        "table": "drift_runs"
    }
    (contract_dir / "drift_runs.json").write_text(json.dumps(new), encoding="utf-8")
    problems = copy_contract_problems(copy, tables=(*ALL_TABLES, "drift_runs"))
    assert problems == ["contract drift_runs has no table in local.contract_tables"]


def test_variables_and_outputs_are_documented(config: TerraformConfig) -> None:
    assert documentation_problems(config) == []
    assert config.variables["deletion_protection"]["default"] is True
    assert config.variables["region"]["default"] == "europe-west1"
    assert config.variables["bigquery_location"]["default"] == VelocastSettings().gcp_location


@pytest.mark.parametrize(
    ("file_name", "old", "new", "expected"),
    [
        pytest.param(
            "variables.tf",
            '  type        = bool\n  description = "Protect',
            '  description = "Protect',
            "variable deletion_protection has no type",
            id="untyped-variable",
        ),
        pytest.param(
            "variables.tf",
            'description = "Days before ingestion staging files',
            'default_description = "Days before ingestion staging files',
            "variable staging_retention_days has no description",
            id="undescribed-variable",
        ),
        pytest.param(
            "outputs.tf",
            'description = "Project bucket (VELOCAST_BUCKET)."',
            "",
            "output bucket_name has no description",
            id="undescribed-output",
        ),
        pytest.param(
            "outputs.tf",
            "VELOCAST_BUCKET               =",
            "VELOCAST_BUCKET_NAME          =",
            "VELOCAST_BUCKET_NAME is no VelocastSettings field",
            id="env-variable-unknown-to-settings",
        ),
        pytest.param(
            "terraform.tfvars.example",
            "bigquery_location = ",
            "bq_location       = ",
            "terraform.tfvars.example sets bq_location, which is no variable",
            id="example-sets-unknown-variable",
        ),
        pytest.param(
            "terraform.tfvars.example",
            'network_self_link = "',
            '# network_self_link = "',
            "terraform.tfvars.example does not set network_self_link",
            id="example-misses-required-variable",
        ),
        pytest.param(
            "secrets.tf",
            '    discord_webhook         = "${var.name_prefix}-discord-webhook-url"\n',
            "",
            "secret discord_webhook is missing",
            id="missing-secret",
        ),
    ],
)
def test_documentation_check_catches(
    broken_copy: Callable[[str, str, str], Path], file_name: str, old: str, new: str, expected: str
) -> None:
    problems = documentation_problems(load_config(broken_copy(file_name, old, new)))
    assert any(expected in problem for problem in problems), problems


def test_cloudsql_is_private_encrypted_and_backed_up(config: TerraformConfig) -> None:
    assert cloudsql_problems(config) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("ipv4_enabled    = false", "ipv4_enabled    = true", "no public IP", id="public-ip"),
        pytest.param(
            "      ssl_mode        = ",
            '      authorized_networks {\n        value = "0.0.0.0/0"\n      }\n      ssl_mode        = ',
            "has authorized_networks",
            id="authorized-networks",
        ),
        pytest.param(
            '"TRUSTED_CLIENT_CERTIFICATE_REQUIRED"',
            '"ALLOW_UNENCRYPTED_AND_ENCRYPTED"',
            "ssl_mode 'ALLOW_UNENCRYPTED_AND_ENCRYPTED'",
            id="unencrypted",
        ),
        pytest.param(
            "point_in_time_recovery_enabled = true",
            "point_in_time_recovery_enabled = false",
            "point-in-time recovery",
            id="no-pitr",
        ),
    ],
)
def test_cloudsql_check_catches(
    broken_copy: Callable[[str, str, str], Path], old: str, new: str, expected: str
) -> None:
    problems = cloudsql_problems(load_config(broken_copy("cloudsql.tf", old, new)))
    assert any(expected in problem for problem in problems), problems


def test_bucket_is_private_uniform_and_versioned(config: TerraformConfig) -> None:
    assert bucket_problems(config) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            'public_access_prevention    = "enforced"',
            'public_access_prevention    = "inherited"',
            "public_access_prevention",
            id="public-access",
        ),
        pytest.param(
            "uniform_bucket_level_access = true",
            "uniform_bucket_level_access = false",
            "uniform_bucket_level_access",
            id="fine-grained-acls",
        ),
        pytest.param("    enabled = true", "    enabled = false", "versioning", id="no-versioning"),
        pytest.param(
            '["drift_reports/"]', '["reports/"]', "no lifecycle rule for drift_reports/", id="no-drift-rule"
        ),
    ],
)
def test_bucket_check_catches(
    broken_copy: Callable[[str, str, str], Path], old: str, new: str, expected: str
) -> None:
    problems = bucket_problems(load_config(broken_copy("gcs.tf", old, new)))
    assert any(expected in problem for problem in problems), problems


def evaluated_table_problems(module: Path) -> list[str]:
    """Apply the offline module; why the tables Terraform computes differ from the code's contracts."""
    applied = evaluate_offline(module, REQUIRED_VARIABLES)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    output = terraform_offline(module, "output", "-json", "evaluated")
    assert output.returncode == 0, output.stderr
    evaluated = json.loads(output.stdout)
    problems = [
        f"Terraform creates no table {name}" for name in ALL_TABLES if name not in evaluated["tables"]
    ]
    for name, table in evaluated["tables"].items():
        if name not in ALL_TABLES:
            problems.append(f"Terraform creates {name}, which is not in ALL_TABLES")
            continue
        contract = load_contract(name)
        dataset = getattr(VelocastSettings(), f"{contract.dataset}_dataset")
        computed: list[tuple[str, Any, Any]] = [
            ("table_id", table["table_id"], contract.table),
            ("schema", json.loads(table["schema"]), contract.bigquery_schema()),
            ("clustering", table["clustering"], list(contract.clustering)),
            ("partitioning", table["partition"], {"type": "DAY", "field": contract.partition_field}),
            ("dataset", evaluated["datasets"].get(table["dataset_key"]), dataset),
        ]
        problems += [
            f"{name}: Terraform computes {attribute} {actual!r}, the code expects {expected!r}"
            for attribute, actual, expected in computed
            if actual != expected
        ]
    return problems


def test_terraform_evaluates_variables_locals_and_contract_tables(tmp_path: Path) -> None:
    assert evaluated_table_problems(offline_module(TERRAFORM_DIR, tmp_path)) == []


def test_offline_evaluation_catches_a_diverging_schema(
    broken_copy: Callable[[str, str, str], Path], tmp_path: Path
) -> None:
    copy = broken_copy(
        "bigquery.tf",
        "schema              = jsonencode(each.value.schema)",
        'schema              = jsonencode([for f in each.value.schema : f if f.name != "counter_id"])',
    )
    problems = evaluated_table_problems(offline_module(copy, tmp_path / "offline"))
    assert any(problem.startswith("hourly_counts: Terraform computes schema") for problem in problems), (
        problems
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("project_id", "Not_A_Project", "project_id must be a Google Cloud project ID"),
        ("region", "europe west1", "region must be a Google Cloud region"),
        ("bigquery_location", "eu", "bigquery_location must be"),
        ("name_prefix", "a-prefix-far-too-long", "name_prefix must be"),
        ("environment", "local", "environment must be dev or prod"),
        ("labels", '{"Team" = "mlops"}', "Label keys must start with a lowercase letter"),
        ("bucket_name", "Not_A_Bucket!", "bucket_name must be a valid Cloud Storage bucket name"),
        ("staging_retention_days", "0.5", "staging_retention_days must be a whole number"),
        ("raw_dataset", "bike-traffic", "raw_dataset must be a BigQuery dataset ID"),
        ("network_self_link", "velocast", "network_self_link must end with"),
        ("sql_database_version", "POSTGRES_14", "sql_database_version must be POSTGRES_15 or POSTGRES_16"),
        ("sql_availability_type", "MULTI", "sql_availability_type must be ZONAL or REGIONAL"),
        ("discord_webhook_url", "http://discord.example/hook", "discord_webhook_url must be an https:// URL"),
    ],
)
def test_variable_validation_rejects(tmp_path: Path, name: str, value: str, message: str) -> None:
    module = offline_module(TERRAFORM_DIR, tmp_path)
    rejected = evaluate_offline(module, {**REQUIRED_VARIABLES, name: value})
    assert rejected.returncode != 0
    assert message in " ".join(rejected.stderr.split()), rejected.stderr


def test_every_checkov_skip_has_a_reason() -> None:
    assert skip_comment_problems(TERRAFORM_DIR) == []
    assert "checkov:skip=" in (TERRAFORM_DIR / "bigquery.tf").read_text(encoding="utf-8")


def test_skip_check_catches_a_skip_without_reason(broken_copy: Callable[[str, str, str], Path]) -> None:
    copy = broken_copy(
        "gcs.tf",
        "  name                        = local.bucket_name",
        "  # checkov:skip=CKV_GCP_78\n  name = local.bucket_name",
    )
    problems = skip_comment_problems(copy)
    assert len(problems) == 1, problems
    assert problems[0].startswith("gcs.tf:") and "skip of CKV_GCP_78 has no real reason" in problems[0]


def test_checkov_reports_no_failed_check() -> None:
    report = run_checkov(TERRAFORM_DIR)
    assert checkov_problems(report) == []
    skipped = {check["check_id"] for check in report["results"]["skipped_checks"]}
    declared = {
        match.group(1)
        for path in TERRAFORM_DIR.glob("*.tf")
        for match in _SKIP_COMMENT.finditer(path.read_text(encoding="utf-8"))
    }
    assert skipped == declared  # no stale skip, no skip that checkov did not see


def test_checkov_catches_an_insecure_change(broken_copy: Callable[[str, str, str], Path]) -> None:
    copy = broken_copy(
        "gcs.tf", 'public_access_prevention    = "enforced"', 'public_access_prevention    = "inherited"'
    )
    copy = broken_copy("cloudsql.tf", "ipv4_enabled    = false", "ipv4_enabled    = true")
    problems = checkov_problems(run_checkov(copy))
    assert any(problem.startswith("CKV_GCP_114 failed") for problem in problems), problems
    assert any(problem.startswith("CKV_GCP_60 failed") for problem in problems), problems
