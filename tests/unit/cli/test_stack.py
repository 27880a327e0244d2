from __future__ import annotations

import argparse
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
    [
        ["stack"],
        ["stack", "launch"],
        ["airflow"],
        ["airflow", "env"],
        ["stack", "status", "--airflow"],
        ["serving"],
        ["serving", "restart"],
    ],
)
def test_a_group_needs_one_of_its_actions(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


@pytest.mark.stack
def test_serving_status_and_up_report_the_running_sidecar_and_its_champion(
    serving_sidecar: Any, sidecar_champion: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    champion = f"champion  {sidecar_champion.entry.model_type} run {sidecar_champion.entry.run_id}"
    assert main(["serving", "status"]) == 0
    assert capsys.readouterr().out.splitlines() == ["serving   healthy", champion]
    # Everything runs and a champion is registered: up starts and trains nothing.
    assert main(["serving", "up"]) == 0
    out = capsys.readouterr().out
    assert "(already registered)" in out and "started: none, it was running" in out
    assert out.splitlines()[-2:] == ["serving   healthy", champion]


def test_serving_status_and_down_without_a_sidecar(
    tmp_path: Any, settings: VelocastSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    from velocast.cli.stack import cmd_serving_down, cmd_serving_status

    elsewhere = settings.model_copy(update={"state_dir": tmp_path, "serving_port": 1})
    assert cmd_serving_status(argparse.Namespace(), elsewhere) == 1
    assert capsys.readouterr().out.splitlines() == ["serving   down"]
    assert cmd_serving_down(argparse.Namespace(), elsewhere) == 0
    assert capsys.readouterr().out == "stopped: nothing\n"
