"""A broken counter is a data problem: left out of the fit (``drop_broken_runs``), its forecasts keep
its normal level (the real Champs-Élysées counter that read 0 from November 2023)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.ml.real_slice import PARQUET
from velocast.data.normalize import normalize
from velocast.ml.calendar import local_clock, utc_nanoseconds
from velocast.ml.forecast import forecast
from velocast.ml.models import HistGradientBoostingModel, build_model

BROKEN = "100056038-101056038"  # 44 avenue des Champs-Élysées SE-NO: zeros from 2023-11-08 03:00
HEALTHY = ["100003096-353242251", "100007049-101007049", "100006300-101006300"]
FAST = {"max_iter": 40, "min_samples_leaf": 20, "interval_calibration_days": 7}


@pytest.fixture(scope="module")
def counts(shared_data: Path) -> pd.DataFrame:
    raw = pd.read_parquet(
        shared_data / PARQUET,
        filters=[
            ("id_compteur", "in", [BROKEN, *HEALTHY]),
            ("annee_comptage", "=", 2023),
            ("mois_comptage", "in", [9, 10, 11]),
        ],
    )
    return normalize(raw).frame[["counter_id", "counter_name", "counted_at", "hourly_count"]]


def local_day(frame: pd.DataFrame) -> np.ndarray:
    return local_clock(utc_nanoseconds(frame["counted_at"]))[1].astype(np.int64)


def day_number(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


def december_rows(counter: str, first_day: str = "2023-12-04") -> pd.DataFrame:
    hours = pd.date_range(first_day, periods=24 * 5, freq="h", tz="Europe/Paris")  # Mon → Fri
    return pd.DataFrame({"counter_id": counter, "counted_at": hours.tz_convert("UTC")})


@pytest.fixture(scope="module")
def cleaned(counts: pd.DataFrame) -> HistGradientBoostingModel:
    model = build_model("hgb", {**FAST, "history": True, "drop_broken_runs": True}).fit(counts)
    assert isinstance(model, HistGradientBoostingModel)
    return model


def test_the_broken_run_is_left_out_of_the_fit_and_the_counter_keeps_its_level(
    counts: pd.DataFrame, cleaned: HistGradientBoostingModel
) -> None:
    # The dying days (a few bikes an hour), then the zeros.
    collapsed, run = cleaned.broken_runs
    assert collapsed.counter == BROKEN and collapsed.kind == "collapsed"
    assert (collapsed.first_day, collapsed.last_day) == (day_number("2023-11-04"), day_number("2023-11-07"))
    assert run.counter == BROKEN and run.kind == "zeros"
    assert (run.first_day, run.first_hour) == (day_number("2023-11-08"), 3)
    assert "has read 0 for 19.5 days" in run.message()
    assert cleaned.training_summary is not None
    broken_rows = (counts["counter_id"] == BROKEN) & (local_day(counts) >= day_number("2023-11-08"))
    assert cleaned.training_summary.rows < len(counts) - broken_rows.sum() + 24  # its zeros are out

    october = counts[(counts["counter_id"] == BROKEN) & (counts["counted_at"].dt.month == 10)]
    normal = october["hourly_count"].mean()
    kept = build_model("hgb", FAST).fit(counts)  # the default keeps them
    assert kept.broken_runs == ()  # type: ignore[attr-defined]
    # The case: taken at face value, the zeros pin every future hour near 0.
    assert kept.predict(december_rows(BROKEN)).mean() < 0.2 * normal
    assert cleaned.predict(december_rows(BROKEN)).mean() > 0.6 * normal
    # The healthy counters are not touched.
    for counter in HEALTHY:
        healthy = cleaned.predict(december_rows(counter)).mean()
        assert healthy == pytest.approx(kept.predict(december_rows(counter)).mean(), rel=0.25)


def test_a_broken_week_is_skipped_and_flagged_in_the_forecasts_after_it(
    counts: pd.DataFrame, cleaned: HistGradientBoostingModel
) -> None:
    targets = pd.concat([december_rows(BROKEN), december_rows(HEALTHY[0])], ignore_index=True)
    result = forecast(cleaned, targets, counts, day_number("2023-11-27"))  # the zeros' last day
    broken = (targets["counter_id"] == BROKEN).to_numpy()
    assert result.recent_broken[broken].all() and not result.recent_broken[~broken].any()
    # Its last weeks are all broken: no history is read, its calendar forecast (normal level) stands.
    assert not result.history_used[broken].any() and result.history_used[~broken].all()
    assert np.array_equal(result.values[broken], result.calendar_values[broken])
    # Forecasts whose week before the cut-off is clear of the run are not flagged.
    later = forecast(cleaned, december_rows(BROKEN, "2023-12-18"), counts, day_number("2023-12-17"))
    assert not later.recent_broken.any()


def test_what_is_broken_is_known_from_the_days_up_to_each_cut_off_only(
    counts: pd.DataFrame, cleaned: HistGradientBoostingModel
) -> None:
    november = counts[(counts["counted_at"] >= pd.Timestamp("2023-11-01", tz="Europe/Paris"))]
    targets = november[["counter_id", "counted_at"]].reset_index(drop=True)
    cut_offs = local_day(targets) - 3
    base = forecast(cleaned, targets, counts, cut_offs)
    assert base.recent_broken.any() and not base.recent_broken.all()
    history_day = local_day(counts)
    for cut in (day_number("2023-11-06"), day_number("2023-11-09"), day_number("2023-11-20")):
        group = cut_offs == cut
        changed = counts.copy()
        after = history_day > cut
        changed.loc[after, "hourly_count"] = changed.loc[after, "hourly_count"] * 10 + 1000
        for history in (changed, counts[~after]):
            moved = forecast(cleaned, targets, history, cut_offs)
            for name in ("values", "lower", "upper", "history_used", "recent_broken"):
                assert np.array_equal(
                    getattr(moved, name)[group], getattr(base, name)[group], equal_nan=True
                ), (
                    cut,
                    name,
                )


def test_without_broken_cells_the_windowed_features_are_the_full_grid_s(
    counts: pd.DataFrame, cleaned: HistGradientBoostingModel
) -> None:
    import velocast.ml.forecast as forecast_module

    healthy = counts[counts["counter_id"].isin(HEALTHY)].reset_index(drop=True)
    stage = cleaned.history_stage
    assert stage is not None
    history = forecast_module.prepare_history(cleaned, healthy)
    assert history.broken is not None  # a drop_broken_runs model
    targets = history.rows["counted_at"] >= pd.Timestamp("2023-11-10", tz="Europe/Paris")
    rows, utc_ns = history.located.subset(targets.to_numpy()), history.utc_ns[targets.to_numpy()]
    cut_offs = rows.day - 3
    calendar = cleaned.predict(history.rows[targets])
    windowed, flags = forecast_module._stage_forecast(stage, rows, utc_ns, calendar, history, cut_offs)
    whole_grid = dataclasses.replace(history, broken=None)
    whole, _ = forecast_module._stage_forecast(stage, rows, utc_ns, calendar, whole_grid, cut_offs)
    assert not any(history.broken.window(cut)[2].runs for cut in np.unique(cut_offs).tolist())
    # The same forecasts: sums over a 35-day window round differently from sums over the whole
    # grid (in the last bits), which can move a value across a tree's threshold, rarely.
    differ = ~np.isclose(windowed.values, whole.values, rtol=1e-12, atol=0)
    assert differ.mean() < 0.01 and not flags.any()
