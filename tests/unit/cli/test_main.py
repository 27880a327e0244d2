from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from velocast.cli import main as cli
from velocast.cli.main import build_parser, main, run_handler
from velocast.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    RequestError,
    UnavailableError,
    VelocastError,
)
from velocast.settings import VelocastSettings


def raising(error: BaseException) -> cli.Handler:
    def handler(args: argparse.Namespace, settings: VelocastSettings) -> int:
        raise error

    return handler


class Request(BaseModel):
    days: int


def validation_error() -> ValidationError:
    try:
        Request.model_validate({"days": "many"})
    except ValidationError as error:
        return error
    raise AssertionError("unreachable")


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["launch"])
    assert exit_info.value.code == 2


def test_the_parser_has_every_command_group_and_a_handler_per_command() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {
        "stack",
        "airflow",
        "serving",
        "demo",
        "baseline",
        "train",
        "evaluate",
        "promote",
        "backtest",
        "exporter",
    }
    args = parser.parse_args(["stack", "env", "--airflow"])
    assert args.handler.__name__ == "cmd_stack_env" and args.airflow
    assert parser.parse_args(["airflow", "status"]).handler.__name__ == "cmd_airflow_status"
    assert parser.parse_args(["serving", "up", "--no-champion"]).handler.__name__ == "cmd_serving_up"
    assert parser.parse_args(["promote", "--model-type", "hgb", "--run-id", "r"]).handler.__name__ == (
        "cmd_promote"
    )
    assert parser.parse_args(["demo"]).handler.__name__ == "cmd_demo"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RequestError("bad request"), 2),
        (NotFoundError("no such run"), 2),
        (ConflictError("a job is running"), 2),
        (UnavailableError("GCS is down"), 1),
        (ConfigurationError("insecure"), 1),
        (VelocastError("a bug"), 1),
    ],
)
def test_errors_are_mapped_by_family(
    error: VelocastError, status: int, capsys: pytest.CaptureFixture[str], settings: VelocastSettings
) -> None:
    assert run_handler(raising(error), argparse.Namespace(), settings) == status
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": str(error), "type": type(error).__name__}
    assert captured.err == f"error: {error}\n"


def test_a_subclass_is_mapped_by_its_family(
    capsys: pytest.CaptureFixture[str], settings: VelocastSettings
) -> None:
    class UnknownThingError(NotFoundError, LookupError):
        pass

    assert run_handler(raising(UnknownThingError("gone")), argparse.Namespace(), settings) == 2
    assert json.loads(capsys.readouterr().out)["type"] == "UnknownThingError"


def test_a_validation_error_is_a_request_error_with_details(
    capsys: pytest.CaptureFixture[str], settings: VelocastSettings
) -> None:
    assert run_handler(raising(validation_error()), argparse.Namespace(), settings) == 2
    payload: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert payload["type"] == "ValidationError"
    assert payload["details"][0]["loc"] == ["days"]


def test_errors_outside_the_families_keep_their_traceback(settings: VelocastSettings) -> None:
    with pytest.raises(KeyError):
        run_handler(raising(KeyError("a bug")), argparse.Namespace(), settings)


def test_settings_the_environment_cannot_give_are_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_settings() -> VelocastSettings:
        raise validation_error()

    monkeypatch.setattr(cli, "get_settings", broken_settings)
    assert main(["stack", "status"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["type"] == "ConfigurationError"
    assert "the settings cannot be read from the environment" in payload["error"]
