"""Source data → metric families: registry documents, audit rows, ingestion log and predictions."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pytest

from tests.unit.exporter.metric_samples import names, samples, value
from velocast.exporter.catalog import DECISION_WINDOW_DAYS, DECISIONS
from velocast.exporter.families import (
    as_date,
    as_float,
    as_timestamp,
    decision_families,
    ingestion_families,
    new_family,
    prediction_families,
    registry_families,
    score_families,
)
from velocast.ml.registry import empty_summary


def entry(
    run_id: str, model_type: str, *, champion: bool, r2_current: float | None, **extra: Any
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "model_uri": f"models:/velocast/{run_id}",
        "model_type": model_type,
        "metrics": {
            "test_baseline": {"r2": 0.81, "rmse": 40.0, "mae": 20.0},
            "test_current": {"r2": r2_current, "rmse": 41.0, "mae": 21.0},
        },
        "data_window": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-31T00:00:00Z"},
        "created_at": "2024-02-01T12:00:00Z",
        "is_champion": champion,
        **extra,
    }


# --- registry ------------------------------------------------------------------------------------


def test_an_empty_registry_reports_no_champion_in_each_environment() -> None:
    found = samples(registry_families(empty_summary()))
    assert found == {
        ("velocast_registry_champions", (("env", "dev"),)): 0.0,
        ("velocast_registry_champions", (("env", "prod"),)): 0.0,
    }


def test_registry_champions_per_environment_and_model_type() -> None:
    doc = empty_summary()
    doc["environments"]["dev"]["models"] = [
        entry("old", "hgb", champion=False, r2_current=0.80),
        entry("best", "hgb", champion=True, r2_current=0.88),
        entry("forest", "rf", champion=False, r2_current=0.70),
    ]
    doc["environments"]["prod"]["models"] = [
        entry("p1", "hgb", champion=True, r2_current=None, test_mode=False),
    ]
    found = samples(registry_families(doc))

    assert value(found, "velocast_registry_entries", env="dev", model_type="hgb") == 2
    assert value(found, "velocast_registry_entries", env="dev", model_type="rf") == 1
    assert value(found, "velocast_registry_champions", env="dev") == 1
    assert value(found, "velocast_registry_champions", env="prod") == 1
    info = {labels for name, labels in found if name == "velocast_registry_champion_info"}
    assert info == {
        (("env", "dev"), ("model_type", "hgb"), ("run_id", "best"), ("test_mode", "false")),
        (("env", "prod"), ("model_type", "hgb"), ("run_id", "p1"), ("test_mode", "false")),
    }
    assert (
        value(found, "velocast_registry_champion_r2", env="dev", model_type="hgb", split="test_current")
        == 0.88
    )
    assert (
        value(found, "velocast_registry_champion_r2", env="dev", model_type="hgb", split="test_baseline")
        == 0.81
    )
    # An undefined R² (null in the registry) is an absent series, not 0 or NaN.
    assert (
        "velocast_registry_champion_r2",
        (("env", "prod"), ("model_type", "hgb"), ("split", "test_current")),
    ) not in found
    created = datetime(2024, 2, 1, 12, tzinfo=UTC).timestamp()
    assert (
        value(found, "velocast_registry_champion_created_timestamp_seconds", env="dev", model_type="hgb")
        == created
    )
    # rf has entries but no champion: no champion series for it.
    assert not any(dict(labels).get("model_type") == "rf" for name, labels in found if "champion" in name)


# --- model_decisions ------------------------------------------------------------------------------

TODAY = date(2024, 3, 31)


def decision(
    run_id: str,
    run_date: str,
    *,
    branch: str,
    decision: str | None,
    promoted: bool = False,
    env: str = "prod",
    model_type: str = "hgb",
    drift_share: float | None = None,
    recent_r2: float | None = None,
) -> dict[str, Any]:
    return {
        "airflow_run_id": run_id,
        "run_date": date.fromisoformat(run_date),
        "env": env,
        "model_type": model_type,
        "branch": branch,
        "decision": decision,
        "promoted": promoted,
        "drift_share": drift_share,
        "champion_recent_r2": recent_r2,
        "challenger_r2_test_baseline": 0.8 if branch == "RETRAIN" else None,
        "challenger_r2_test_current": 0.9 if branch == "RETRAIN" else None,
        "logged_at": datetime.fromisoformat(f"{run_date}T01:30:00+00:00"),
    }


def as_bigquery_frame_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as ``Warehouse.query_frame(...).to_dict("records")`` gives them (NaN, NaT, NA)."""
    frame = pd.DataFrame(rows)
    for column in (
        "drift_share",
        "champion_recent_r2",
        "challenger_r2_test_baseline",
        "challenger_r2_test_current",
    ):
        frame[column] = frame[column].astype("float64")
    frame["promoted"] = frame["promoted"].astype("boolean")
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
    return [{str(k): v for k, v in record.items()} for record in frame.to_dict("records")]


def test_decisions_last_run_state_sets_and_values() -> None:
    rows = [
        decision(
            "w1",
            "2024-03-10",
            branch="RETRAIN",
            decision="DEPLOY",
            promoted=True,
            drift_share=0.6,
            recent_r2=0.5,
        ),
        decision("w2", "2024-03-17", branch="RETRAIN", decision="REJECT", drift_share=0.7, recent_r2=0.55),
        decision("w3", "2024-03-24", branch="WAIT", decision=None, drift_share=0.1, recent_r2=0.83),
    ]
    found = samples(decision_families(as_bigquery_frame_rows(rows), today=TODAY))
    key = {"env": "prod", "model_type": "hgb"}

    assert (
        value(found, "velocast_model_last_run_timestamp_seconds", **key)
        == datetime(2024, 3, 24, 1, 30, tzinfo=UTC).timestamp()
    )
    assert value(found, "velocast_model_last_branch", **key, branch="WAIT") == 1
    assert value(found, "velocast_model_last_branch", **key, branch="RETRAIN") == 0
    # The last run waited: decision NONE.
    assert {d: value(found, "velocast_model_last_decision", **key, decision=d) for d in DECISIONS} == {
        "REJECT": 0,
        "SKIP": 0,
        "DEPLOY": 0,
        "NONE": 1,
    }
    assert value(found, "velocast_model_drift_share", **key) == 0.1
    assert value(found, "velocast_model_champion_recent_r2", **key) == 0.83
    # A waiting run trained no challenger: absent, not NaN.
    assert not any(name == "velocast_model_challenger_r2" for name, _ in found)
    assert {d: value(found, "velocast_model_decisions_window", **key, decision=d) for d in DECISIONS} == {
        "REJECT": 1,
        "SKIP": 0,
        "DEPLOY": 1,
        "NONE": 1,
    }
    assert value(found, "velocast_model_promotions_window", **key) == 1
    assert (
        value(found, "velocast_model_last_promotion_timestamp_seconds", **key)
        == datetime(2024, 3, 10, 1, 30, tzinfo=UTC).timestamp()
    )
    assert value(found, "velocast_model_decisions_window_days") == DECISION_WINDOW_DAYS


def test_decisions_window_bounds_and_an_old_promotion() -> None:
    rows = [
        # Promoted long ago: counts for the last promotion, not for the window.
        decision("old", "2023-12-31", branch="RETRAIN", decision="DEPLOY", promoted=True),
        # First day of a 7-day window ending on TODAY (2024-03-25 .. 2024-03-31).
        decision("edge", "2024-03-25", branch="RETRAIN", decision="SKIP"),
        decision("before", "2024-03-24", branch="RETRAIN", decision="REJECT"),
        decision("dev", "2024-03-30", branch="RETRAIN", decision="DEPLOY", promoted=True, env="dev"),
    ]
    found = samples(decision_families(rows, today=TODAY, window_days=7))
    prod = {"env": "prod", "model_type": "hgb"}
    dev = {"env": "dev", "model_type": "hgb"}

    assert value(found, "velocast_model_decisions_window", **prod, decision="SKIP") == 1
    assert value(found, "velocast_model_decisions_window", **prod, decision="REJECT") == 0
    assert value(found, "velocast_model_decisions_window", **prod, decision="DEPLOY") == 0
    assert value(found, "velocast_model_promotions_window", **prod) == 0
    assert (
        value(found, "velocast_model_last_promotion_timestamp_seconds", **prod)
        == datetime(2023, 12, 31, 1, 30, tzinfo=UTC).timestamp()
    )
    assert value(found, "velocast_model_last_decision", **prod, decision="SKIP") == 1
    assert value(found, "velocast_model_challenger_r2", **prod, split="test_current") == 0.9
    assert value(found, "velocast_model_promotions_window", **dev) == 1
    assert value(found, "velocast_model_decisions_window_days") == 7


def test_an_unknown_decision_value_is_reported_not_dropped() -> None:
    found = samples(
        decision_families([decision("x", "2024-03-30", branch="RETRAIN", decision="ROLLBACK")], today=TODAY)
    )
    key = {"env": "prod", "model_type": "hgb"}
    assert value(found, "velocast_model_last_decision", **key, decision="ROLLBACK") == 1
    assert value(found, "velocast_model_last_decision", **key, decision="DEPLOY") == 0
    assert value(found, "velocast_model_decisions_window", **key, decision="ROLLBACK") == 1


def test_no_decision_rows_gives_only_the_window_length() -> None:
    assert names(samples(decision_families([], today=TODAY))) == {"velocast_model_decisions_window_days"}


# --- ingestion_log and hourly_predictions ---------------------------------------------------------


def log_row(
    run_id: str, logged_at: str, status: str, *, loaded: int, quarantined: int, fetched: int
) -> dict[str, Any]:
    return {
        "ingestion_run_id": run_id,
        "status": status,
        "rows_fetched": fetched,
        "rows_loaded": loaded,
        "rows_quarantined": quarantined,
        "rejected_share": quarantined / fetched,
        "duration_seconds": None,
        "logged_at": pd.Timestamp(logged_at),
    }


def test_ingestion_last_run_and_last_success() -> None:
    rows = [
        log_row("a", "2024-03-29T01:10:00Z", "success", loaded=7000, quarantined=10, fetched=7010),
        log_row("b", "2024-03-30T01:10:00Z", "rejected", loaded=0, quarantined=900, fetched=9000),
    ]
    found = samples(ingestion_families(reversed(rows)))  # order does not matter
    assert (
        value(found, "velocast_ingestion_last_success_timestamp_seconds")
        == datetime(2024, 3, 29, 1, 10, tzinfo=UTC).timestamp()
    )
    assert (
        value(found, "velocast_ingestion_last_run_timestamp_seconds")
        == datetime(2024, 3, 30, 1, 10, tzinfo=UTC).timestamp()
    )
    assert value(found, "velocast_ingestion_last_run_status", status="rejected") == 1
    assert value(found, "velocast_ingestion_last_run_status", status="success") == 0
    assert value(found, "velocast_ingestion_last_run_rows_loaded") == 0
    assert value(found, "velocast_ingestion_last_run_rows_quarantined") == 900
    assert value(found, "velocast_ingestion_last_run_rows_fetched") == 9000
    assert math.isclose(value(found, "velocast_ingestion_last_run_rejected_share"), 0.1)
    assert "velocast_ingestion_last_run_duration_seconds" not in names(found)


def test_ingestion_without_any_success_or_rows() -> None:
    assert ingestion_families([]) == []
    rows = [log_row("b", "2024-03-30T01:10:00Z", "rejected", loaded=0, quarantined=900, fetched=9000)]
    assert "velocast_ingestion_last_success_timestamp_seconds" not in names(samples(ingestion_families(rows)))


def test_predictions_of_the_latest_date_only() -> None:
    rows = [
        {
            "prediction_date": date(2024, 3, 30),
            "model_type": "hgb",
            "row_count": 2400,
            "last_predicted_at": None,
        },
        {
            "prediction_date": date(2024, 3, 31),
            "model_type": "hgb",
            "row_count": 2424,
            "last_predicted_at": pd.Timestamp("2024-03-31T02:05:00Z"),
        },
        {
            "prediction_date": date(2024, 3, 31),
            "model_type": "rf",
            "row_count": 24,
            "last_predicted_at": pd.Timestamp("2024-03-31T02:06:00Z"),
        },
    ]
    found = samples(prediction_families(rows))
    assert (
        value(found, "velocast_predictions_last_date_timestamp_seconds")
        == datetime(2024, 3, 31, tzinfo=UTC).timestamp()
    )
    assert value(found, "velocast_predictions_last_date_rows", model_type="hgb") == 2424
    assert value(found, "velocast_predictions_last_date_rows", model_type="rf") == 24
    assert (
        value(found, "velocast_predictions_last_written_timestamp_seconds")
        == datetime(2024, 3, 31, 2, 6, tzinfo=UTC).timestamp()
    )
    assert prediction_families([]) == []


def score_row(day: date, r2: float | None, baseline_r2: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "scored_date": day,
        "model_type": "hgb",
        "model_run_id": "champion",
        "n_rows": 2400,
        "r2": r2,
        "rmse": 30.0,
        "mae": 15.0,
        "wape": 0.2,
        "baseline_r2": baseline_r2,
        "baseline_rmse": 35.0,
        "baseline_mae": 18.0,
        "baseline_wape": 0.25,
        "scored_at": datetime(2024, 3, 31, 2, 30, tzinfo=UTC),
        **extra,
    }


def test_scores_of_the_latest_scored_day_model_against_baseline() -> None:
    rows = [
        score_row(date(2024, 3, 28), 0.5, 0.7),
        score_row(date(2024, 3, 30), 0.82, 0.75, n_rows=2300, wape=0.18),
        score_row(date(2024, 3, 29), 0.6, 0.7),
    ]
    found = samples(score_families(rows))
    hgb = {"model_type": "hgb"}
    assert (
        value(found, "velocast_prediction_scores_last_day_timestamp_seconds", **hgb)
        == datetime(2024, 3, 30, tzinfo=UTC).timestamp()
    )
    assert value(found, "velocast_prediction_scores_last_day_rows", **hgb) == 2300
    assert (
        value(found, "velocast_prediction_scores_last_day_champion_info", **hgb, model_run_id="champion") == 1
    )
    expected = {
        ("r2", "model"): 0.82,
        ("r2", "baseline"): 0.75,
        ("rmse", "model"): 30.0,
        ("rmse", "baseline"): 35.0,
        ("mae", "model"): 15.0,
        ("mae", "baseline"): 18.0,
        ("wape", "model"): 0.18,
        ("wape", "baseline"): 0.25,
    }
    for (metric, forecast), expected_value in expected.items():
        assert (
            value(found, f"velocast_prediction_scores_{metric}", **hgb, forecast=forecast) == expected_value
        )
    assert value(found, "velocast_prediction_scores_r2_gain", **hgb) == pytest.approx(0.07)
    # The latest day wins: no losing streak, whatever the days before.
    assert value(found, "velocast_prediction_scores_days_losing_to_baseline", **hgb) == 0


def test_the_losing_streak_counts_the_latest_consecutive_days_the_baseline_wins() -> None:
    rows = [
        score_row(date(2024, 3, 25), 0.5, 0.7),
        score_row(date(2024, 3, 26), 0.8, 0.7),  # the model wins: the streak stops here
        score_row(date(2024, 3, 27), 0.6, 0.7),
        score_row(date(2024, 3, 28), 0.65, 0.7),
        score_row(date(2024, 3, 29), 0.69, 0.7),
        {**score_row(date(2024, 3, 29), 0.9, 0.7), "n_rows": 10, "model_run_id": "small"},
    ]
    found = samples(score_families(rows))
    assert value(found, "velocast_prediction_scores_days_losing_to_baseline", model_type="hgb") == 3
    assert value(found, "velocast_prediction_scores_r2_gain", model_type="hgb") == pytest.approx(-0.01)
    # Two champion runs scored the latest day: the series show the one with the most rows.
    assert names(found) >= {"velocast_prediction_scores_last_day_champion_info"}
    info = [labels for name, labels in found if name == "velocast_prediction_scores_last_day_champion_info"]
    assert info == [(("model_run_id", "champion"), ("model_type", "hgb"))]
    assert value(found, "velocast_prediction_scores_last_day_rows", model_type="hgb") == 2400


def test_undefined_scores_are_absent_and_stop_the_streak() -> None:
    rows = [
        score_row(date(2024, 3, 28), 0.5, 0.7),
        score_row(date(2024, 3, 29), None, 0.7, wape=float("nan"), baseline_rmse=pd.NA),
        {**score_row(date(2024, 3, 29), 0.1, 0.2), "model_type": "rf", "n_rows": None, "scored_at": None},
    ]
    found = samples(score_families(rows))
    hgb = {"model_type": "hgb"}
    assert ("velocast_prediction_scores_r2", (("forecast", "model"), ("model_type", "hgb"))) not in found
    assert ("velocast_prediction_scores_wape", (("forecast", "model"), ("model_type", "hgb"))) not in found
    assert ("velocast_prediction_scores_rmse", (("forecast", "baseline"), ("model_type", "hgb"))) not in found
    assert value(found, "velocast_prediction_scores_r2", **hgb, forecast="baseline") == 0.7
    assert ("velocast_prediction_scores_r2_gain", (("model_type", "hgb"),)) not in found
    assert value(found, "velocast_prediction_scores_days_losing_to_baseline", **hgb) == 0
    # Per model type: rf's own latest day, its missing row count absent.
    assert value(found, "velocast_prediction_scores_days_losing_to_baseline", model_type="rf") == 1
    assert ("velocast_prediction_scores_last_day_rows", (("model_type", "rf"),)) not in found


def test_no_scored_day_no_score_series() -> None:
    assert score_families([]) == []
    assert score_families([score_row(None, 0.8, 0.7)]) == []  # type: ignore[arg-type]


# --- value conversions and the families' shape -------------------------------------------------------


def test_values_missing_in_any_form_are_none() -> None:
    for missing in (None, float("nan"), pd.NA, pd.NaT):
        assert as_float(missing) is None
        assert as_timestamp(missing) is None
        assert as_date(missing) is None
    assert as_float(3) == 3.0


def test_timestamps_are_unix_seconds_utc() -> None:
    moment = datetime(2024, 3, 31, 2, 5, tzinfo=UTC).timestamp()
    assert as_timestamp("2024-03-31T02:05:00Z") == moment
    assert as_timestamp(datetime(2024, 3, 31, 2, 5)) == moment  # naive = UTC
    assert as_timestamp(pd.Timestamp("2024-03-31T02:05:00Z")) == moment
    assert as_timestamp(date(2024, 3, 31)) == datetime(2024, 3, 31, tzinfo=UTC).timestamp()
    assert as_date("2024-03-31T23:59:00+00:00") == date(2024, 3, 31)
    assert as_date(datetime(2024, 3, 31, 23, 59)) == date(2024, 3, 31)
    with pytest.raises(TypeError):
        as_timestamp(1_700_000_000)
    with pytest.raises(TypeError):
        as_date(20240331)


def test_a_counter_family_is_named_without_its_total_suffix() -> None:
    errors = new_family("exporter_scrape_errors_total")
    errors.add_metric(["registry", "error"], 1.0)
    assert errors.type == "counter"
    assert errors.name == "velocast_exporter_scrape_errors"
    assert [sample.name for sample in errors.samples] == ["velocast_exporter_scrape_errors_total"]
    assert new_family("registry_champions").type == "gauge"
