"""pyfunc, without MLflow's server: model URIs, and the input form the pyfunc accepts."""

from __future__ import annotations

import pandas as pd
import pytest

from velocast.ml.model_base import ModelError
from velocast.ml.pyfunc import input_example, parse_model_uri, prediction_frame


def test_model_uris() -> None:
    assert parse_model_uri("models:/velocast-bike-traffic-hgb/3").version == 3
    uri = parse_model_uri("models:/velocast-bike-traffic-hgb@champion-dev")
    assert (uri.name, uri.version, uri.alias) == ("velocast-bike-traffic-hgb", None, "champion-dev")
    with pytest.raises(ValueError, match="runs:/"):
        parse_model_uri("runs:/abc/model")


def test_the_input_example_round_trips_through_the_prediction_frame() -> None:
    times = pd.date_range("2024-03-01 08:00", periods=3, freq="h", tz="Europe/Paris")
    frame = pd.DataFrame({"counter_id": ["a", "b", "c"], "counted_at": times, "hourly_count": [1, 2, 3]})
    example = input_example(frame)
    assert list(example.columns) == ["counter_id", "counted_at"]
    assert example["counted_at"].iloc[0] == "2024-03-01T07:00:00Z"
    rebuilt = prediction_frame(example)
    assert rebuilt["counted_at"].tolist() == times.tz_convert("UTC").tolist()
    assert str(rebuilt["counter_id"].dtype) == "string"


def test_times_without_a_zone_are_refused() -> None:
    with pytest.raises(ModelError, match="no UTC offset"):
        prediction_frame(pd.DataFrame({"counter_id": ["a"], "counted_at": ["2024-03-01T08:00:00"]}))
    naive = pd.DataFrame({"counter_id": ["a"], "counted_at": [pd.Timestamp("2024-03-01 08:00")]})
    with pytest.raises(ModelError, match="naive datetime"):
        prediction_frame(naive)
    with pytest.raises(ModelError, match="lacks the columns"):
        prediction_frame(pd.DataFrame({"counter_id": ["a"]}))
