"""models: the types and their hyper-parameter allow-lists, fit/predict on a real slice, the level
factor of hgb (what every type shares is tested in test_model_base.py)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.unit.ml.real_slice import COUNTERS, FAST, UNSEEN
from velocast.ml.model_base import InvalidHyperparametersError
from velocast.ml.models import (
    DEFAULT_MODEL_TYPE,
    MODEL_TYPES,
    HistGradientBoostingModel,
    RandomForestModel,
    UnknownModelTypeError,
    build_model,
    default_hyperparams,
    hyperparams_json_schema,
    validate_hyperparams,
)


def r2(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(1 - ((actual - predicted) ** 2).sum() / ((actual - actual.mean()) ** 2).sum())


# --- model types and hyper-parameters ----------------------------------------------------------


def test_types_and_default() -> None:
    assert set(MODEL_TYPES) == {"rf", "hgb"}
    assert DEFAULT_MODEL_TYPE == "hgb"
    assert isinstance(build_model(), HistGradientBoostingModel)
    assert isinstance(build_model("rf"), RandomForestModel)


def test_unknown_model_type_raises() -> None:
    with pytest.raises(
        UnknownModelTypeError, match=r"unknown model type 'xgb'; known types: hgb, rf"
    ) as info:
        build_model("xgb")
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownModelTypeError):
        validate_hyperparams("", {})


def test_rf_defaults_are_the_original_model() -> None:
    params = default_hyperparams("rf")
    assert (params["n_estimators"], params["max_depth"]) == (50, 20)


def test_hgb_defaults_fill_in_and_schema_is_exposed() -> None:
    params = validate_hyperparams("hgb", {"learning_rate": 0.05})
    assert params["learning_rate"] == 0.05
    assert params["loss"] == "squared_error" and params["max_iter"] == 150
    assert "learning_rate" in hyperparams_json_schema("hgb")["properties"]


@pytest.mark.parametrize(
    ("model_type", "hyperparams", "fragments"),
    [
        ("rf", {"n_trees": 10}, ["n_trees: unknown hyperparameter", "allowed: n_estimators"]),
        ("rf", {"n_estimators": 0}, ["n_estimators: Input should be greater than or equal to 1 (got 0)"]),
        ("rf", {"n_estimators": True}, ["n_estimators: Input should be a valid integer (got True)"]),
        ("rf", {"n_estimators": 10.0}, ["n_estimators: Input should be a valid integer"]),
        ("rf", {"max_depth": 0}, ["max_depth"]),
        ("rf", {"max_features": 1.5}, ["max_features: Input should be less than or equal to 1"]),
        ("rf", {"n_jobs": -2}, ["n_jobs: Input should be greater than or equal to -1"]),
        ("rf", {"n_jobs": 0}, ["n_jobs: Value error, n_jobs is -1 (every core) or a number of workers"]),
        ("hgb", {"learning_rate": 0}, ["learning_rate: Input should be greater than 0 (got 0)"]),
        ("hgb", {"learning_rate": "0.1"}, ["learning_rate: Input should be a valid number (got '0.1')"]),
        ("hgb", {"learning_rate": float("nan")}, ["learning_rate"]),
        ("hgb", {"loss": "absolute_error"}, ["loss: Input should be 'squared_error' or 'poisson'"]),
        ("hgb", {"max_iter": 10_000}, ["max_iter: Input should be less than or equal to 1000 (got 10000)"]),
        ("hgb", {"level_window_days": -1}, ["level_window_days"]),
        ("hgb", {"recency_half_life_days": 0}, ["recency_half_life_days"]),
        ("hgb", {"n_estimators": 50}, ["n_estimators: unknown hyperparameter"]),
        ("hgb", ["max_iter", 10], ["(root): expected an object, got list"]),
    ],
)
def test_bad_hyperparams_are_refused_precisely(
    model_type: str, hyperparams: Any, fragments: list[str]
) -> None:
    with pytest.raises(InvalidHyperparametersError) as info:
        build_model(model_type, hyperparams)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.model_type == model_type
    message = str(error)
    assert message.startswith(f"invalid hyperparameters for model type {model_type!r}: ")
    for fragment in fragments:
        assert fragment in message
    assert error.errors and all({"name", "message"} <= set(problem) for problem in error.errors)


# The resource ceiling: what would exhaust the machine on a year of hourly counts is refused, with
# the field and the bound in the message; the bounds themselves are allowed.
CEILINGS = [
    ("rf", "n_estimators", 100, 100_000, "less than or equal to 100"),
    ("rf", "max_depth", 30, 31, "less than or equal to 30"),
    ("rf", "max_depth", 30, None, "max_depth must be an integer from 1 to 30: None (unlimited)"),
    ("hgb", "max_iter", 1000, 1001, "less than or equal to 1000"),
    ("hgb", "max_leaf_nodes", 1024, 4096, "less than or equal to 1024"),
]


@pytest.mark.parametrize(("model_type", "name", "bound", "beyond", "fragment"), CEILINGS)
def test_hyperparameters_have_a_resource_ceiling(
    model_type: str, name: str, bound: int, beyond: int | None, fragment: str
) -> None:
    assert validate_hyperparams(model_type, {name: bound})[name] == bound
    with pytest.raises(InvalidHyperparametersError) as info:
        validate_hyperparams(model_type, {name: beyond})
    [problem] = info.value.errors
    assert problem["name"] == name
    assert fragment in problem["message"] and f"(got {beyond!r})" in problem["message"]
    assert f"{name}: " in str(info.value)


def test_the_ceiling_is_in_the_published_schema() -> None:
    rf = hyperparams_json_schema("rf")["properties"]
    assert rf["n_estimators"]["maximum"] == 100 and rf["max_depth"]["maximum"] == 30
    assert "anyOf" not in rf["max_depth"]  # an integer: no null
    hgb = hyperparams_json_schema("hgb")["properties"]
    assert hgb["max_iter"]["maximum"] == 1000 and hgb["max_leaf_nodes"]["maximum"] == 1024


def test_every_problem_is_listed() -> None:
    with pytest.raises(InvalidHyperparametersError) as info:
        validate_hyperparams("hgb", {"max_iter": 0, "learning_rate": 2, "foo": 1})
    assert sorted(problem["name"] for problem in info.value.errors) == ["foo", "learning_rate", "max_iter"]


# --- fit / predict on real data ----------------------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_fit_predict_on_a_real_slice(model_type: str, train: pd.DataFrame, test_frame: pd.DataFrame) -> None:
    seen = test_frame[test_frame["counter_id"] != UNSEEN]
    assert train["counter_id"].nunique() == 5 and len(train) > 4000
    model = build_model(model_type, FAST[model_type])
    started = time.perf_counter()
    model.fit(train)
    predicted = model.predict(seen)
    assert time.perf_counter() - started < 10
    assert predicted.shape == (len(seen),)
    assert predicted.dtype == np.float64
    assert np.isfinite(predicted).all() and (predicted >= 0).all()
    # The daily and weekly profile is learnt: far better than the mean.
    assert r2(seen["hourly_count"].to_numpy(dtype=float), predicted) > 0.6
    assert model.training_summary is not None and model.training_summary.counters == 5
    assert model.training_summary.rows == len(train)
    assert len(model.feature_names) == (len(COUNTERS) if model_type == "rf" else 1) + 12


def test_a_counter_that_broke_down_keeps_its_level_unless_its_zeros_are_kept(
    train: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    # The first counter reads 0 during the last week of training, as when a sensor fails.
    broken = train.copy()
    last_week = broken["counted_at"] >= broken["counted_at"].max() - pd.Timedelta(days=7)
    broken.loc[last_week & (broken["counter_id"] == COUNTERS[0]), "hourly_count"] = 0
    target = test_frame[test_frame["counter_id"] == COUNTERS[0]]
    without = build_model("hgb", {**FAST["hgb"], "level_window_days": 0}).fit(broken).predict(target).mean()
    # Taken at face value, the zeros make the level factor pin the counter near 0 …
    kept = build_model("hgb", {**FAST["hgb"], "level_window_days": 7}).fit(broken)  # the default
    assert kept.predict(target).mean() < 0.2 * without
    # … left out as a broken run, the counter keeps the level of its days before.
    cleaned = build_model("hgb", {**FAST["hgb"], "level_window_days": 7, "drop_broken_runs": True}).fit(
        broken
    )
    assert [(run.counter, run.kind) for run in cleaned.broken_runs] == [(COUNTERS[0], "zeros")]  # type: ignore[attr-defined]
    assert cleaned.predict(target).mean() > 0.6 * without
