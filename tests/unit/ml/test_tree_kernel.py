"""The compiled trees (``velocast.ml.tree_kernel``) give scikit-learn's own predictions, bit for bit.

Models are fitted on real counts (8 counters, January → September 2023) and held to
``predict_reference`` (features as a frame, ``estimator.predict``) on the rows of October 2023 →
February 2024 and on both clock-change days of 2023, with public holidays, an unseen and a null
counter, timestamps that are not on the hour, every batch size the kernel treats apart, and every
kind of model it compiles (32-bit and 64-bit leaf masks, Poisson loss) or declines (> 64 leaves).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from tests.unit.ml.real_slice import COUNTERS as SLICE_COUNTERS
from tests.unit.ml.real_slice import PARQUET, UNSEEN
from velocast.data.normalize import normalize
from velocast.ml.features import feature_arrays
from velocast.ml.model_base import VelocastModel, load_model
from velocast.ml.models import HistGradientBoostingModel, build_model
from velocast.ml.tree_kernel import PYTHON_SUM_ROWS, CompiledBoosting

COUNTERS = [*SLICE_COUNTERS, "100036719-104036719", "100044493-101044493", "100042374-109042374"]
SPLIT = pd.Timestamp("2023-10-01", tz="Europe/Paris")
CLOCK_CHANGES = ("2023-03-26", "2023-10-29")


@pytest.fixture(scope="module")
def counts(shared_data: Path) -> pd.DataFrame:
    raw = pd.read_parquet(shared_data / PARQUET, filters=[("id_compteur", "in", [*COUNTERS, UNSEEN])])
    frame = normalize(raw).frame
    assert set(frame["counter_id"]) == {*COUNTERS, UNSEEN}
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def train(counts: pd.DataFrame) -> pd.DataFrame:
    return counts[(counts["counted_at"] < SPLIT) & (counts["counter_id"] != UNSEEN)]


@pytest.fixture(scope="module")
def rows(counts: pd.DataFrame) -> pd.DataFrame:
    """Later rows, both clock-change days, an unseen and a null counter, off-the-hour instants."""
    local_day = counts["counted_at"].dt.tz_convert("Europe/Paris").dt.strftime("%Y-%m-%d")
    later = counts[(counts["counted_at"] >= SPLIT) | local_day.isin(CLOCK_CHANGES)]
    chosen: pd.DataFrame = later.sample(frac=1.0, random_state=7).reset_index(drop=True)  # any order
    chosen.loc[3, "counter_id"] = None
    chosen.loc[5, "counted_at"] += pd.Timedelta(minutes=59, seconds=59, microseconds=999_999)
    chosen.loc[8, "counted_at"] -= pd.Timedelta(seconds=1)
    assert (chosen["counter_id"] == UNSEEN).any()
    return chosen


_FITTED: dict[str, VelocastModel] = {}


def fitted(train: pd.DataFrame, name: str, hyperparams: dict[str, Any]) -> VelocastModel:
    if name not in _FITTED:
        _FITTED[name] = build_model("hgb", {"max_iter": 40, **hyperparams}).fit(train)
    return _FITTED[name]


MODELS: dict[str, dict[str, Any]] = {
    "default": {"max_iter": 150},
    "poisson": {"loss": "poisson"},
    "48 leaves": {"max_leaf_nodes": 48, "min_samples_leaf": 20},
    "100 leaves": {"max_leaf_nodes": 100, "min_samples_leaf": 5},
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_batch_size_predicts_what_the_estimator_predicts(
    train: pd.DataFrame, rows: pd.DataFrame, name: str
) -> None:
    model = fitted(train, name, MODELS[name])
    assert isinstance(model, HistGradientBoostingModel)
    reference = model.predict_reference(rows)
    assert np.array_equal(model.predict(rows), reference)  # every row at once: a day-hour table
    for size in (1, PYTHON_SUM_ROWS, PYTHON_SUM_ROWS + 1, 100):  # summed in Python / a few days
        for start in range(0, 5 * size, size):
            part = rows.iloc[start : start + size]
            assert np.array_equal(model.predict(part), reference[start : start + size]), (size, start)


def test_the_compiled_forms_are_the_ones_expected(train: pd.DataFrame) -> None:
    def compiled(name: str) -> CompiledBoosting | None:
        model = fitted(train, name, MODELS[name])
        assert isinstance(model, HistGradientBoostingModel) and model.estimator is not None
        return CompiledBoosting.compile(model.estimator, model.encoder.n_counters if model.encoder else 0)

    default = compiled("default")
    assert default is not None and default.mask_dtype is np.uint32 and default.n_trees == 150
    wide = compiled("48 leaves")
    assert wide is not None and wide.mask_dtype is np.uint64
    assert compiled("100 leaves") is None  # the estimator's own predict serves it


def test_report_and_values_of_unknown_and_null_counters(train: pd.DataFrame, rows: pd.DataFrame) -> None:
    model = fitted(train, "default", MODELS["default"])
    report = model.predict_with_report(rows.iloc[:10])
    unseen = rows.iloc[:10]["counter_id"] == UNSEEN
    assert report.unseen_counter_rows == int(unseen.sum()) + 1  # and the null id of row 3
    assert report.unseen_counters == ((UNSEEN,) if unseen.any() else ())
    features = feature_arrays(rows.iloc[:10], model.encoder)  # type: ignore[arg-type]
    assert features.codes[3] == -1


def test_the_compiled_trees_are_not_saved_and_rebuilt_after_a_load(
    train: pd.DataFrame, rows: pd.DataFrame, tmp_path: Path
) -> None:
    model = fitted(train, "default", MODELS["default"]).prepare()
    assert "_compiled_trees" in vars(model)
    assert "_compiled_trees" not in pickle.loads(pickle.dumps(model)).__dict__
    path = model.save(tmp_path / "model.joblib")
    assert "_compiled_trees" not in vars(joblib.load(path)["model"])
    loaded = load_model(path)
    assert "_compiled_trees" in vars(loaded)  # load_model prepares: the first request does not compile
    assert np.array_equal(loaded.predict(rows.iloc[:50]), model.predict_reference(rows.iloc[:50]))


def test_refitting_drops_the_trees_compiled_for_the_previous_fit(
    train: pd.DataFrame, rows: pd.DataFrame
) -> None:
    model = build_model("hgb", {"max_iter": 10}).fit(train.iloc[: len(train) // 2]).prepare()
    before = model.predict(rows.iloc[:20])
    model.fit(train)
    assert np.array_equal(model.predict(rows.iloc[:20]), model.predict_reference(rows.iloc[:20]))
    assert not np.array_equal(model.predict(rows.iloc[:20]), before)


def test_empty_frame(train: pd.DataFrame, rows: pd.DataFrame) -> None:
    model = fitted(train, "default", MODELS["default"])
    assert model.predict(rows.iloc[:0]).shape == (0,)
