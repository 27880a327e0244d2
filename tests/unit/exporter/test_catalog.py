"""The metric catalog: one definition per metric, all of them exposed, declared and documented."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from velocast.exporter.catalog import METRICS, SOURCES, metric_names, metric_spec
from velocast.exporter.families import (
    decision_families,
    ingestion_families,
    prediction_families,
    registry_families,
    score_families,
)
from velocast.exporter.server import build_registry
from velocast.ml.registry import empty_summary
from velocast.settings import VelocastSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
TODAY = date(2024, 3, 31)


def test_each_metric_is_defined_once_with_a_consistent_type_and_source() -> None:
    declared = [spec.name for spec in METRICS]
    assert len(declared) == len(set(declared))
    assert metric_names() == frozenset(declared)
    for spec in METRICS:
        assert spec.name.startswith("velocast_"), spec.name
        # prometheus_client appends _total to a counter's samples, and only to a counter's.
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert spec.source in (*SOURCES, "exporter"), spec.name
        assert len(spec.labels) == len(set(spec.labels)), spec.name
        assert spec.help, spec.name
    # Every source has metrics of its own.
    assert {spec.source for spec in METRICS} == {*SOURCES, "exporter"}
    assert metric_spec("exporter_source_up").labels == ("source",)


def test_every_exposed_family_is_declared_and_documented(settings: VelocastSettings) -> None:
    doc = empty_summary()
    doc["environments"]["dev"]["models"] = [
        {
            "run_id": "best",
            "model_uri": "models:/velocast/best",
            "model_type": "hgb",
            "metrics": {
                "test_baseline": {"r2": 0.81, "rmse": 40.0, "mae": 20.0},
                "test_current": {"r2": 0.88, "rmse": 41.0, "mae": 21.0},
            },
            "data_window": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-31T00:00:00Z"},
            "created_at": "2024-02-01T12:00:00Z",
            "is_champion": True,
        }
    ]
    decision_row = {
        "airflow_run_id": "w",
        "run_date": date(2024, 3, 30),
        "status": "SUCCESS",
        "env": "prod",
        "model_type": "hgb",
        "branch": "RETRAIN",
        "decision": "DEPLOY",
        "promoted": True,
        "drift_share": 0.2,
        "champion_recent_r2": 0.7,
        "challenger_r2_test_baseline": 0.8,
        "challenger_r2_test_current": 0.9,
        "logged_at": datetime(2024, 3, 30, 1, 30, tzinfo=UTC),
    }
    log_row = {
        "ingestion_run_id": "a",
        "status": "success",
        "rows_fetched": 8,
        "rows_loaded": 7,
        "rows_quarantined": 1,
        "rejected_share": 1 / 8,
        "duration_seconds": 3.0,
        "logged_at": datetime(2024, 3, 29, 1, 10, tzinfo=UTC),
    }
    prediction_row = {
        "prediction_date": date(2024, 3, 31),
        "model_type": "hgb",
        "row_count": 24,
        "last_predicted_at": None,
    }
    score_row = {
        "scored_date": date(2024, 3, 30),
        "model_type": "hgb",
        "model_run_id": "best",
        "n_rows": 2400,
        "r2": 0.8,
        "rmse": 30.0,
        "mae": 15.0,
        "wape": 0.2,
        "baseline_r2": 0.7,
        "baseline_rmse": 35.0,
        "baseline_mae": 18.0,
        "baseline_wape": 0.25,
        "scored_at": datetime(2024, 3, 31, 2, 30, tzinfo=UTC),
    }
    readers = {
        "registry": lambda: registry_families(doc),
        "model_decisions": lambda: decision_families([decision_row], today=TODAY),
        "ingestion_log": lambda: ingestion_families([log_row]),
        "hourly_predictions": lambda: prediction_families([prediction_row]),
        "prediction_scores": lambda: score_families([score_row]),
    }
    text = generate_latest(build_registry(settings, readers=readers)).decode()
    exposed = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    declared = {spec.name: spec for spec in METRICS}
    assert exposed <= set(declared), exposed - set(declared)
    # Everything but the optional series of this data set is exposed.
    optional = {"velocast_model_challenger_r2", "velocast_predictions_last_written_timestamp_seconds"}
    assert set(declared) - exposed <= optional
    assert all(name.startswith("velocast_") for name in declared)
    readme = (REPO_ROOT / "observability" / "README.md").read_text()
    assert [name for name in declared if f"`{name}" not in readme] == []
