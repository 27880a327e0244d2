"""model_base: what every type shares (save/load, unseen counters, rows without a count, errors of
use, empty predictions), checked on every type and a real slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.ml.real_slice import FAST, UNSEEN
from velocast.ml.model_base import ModelError, counter_names_of, load_model
from velocast.ml.models import MODEL_TYPES, build_model


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_save_load_round_trip(
    model_type: str, train: pd.DataFrame, test_frame: pd.DataFrame, tmp_path: Path
) -> None:
    model = build_model(model_type, FAST[model_type]).fit(train)
    path = model.save(tmp_path / "nested" / f"{model_type}.joblib")
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.model_type == model_type
    assert loaded.hyperparams == model.hyperparams
    assert loaded.feature_names == model.feature_names
    np.testing.assert_array_equal(loaded.predict(test_frame), model.predict(test_frame))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_unseen_counters_are_predicted_and_reported(
    model_type: str, train: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    model = build_model(model_type, FAST[model_type]).fit(train)
    report = model.predict_with_report(test_frame)
    unseen_rows = int((test_frame["counter_id"] == UNSEEN).sum())
    assert unseen_rows > 0
    assert report.unseen_counters == (UNSEEN,)
    assert report.unseen_counter_rows == unseen_rows
    assert report.values.shape == (len(test_frame),)
    assert (report.values >= 0).all() and np.isfinite(report.values).all()
    # The rows of known counters do not depend on the unseen ones being there.
    known = (test_frame["counter_id"] != UNSEEN).to_numpy()
    np.testing.assert_allclose(report.values[known], model.predict(test_frame[known]))


def test_rows_without_a_count_are_not_trained_on(train: pd.DataFrame) -> None:
    holes = train.copy()
    holes.loc[holes.index[::2], "hourly_count"] = pd.NA
    model = build_model("hgb", FAST["hgb"]).fit(holes)
    assert model.training_summary is not None
    assert model.training_summary.rows == len(train) - len(train.index[::2])


def test_errors_of_use(train: pd.DataFrame, tmp_path: Path) -> None:
    model = build_model("hgb")
    with pytest.raises(ModelError, match="not fitted"):
        model.predict(train)
    with pytest.raises(ModelError, match="not fitted"):
        model.save(tmp_path / "m.joblib")
    with pytest.raises(ModelError, match="no row"):
        model.fit(train.assign(hourly_count=pd.array([pd.NA] * len(train), dtype="Int64")))
    with pytest.raises(ModelError, match="hourly_count"):
        model.fit(train.drop(columns="hourly_count"))
    import joblib

    joblib.dump({"something": "else"}, tmp_path / "other.joblib")
    with pytest.raises(ModelError, match="not a velocast model file"):
        load_model(tmp_path / "other.joblib")


def test_empty_prediction(train: pd.DataFrame) -> None:
    model = build_model("hgb", FAST["hgb"]).fit(train)
    assert model.predict(train.iloc[:0]).shape == (0,)


def test_saved_files_name_the_model_types_by_their_module(train: pd.DataFrame, tmp_path: Path) -> None:
    # joblib pickles classes by module path: the files of the registry stay readable only while
    # the types live where they were saved from.
    path = build_model("hgb", FAST["hgb"]).fit(train).save(tmp_path / "hgb.joblib")
    assert b"velocast.ml.models" in path.read_bytes()
    assert b"HistGradientBoostingModel" in path.read_bytes()


# --- counter names (a client that knows a counter by its name only) ----------------------------


def test_fit_keeps_the_training_names_and_save_load_keeps_them(train: pd.DataFrame, tmp_path: Path) -> None:
    model = build_model("hgb", FAST["hgb"]).fit(train)
    pairs = train[["counter_name", "counter_id"]].drop_duplicates()
    expected = {
        str(name): tuple(sorted(group["counter_id"].astype(str)))
        for name, group in pairs.groupby("counter_name")
    }
    assert model.counter_names == expected
    assert set(model.counter_names or {}) == set(train["counter_name"].dropna())
    assert all(len(ids) == 1 for ids in (model.counter_names or {}).values())  # real names are unique here
    loaded = load_model(model.save(tmp_path / "hgb.joblib"))
    assert loaded.counter_names == model.counter_names


def test_names_shared_or_changed_map_to_every_id(train: pd.DataFrame) -> None:
    first, second = sorted(train["counter_id"].unique())[:2]
    renamed = train.copy()
    second_name = renamed.loc[renamed["counter_id"] == second, "counter_name"].iloc[0]
    # ``first`` carries its own name in half of its rows and ``second``'s name in the other half.
    first_rows = renamed.index[renamed["counter_id"] == first]
    renamed.loc[first_rows[::2], "counter_name"] = second_name
    own_name = train.loc[train["counter_id"] == first, "counter_name"].iloc[0]
    names = counter_names_of(renamed)
    assert names[second_name] == (first, second)
    assert names[own_name] == (first,)


def test_frames_without_names_and_files_saved_before_names(train: pd.DataFrame, tmp_path: Path) -> None:
    assert counter_names_of(train.drop(columns="counter_name")) == {}
    assert build_model("hgb", FAST["hgb"]).fit(train.drop(columns="counter_name")).counter_names == {}
    assert counter_names_of(train.assign(counter_name=pd.array([pd.NA] * len(train), dtype="string"))) == {}

    model = build_model("hgb", FAST["hgb"]).fit(train)
    # What a file written before names were kept unpickles to: no instance attribute at all.
    del model.__dict__["counter_names"]
    old = load_model(model.save(tmp_path / "old.joblib"))
    assert "counter_names" not in old.__dict__
    assert old.counter_names is None
    assert old.predict(train.iloc[:3]).shape == (3,)
