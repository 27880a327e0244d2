"""``velocast backtest``: files written, JSON printed, and bad requests refused before any fit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.unit.ml.real_slice import COUNTERS, PARQUET
from velocast.cli.main import main

FAST = '{"max_iter": 20, "min_samples_leaf": 20, "interval_calibration_days": 7}'


@pytest.fixture(scope="module")
def raw_export(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three months of five real counters, as the raw export's columns (what a user would pass)."""
    raw = pd.read_parquet(
        shared_data / PARQUET,
        filters=[
            ("id_compteur", "in", COUNTERS[:3]),
            ("annee_comptage", "=", 2023),
            ("mois_comptage", "in", [1, 2, 3]),
        ],
    )
    path = tmp_path_factory.mktemp("backtest") / "counts.parquet"
    raw.to_parquet(path, index=False)
    return path


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "backtest",
        "--data",
        str(data),
        "--train-until",
        "2023-03-06",
        "--from",
        "2023-03-06",
        "--to",
        "2023-03-20",
        "--hyperparams",
        FAST,
        "--out",
        str(out),
        *extra,
    ]


def test_backtest_writes_the_predictions_and_the_metrics_it_prints(
    raw_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_argv(raw_export, tmp_path / "out", "--horizon-days", "3", "--lag-days", "1")) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == printed
    assert printed["window"] == {
        "train_until": "2023-03-06",
        "from": "2023-03-06",
        "to": "2023-03-20",
        "lag_days": 1,
        "horizon_days": 3,
    }
    assert printed["data"] == str(raw_export)
    assert set(printed["by_horizon"]) == {"1", "2", "3"}
    predictions = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert len(predictions) == printed["forecast_rows"]
    assert sorted(predictions["horizon_days"].unique()) == [1, 2, 3]
    assert set(predictions["counter_id"]) == set(COUNTERS[:3])
    assert "fitting hgb" in captured.err and "scoring" in captured.err  # progress on stderr


@pytest.mark.parametrize(
    ("extra", "error_type", "message"),
    [
        (["--hyperparams", '{"no_such_knob": 1}'], "InvalidHyperparametersError", "no_such_knob"),
        (["--model-type", "prophet"], "UnknownModelTypeError", "unknown model type"),
        (["--hyperparams", "[1]"], "RequestError", "must be a JSON object"),
        (["--to", "2023-03-01"], "BacktestError", "train_until ≤ from < to"),
    ],
)
def test_a_bad_request_is_refused_before_the_data_is_read(
    extra: list[str], error_type: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The data file does not exist: the request is refused for its own fault first.
    assert main([*_argv(tmp_path / "absent.parquet", tmp_path / "out"), *extra]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["type"] == error_type
    assert message in error["error"]
    assert not (tmp_path / "out").exists()


def test_a_missing_data_file_is_a_request_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_argv(tmp_path / "absent.parquet", tmp_path / "out")) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["type"] == "NotFoundError"
    assert "absent.parquet" in error["error"]
