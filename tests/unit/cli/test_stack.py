from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from velocast.cli.main import main
from velocast.settings import VelocastSettings


def exported(output: str) -> dict[str, str]:
    pairs = [shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in output.splitlines()]
    return dict(pairs)


def test_stack_env_exports_what_the_google_clients_and_airflow_need(
    capsys: pytest.CaptureFixture[str], settings: VelocastSettings
) -> None:
    assert main(["stack", "env", "--airflow"]) == 0
    env = exported(capsys.readouterr().out)
    assert env["STORAGE_EMULATOR_HOST"] == f"http://127.0.0.1:{settings.gcs_emulator_port}"
    assert env["BIGQUERY_EMULATOR_HOST"] == f"http://127.0.0.1:{settings.bigquery_emulator_port}"
    connection = json.loads(env["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"])
    assert connection["extra"] == {"is_anonymous": True, "project": settings.gcp_project}
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(settings.airflow_dags_folder)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == settings.airflow_db_url


def test_stack_env_without_airflow_exports_the_stack_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stack", "env"]) == 0
    env = exported(capsys.readouterr().out)
    assert "STORAGE_EMULATOR_HOST" in env
    assert not any(name.startswith("AIRFLOW__") for name in env)  # Airflow's own settings


@pytest.mark.stack
def test_stack_status_reports_every_service(
    local_stack: Any, mlflow_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stack", "status"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert {line.split()[0] for line in lines if line} == {"gcs", "bigquery", "replay", "discord", "mlflow"}
    assert all(line.split()[1] == "healthy" for line in lines if line)


@pytest.mark.parametrize(
    "argv",
    [["stack"], ["stack", "launch"], ["airflow"], ["airflow", "env"], ["stack", "status", "--airflow"]],
)
def test_a_group_needs_one_of_its_actions(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
