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


@pytest.mark.stack
def test_stack_status_reports_every_service(
    local_stack: Any, mlflow_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stack", "status"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert {line.split()[0] for line in lines if line} == {"gcs", "bigquery", "replay", "mlflow"}
    assert all(line.split()[1] == "healthy" for line in lines if line)


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["launch"])
    assert exit_info.value.code == 2


def test_train_current_window_is_validated_before_any_data_is_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A naive start: refused with the field's name, exit status 2, nothing read or trained.
    assert main(["train", "--current-window", "2024-01-01T00:00", "2024-01-08T00:00Z"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["type"] == "ValidationError"
    assert error["details"][0]["loc"] == ["current_window", "start"]
    assert main(["train", "--current-window", "2024-02-01T00:00Z", "2024-01-01T00:00Z"]) == 2
    assert "must be after start" in json.loads(capsys.readouterr().out)["error"]


def test_train_takes_a_file_or_a_window_not_both() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["train", "--current", "x.parquet", "--current-window", "2024-01-01T00:00Z", "2024-01-08T00:00Z"]
        )
    assert exit_info.value.code == 2
