"""The exporter's metric catalog: one definition of each metric (name, type, labels, help, source).

``METRICS`` is the single list: the families are built from it (``velocast.exporter.families``),
``observability/README.md`` renders the same list, and the Prometheus rule tests use
``metric_names()`` as the set of known names. The label vocabularies (branches, decisions, …) and
the length of the decision window are defined here too, as the help texts cite them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

PREFIX: Final = "velocast"
# The sources the exporter reads; the metrics about the exporter itself have source "exporter".
SOURCES: Final = ("registry", "model_decisions", "ingestion_log", "hourly_predictions", "prediction_scores")
# Decisions and promotions are counted over the runs of the last DECISION_WINDOW_DAYS days.
DECISION_WINDOW_DAYS: Final = 28
BRANCHES: Final = ("WAIT", "RETRAIN")
# NONE: the run waited (no challenger was trained, decision is null).
DECISIONS: Final = ("REJECT", "SKIP", "DEPLOY", "NONE")
INGESTION_STATUSES: Final = ("success", "rejected")
SPLITS: Final = ("test_baseline", "test_current")
# The two forecasts prediction_scores compares on the same rows: the champion's and the naive
# same-hour-last-week baseline's.
FORECASTS: Final = ("model", "baseline")
# The latest scored days read per model type (DAG 2 rescores its last 7): the losing streak's reach.
SCORED_DAYS_READ: Final = 7

MetricKind = Literal["gauge", "counter"]
# The kinds of failed reads counted by velocast_exporter_scrape_errors_total.
ErrorKind = Literal["not_found", "error"]
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = ("not_found", "error")


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as exposed (counters end in _total)
    kind: MetricKind
    labels: tuple[str, ...]
    help: str
    source: str


def _spec(name: str, kind: MetricKind, labels: tuple[str, ...], help_: str, source: str) -> MetricSpec:
    return MetricSpec(f"{PREFIX}_{name}", kind, labels, help_, source)


_EM = ("env", "model_type")
METRICS: Final[tuple[MetricSpec, ...]] = (
    # --- registry ------------------------------------------------------------------------------
    _spec("registry_entries", "gauge", _EM, "Models registered in summary.json", "registry"),
    _spec(
        "registry_champions",
        "gauge",
        ("env",),
        "Model types with a flagged champion (0 when none: nothing promoted yet)",
        "registry",
    ),
    _spec(
        "registry_champion_info",
        "gauge",
        (*_EM, "run_id", "test_mode"),
        "1 for the flagged champion of each environment and model type",
        "registry",
    ),
    _spec(
        "registry_champion_r2",
        "gauge",
        (*_EM, "split"),
        "Champion R² on test_baseline / test_current at training time (absent when undefined)",
        "registry",
    ),
    _spec(
        "registry_champion_created_timestamp_seconds",
        "gauge",
        _EM,
        "When the champion's registry entry was created",
        "registry",
    ),
    # --- model_decisions (weekly monitor-and-train) -------------------------------------------
    _spec(
        "model_last_run_timestamp_seconds",
        "gauge",
        _EM,
        "logged_at of the last monitor-and-train run",
        "model_decisions",
    ),
    _spec(
        "model_last_branch",
        "gauge",
        (*_EM, "branch"),
        "1 for the branch (WAIT | RETRAIN) of the last run, 0 for the others",
        "model_decisions",
    ),
    _spec(
        "model_last_decision",
        "gauge",
        (*_EM, "decision"),
        "1 for the decision (REJECT | SKIP | DEPLOY | NONE = waited) of the last run, 0 for the others",
        "model_decisions",
    ),
    _spec(
        "model_last_run_failed",
        "gauge",
        _EM,
        "1 when a task of the last monitor_and_train run failed, 0 when it succeeded (absent: not recorded)",
        "model_decisions",
    ),
    _spec(
        "model_drift_share",
        "gauge",
        _EM,
        "Share of drifted feature columns measured by the last run (absent when not measured)",
        "model_decisions",
    ),
    _spec(
        "model_champion_recent_r2",
        "gauge",
        _EM,
        "Champion R² on the recent actuals, measured by the last run (absent when not measured)",
        "model_decisions",
    ),
    _spec(
        "model_challenger_r2",
        "gauge",
        (*_EM, "split"),
        "Challenger R² on test_baseline / test_current in the last run (absent when it waited)",
        "model_decisions",
    ),
    _spec(
        "model_decisions_window",
        "gauge",
        (*_EM, "decision"),
        f"Runs per decision over the last {DECISION_WINDOW_DAYS} days (by run_date)",
        "model_decisions",
    ),
    _spec(
        "model_promotions_window",
        "gauge",
        _EM,
        f"Runs that promoted their challenger over the last {DECISION_WINDOW_DAYS} days",
        "model_decisions",
    ),
    _spec(
        "model_decisions_window_days",
        "gauge",
        (),
        "Length of the window of the *_window metrics, in days",
        "model_decisions",
    ),
    _spec(
        "model_last_promotion_timestamp_seconds",
        "gauge",
        _EM,
        "logged_at of the last run that promoted a challenger",
        "model_decisions",
    ),
    # --- ingestion_log (DAG 1) ------------------------------------------------------------------
    _spec(
        "ingestion_last_success_timestamp_seconds",
        "gauge",
        (),
        "logged_at of the last successful ingestion run",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_timestamp_seconds",
        "gauge",
        (),
        "logged_at of the last ingestion run, whatever its status",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_status",
        "gauge",
        ("status",),
        "1 for the status (success | rejected) of the last ingestion run, 0 for the others",
        "ingestion_log",
    ),
    _spec("ingestion_last_run_rows_fetched", "gauge", (), "Rows fetched by the last run", "ingestion_log"),
    _spec("ingestion_last_run_rows_loaded", "gauge", (), "Rows loaded by the last run", "ingestion_log"),
    _spec(
        "ingestion_last_run_rows_quarantined",
        "gauge",
        (),
        "Rows quarantined by the last run",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_rejected_share",
        "gauge",
        (),
        "rows_quarantined / rows_fetched of the last run",
        "ingestion_log",
    ),
    _spec(
        "ingestion_last_run_duration_seconds",
        "gauge",
        (),
        "Wall time of the last run (absent when not recorded)",
        "ingestion_log",
    ),
    # --- hourly_predictions (DAG 2) ------------------------------------------------------------
    _spec(
        "predictions_last_date_timestamp_seconds",
        "gauge",
        (),
        "The latest prediction_date in hourly_predictions (midnight UTC)",
        "hourly_predictions",
    ),
    _spec(
        "predictions_last_date_rows",
        "gauge",
        ("model_type",),
        "Rows of the latest prediction_date, by model type",
        "hourly_predictions",
    ),
    _spec(
        "predictions_last_written_timestamp_seconds",
        "gauge",
        (),
        "The latest predicted_at of the latest prediction_date",
        "hourly_predictions",
    ),
    # --- prediction_scores (DAG 2's daily scores) -----------------------------------------------
    _spec(
        "prediction_scores_last_day_timestamp_seconds",
        "gauge",
        ("model_type",),
        "The latest scored_date in prediction_scores (midnight UTC of that Paris day)",
        "prediction_scores",
    ),
    _spec(
        "prediction_scores_last_day_rows",
        "gauge",
        ("model_type",),
        "Counter-hours scored on the latest scored day (n_rows: both forecasts use exactly these)",
        "prediction_scores",
    ),
    _spec(
        "prediction_scores_last_day_champion_info",
        "gauge",
        ("model_type", "model_run_id"),
        "1 for the champion run whose scores the latest scored day's series show",
        "prediction_scores",
    ),
    *(
        _spec(
            f"prediction_scores_{name}",
            "gauge",
            ("model_type", "forecast"),
            f"{label} on the latest scored day, of the model and of the same-hour-last-week baseline "
            "(forecast: model | baseline; absent when undefined)",
            "prediction_scores",
        )
        for name, label in (("r2", "R²"), ("rmse", "RMSE"), ("mae", "MAE"), ("wape", "WAPE"))
    ),
    _spec(
        "prediction_scores_r2_gain",
        "gauge",
        ("model_type",),
        "R² of the model minus R² of the baseline on the latest scored day (< 0: the naive forecast wins)",
        "prediction_scores",
    ),
    _spec(
        "prediction_scores_days_losing_to_baseline",
        "gauge",
        ("model_type",),
        f"Latest consecutive scored days (of the last {SCORED_DAYS_READ}) whose model R² is below the "
        "baseline's (0 when the latest day's model wins or a score is undefined)",
        "prediction_scores",
    ),
    # --- the exporter itself --------------------------------------------------------------------
    _spec("exporter_source_up", "gauge", ("source",), "1 if the last read of the source worked", "exporter"),
    _spec(
        "exporter_scrape_errors_total",
        "counter",
        ("source", "kind"),
        "Failed reads of a source (kind: not_found | error)",
        "exporter",
    ),
    _spec(
        "exporter_source_refresh_duration_seconds",
        "gauge",
        ("source",),
        "Duration of the last read of the source",
        "exporter",
    ),
    _spec(
        "exporter_source_refresh_timestamp_seconds",
        "gauge",
        ("source",),
        "When the source was last read (scrapes in between reuse that read)",
        "exporter",
    ),
)
_SPECS: Final = {spec.name: spec for spec in METRICS}


def metric_names() -> frozenset[str]:
    """Every series name the exporter can expose."""
    return frozenset(_SPECS)


def metric_spec(name: str) -> MetricSpec:
    """The definition of ``velocast_<name>`` (``name`` without the prefix, as the families use it)."""
    return _SPECS[f"{PREFIX}_{name}"]
