"""The import contracts in ``pyproject.toml`` hold on the tree, and each one fails when broken.

``lint-imports`` (import-linter) runs on the real tree, then on copies of the three root packages
(``velocast``, ``velocast_serving``, the DAG files) with one forbidden import added: the check must
exit non-zero and name the broken contract. A contract that cannot fail would be no check at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.architecture.allowed_imports import is_allowed, module_level_imports

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
DAG_FILE = "airflow/dags/ingest_bike_counts.py"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The copy's packages first; the repository root for the custom contract type (tests.architecture).
    paths = [root / "include", root / "serving", REPO]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _contract_status(output: str) -> dict[str, str]:
    """``{contract name: "KEPT" | "BROKEN"}`` from lint-imports' report (names may wrap lines)."""
    report = output.split("Broken contracts", maxsplit=1)[0]
    flat = " ".join(report.split())
    names = _contract_names()
    return {name: ("BROKEN" if f"{name} BROKEN" in flat else "KEPT") for name in names if name in flat}


def _contract_names() -> list[str]:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [contract["name"] for contract in config["tool"]["importlinter"]["contracts"]]


def _contract_name(contract_id: str) -> str:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return next(c["name"] for c in config["tool"]["importlinter"]["contracts"] if c["id"] == contract_id)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.parquet", "*.pyc")
    for part in ("include/velocast", "serving/velocast_serving", "airflow/dags"):
        shutil.copytree(REPO / part, root / part, ignore=ignore)
    return root


def test_the_tree_keeps_every_contract() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    status = _contract_status(result.stdout)
    assert set(status) == set(_contract_names()), result.stdout
    assert set(status.values()) == {"KEPT"}


# (contract id, file in the copy, code appended to it)
BREAKS = [
    ("shared-without-airflow", "include/velocast/ml/features.py", "import airflow\n"),
    # Indirect: data reaches Airflow through the provider hooks.
    ("shared-without-airflow", "include/velocast/data/sql.py", "import velocast.gcp.hooks\n"),
    ("shared-without-airflow", "include/velocast/exporter/__init__.py", "from airflow.sdk import Asset\n"),
    ("shared-without-airflow", "include/velocast/predict/days.py", "import airflow\n"),
    ("ml-without-tools", "include/velocast/ml/models.py", "import velocast.ingest\n"),
    ("ml-without-tools", "include/velocast/ml/evaluation.py", "import velocast.predict\n"),
    ("ml-without-tools", "include/velocast/ml/registry.py", "import velocast.cli\n"),
    ("sidecar-without-airflow", "serving/velocast_serving/main.py", "import airflow.models\n"),
    ("sidecar-without-airflow", "serving/velocast_serving/main.py", "import velocast.ingest\n"),
    ("sidecar-routes", "serving/velocast_serving/api/train.py", "from velocast_serving.api import admin\n"),
    ("shared-without-airflow", "include/velocast/cli/ml.py", "import velocast.ingest.steps\n"),
    ("dag-files", DAG_FILE, "import pandas\n"),
    ("dag-files", DAG_FILE, "from airflow.models import DAG\n"),
    ("layers", "include/velocast/data/sql.py", "import velocast.ml\n"),
    ("layers", "include/velocast/gcp/clients.py", "import velocast.ingest\n"),
]


@pytest.mark.parametrize(
    ("contract_id", "path", "code"), BREAKS, ids=[f"{b[0]}:{b[2].strip()}" for b in BREAKS]
)
def test_a_broken_contract_fails_the_check(tree_copy: Path, contract_id: str, path: str, code: str) -> None:
    target = tree_copy / path
    original = target.read_text()
    target.write_text(original + "\n" + code)
    try:
        result = _lint_imports(tree_copy)
    finally:
        target.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _contract_status(result.stdout)[_contract_name(contract_id)] == "BROKEN", result.stdout


def test_a_dag_file_may_import_anything_inside_a_task(tree_copy: Path) -> None:
    target = tree_copy / DAG_FILE
    original = target.read_text()
    target.write_text(original + "\n\ndef _lazy() -> None:\n    import pandas  # noqa: F401\n")
    try:
        result = _lint_imports(tree_copy)
    finally:
        target.write_text(original)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("from airflow.sdk import dag, task", ["airflow.sdk"]),
        ("import pendulum", ["pendulum"]),
        ("import os.path, json as j", ["os.path", "json"]),
        ("from . import sibling", ["."]),
        ("from .helpers import x", [".helpers"]),
        ("import pandas  # noqa: F401", ["pandas"]),
        ("x = 1", []),
    ],
)
def test_imported_names(line: str, names: list[str]) -> None:
    assert [statement.module for statement in module_level_imports(line)] == names


def test_is_allowed() -> None:
    allowed = {"airflow.sdk", "velocast"}
    assert is_allowed("airflow.sdk", allowed, standard_library=True)
    assert is_allowed("airflow.sdk.definitions.asset", allowed, standard_library=True)
    assert is_allowed("velocast.ingest.steps", allowed, standard_library=True)
    assert is_allowed("datetime", allowed, standard_library=True)
    assert not is_allowed("datetime", allowed, standard_library=False)
    assert not is_allowed("airflow.models", allowed, standard_library=True)
    assert not is_allowed("airflow", allowed, standard_library=True)
    assert not is_allowed("velocastx", allowed, standard_library=True)
    assert not is_allowed("pendulum", allowed, standard_library=True)
    assert not is_allowed(".helpers", allowed, standard_library=True)


def test_imports_inside_functions_are_not_module_level() -> None:
    source = (
        "import os\n"
        "from airflow.sdk import (\n"
        "    dag,\n"
        ")\n"
        "def task() -> None:\n"
        "    import pandas\n"
        "    from velocast.ingest import (\n"
        "        steps,\n"
        "    )\n"
        "class Holder:\n"
        "    import json\n"
    )
    found = module_level_imports(source)
    assert [(s.line_number, s.module) for s in found] == [(1, "os"), (2, "airflow.sdk"), (11, "json")]
    assert found[1].line_contents == "from airflow.sdk import ("
