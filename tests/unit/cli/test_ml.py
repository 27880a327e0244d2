from __future__ import annotations

import json
from pathlib import Path

import pytest

from velocast.cli.main import main


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


def test_train_refuses_hyperparameters_that_are_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--hyperparams", "{max_iter: 200}"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)
    assert error["type"] == "RequestError"
    assert error["error"].startswith("--hyperparams is not valid JSON")
    assert captured.err.startswith("error: --hyperparams is not valid JSON")


def test_train_refuses_unknown_hyperparameters_before_any_data_is_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--hyperparams", '{"no_such_knob": 1}']) == 2
    assert json.loads(capsys.readouterr().out)["type"] == "ValidationError"


@pytest.mark.parametrize(
    "argv",
    [
        ["baseline", "{missing}"],
        ["train", "--current", "{missing}"],
    ],
)
def test_a_missing_input_file_is_a_request_error(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.parquet"
    assert main([arg.format(missing=missing) for arg in argv]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["type"] == "NotFoundError"
    assert str(missing) in error["error"]


def test_evaluate_refuses_a_model_uri_it_cannot_load(capsys: pytest.CaptureFixture[str]) -> None:
    # Refused by parse_model_uri before any network call: no MLflow needed.
    assert main(["evaluate", "--model-uri", "runs:/abc/model"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["type"] == "ModelUriError"  # a RequestError: exit status 2
    assert "runs:/" in error["error"]


def test_promote_takes_a_known_environment_only() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["promote", "--model-type", "hgb", "--run-id", "r", "--env", "staging"])
    assert exit_info.value.code == 2
