"""Read data → prometheus_client metric families, as pure functions (no I/O).

One function per source: ``registry_families`` (the registry ``summary.json``), ``decision_families``
(``model_decisions`` rows), ``ingestion_families`` (``ingestion_log`` rows), ``prediction_families``
(per-model counts of the latest ``prediction_date``) and ``score_families`` (``prediction_scores``
rows of the latest scored days). Rows may come from
BigQuery or from a DataFrame: None, NaN, NA and NaT all mean "no value", and a metric without a
value is absent rather than 0 or NaN. Timestamps are Unix seconds (UTC); a DATE column
(``run_date``, ``prediction_date``, ``scored_date``) is exported as its midnight UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from velocast.exporter.catalog import (
    BRANCHES,
    DECISION_WINDOW_DAYS,
    DECISIONS,
    FORECASTS,
    INGESTION_STATUSES,
    SPLITS,
    metric_spec,
)
from velocast.ml.registry_entries import ENVIRONMENTS, RegistryEntry

# --- value helpers -------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    """None, NaN, pandas' NA and NaT (rows may come from a DataFrame)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes)) or not pd.api.types.is_scalar(value):
        return False
    return bool(pd.isna(value))


def as_float(value: Any) -> float | None:
    return None if _missing(value) else float(value)


def as_timestamp(value: Any) -> float | None:
    """Unix seconds of a datetime (naive = UTC), a date (midnight UTC) or an ISO 8601 string."""
    if _missing(value):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    raise TypeError(f"not a timestamp: {value!r}")


def as_date(value: Any) -> date | None:
    if _missing(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"not a date: {value!r}")


def new_family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    """An empty family for the catalog's ``velocast_<name>`` (the client adds a counter's ``_total``)."""
    spec = metric_spec(name)
    labels = list(spec.labels)
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name.removesuffix("_total"), spec.help, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=labels)


class _Families:
    """Families built in order, created on first use (a family without samples is not emitted)."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(self, name: str, labels: Sequence[str], value: float | None) -> None:
        if value is None:
            return
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = new_family(name)
        family.add_metric(list(labels), value)

    def result(self) -> list[Metric]:
        return [family for family in self._families.values() if family.samples]


def _state_set(
    families: _Families, name: str, base: Sequence[str], states: Sequence[str], current: str | None
) -> None:
    """One series per known state (1 for ``current``, 0 otherwise); an unknown state is added."""
    values = list(states) if current is None or current in states else [*states, current]
    for state in values:
        families.add(name, [*base, state], 1.0 if state == current else 0.0)


# --- one function per source -----------------------------------------------------------------------


def registry_families(summary: Mapping[str, Any]) -> list[Metric]:
    """The registry document (``Registry.summary()``) → registry metric families."""
    families = _Families()
    environments = summary.get("environments") or {}
    for env in ENVIRONMENTS:
        models = (environments.get(env) or {}).get("models") or []
        entries = [RegistryEntry.model_validate(item) for item in models]
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry.model_type] = counts.get(entry.model_type, 0) + 1
        for model_type, count in sorted(counts.items()):
            families.add("registry_entries", [env, model_type], float(count))
        champions = sorted((e for e in entries if e.is_champion), key=lambda e: e.model_type)
        families.add("registry_champions", [env], float(len({e.model_type for e in champions})))
        for champion in champions:
            labels = [env, champion.model_type]
            families.add(
                "registry_champion_info",
                [*labels, champion.run_id, str(champion.test_mode).lower()],
                1.0,
            )
            for split in SPLITS:
                r2 = getattr(champion.metrics, split).r2
                families.add("registry_champion_r2", [*labels, split], as_float(r2))
            families.add(
                "registry_champion_created_timestamp_seconds", labels, as_timestamp(champion.created_at)
            )
    return families.result()


def _key(row: Mapping[str, Any]) -> tuple[str, str]:
    return (str(row["env"]), str(row["model_type"]))


def decision_families(
    rows: Iterable[Mapping[str, Any]], *, today: date, window_days: int = DECISION_WINDOW_DAYS
) -> list[Metric]:
    """``model_decisions`` rows → decision metric families.

    ``rows`` must hold, per (env, model_type), at least the latest run, the latest promoting run
    and every run whose ``run_date`` lies in the window (``sources.decisions_sql`` selects exactly that);
    extra older rows do not change the result.
    """
    window_start = today - timedelta(days=window_days - 1)
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    last_promotion: dict[tuple[str, str], float] = {}
    in_window: dict[tuple[str, str], dict[str, int]] = {}
    promotions: dict[tuple[str, str], int] = {}
    for row in rows:
        key = _key(row)
        logged_at = as_timestamp(row["logged_at"]) or 0.0
        current = latest.get(key)
        if current is None or logged_at > (as_timestamp(current["logged_at"]) or 0.0):
            latest[key] = row
        promoted = not _missing(row.get("promoted")) and bool(row.get("promoted"))
        if promoted:
            last_promotion[key] = max(last_promotion.get(key, 0.0), logged_at)
        run_date = as_date(row.get("run_date"))
        counts = in_window.setdefault(key, dict.fromkeys(DECISIONS, 0))
        promotions.setdefault(key, 0)
        if run_date is not None and window_start <= run_date <= today:
            decision = row.get("decision")
            label = "NONE" if _missing(decision) else str(decision)
            counts[label] = counts.get(label, 0) + 1
            promotions[key] += int(promoted)

    families = _Families()
    for key in sorted(latest):
        row = latest[key]
        labels = list(key)
        families.add("model_last_run_timestamp_seconds", labels, as_timestamp(row["logged_at"]))
        branch = row.get("branch")
        _state_set(families, "model_last_branch", labels, BRANCHES, None if _missing(branch) else str(branch))
        decision = row.get("decision")
        _state_set(
            families,
            "model_last_decision",
            labels,
            DECISIONS,
            "NONE" if _missing(decision) else str(decision),
        )
        status = row.get("status")
        families.add("model_last_run_failed", labels, None if _missing(status) else float(status == "FAILED"))
        families.add("model_drift_share", labels, as_float(row.get("drift_share")))
        families.add("model_champion_recent_r2", labels, as_float(row.get("champion_recent_r2")))
        for split in SPLITS:
            families.add("model_challenger_r2", [*labels, split], as_float(row.get(f"challenger_r2_{split}")))
        for decision_label, count in in_window[key].items():
            families.add("model_decisions_window", [*labels, decision_label], float(count))
        families.add("model_promotions_window", labels, float(promotions[key]))
        families.add("model_last_promotion_timestamp_seconds", labels, last_promotion.get(key))
    families.add("model_decisions_window_days", [], float(window_days))
    return families.result()


def ingestion_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """``ingestion_log`` rows (at least the latest run and the latest successful one) → families."""
    ordered = sorted(rows, key=lambda row: as_timestamp(row["logged_at"]) or 0.0)
    families = _Families()
    if not ordered:
        return families.result()
    last = ordered[-1]
    successes = [row for row in ordered if row.get("status") == "success"]
    if successes:
        families.add("ingestion_last_success_timestamp_seconds", [], as_timestamp(successes[-1]["logged_at"]))
    families.add("ingestion_last_run_timestamp_seconds", [], as_timestamp(last["logged_at"]))
    _state_set(families, "ingestion_last_run_status", [], INGESTION_STATUSES, str(last["status"]))
    for column in ("rows_fetched", "rows_loaded", "rows_quarantined"):
        families.add(f"ingestion_last_run_{column}", [], as_float(last.get(column)))
    families.add("ingestion_last_run_rejected_share", [], as_float(last.get("rejected_share")))
    families.add("ingestion_last_run_duration_seconds", [], as_float(last.get("duration_seconds")))
    return families.result()


def prediction_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Rows ``(prediction_date, model_type, row_count, last_predicted_at)`` of the latest date."""
    families = _Families()
    rows = list(rows)
    if not rows:
        return families.result()
    last_date = max(d for d in (as_date(row["prediction_date"]) for row in rows) if d is not None)
    latest = [row for row in rows if as_date(row["prediction_date"]) == last_date]
    families.add("predictions_last_date_timestamp_seconds", [], as_timestamp(last_date))
    for row in sorted(latest, key=lambda row: str(row["model_type"])):
        families.add("predictions_last_date_rows", [str(row["model_type"])], as_float(row["row_count"]))
    written = [t for t in (as_timestamp(row.get("last_predicted_at")) for row in latest) if t is not None]
    families.add("predictions_last_written_timestamp_seconds", [], max(written) if written else None)
    return families.result()


_SCORE_METRICS = ("r2", "rmse", "mae", "wape")


def _day_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The row a day's series show when several champion runs made its forecasts: the one with the most
    rows scored (then the latest ``scored_at``), so one series per model type stays one series."""
    return max(
        rows,
        key=lambda row: (as_float(row.get("n_rows")) or 0.0, as_timestamp(row.get("scored_at")) or 0.0),
    )


def _r2_gain(row: Mapping[str, Any]) -> float | None:
    model, baseline = as_float(row.get("r2")), as_float(row.get("baseline_r2"))
    return None if model is None or baseline is None else model - baseline


def score_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """``prediction_scores`` rows (per model type, its latest scored days) → score metric families.

    The latest scored day of each model type gives its scores; the earlier days only lengthen the
    losing streak (consecutive latest days whose model R² is below the baseline's).
    """
    by_day: dict[str, dict[date, list[Mapping[str, Any]]]] = {}
    for row in rows:
        day = as_date(row.get("scored_date"))
        if day is None:
            continue
        by_day.setdefault(str(row["model_type"]), {}).setdefault(day, []).append(row)
    families = _Families()
    for model_type in sorted(by_day):
        days = sorted(by_day[model_type], reverse=True)
        latest = _day_row(by_day[model_type][days[0]])
        families.add("prediction_scores_last_day_timestamp_seconds", [model_type], as_timestamp(days[0]))
        families.add("prediction_scores_last_day_rows", [model_type], as_float(latest.get("n_rows")))
        families.add(
            "prediction_scores_last_day_champion_info", [model_type, str(latest["model_run_id"])], 1.0
        )
        for metric in _SCORE_METRICS:
            for forecast in FORECASTS:
                column = metric if forecast == "model" else f"{forecast}_{metric}"
                families.add(
                    f"prediction_scores_{metric}", [model_type, forecast], as_float(latest.get(column))
                )
        families.add("prediction_scores_r2_gain", [model_type], _r2_gain(latest))
        losing = 0
        for day in days:
            gain = _r2_gain(_day_row(by_day[model_type][day]))
            if gain is None or gain >= 0:
                break
            losing += 1
        families.add("prediction_scores_days_losing_to_baseline", [model_type], float(losing))
    return families.result()
