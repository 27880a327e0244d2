"""Drift of what the champion forecasts: step 2 of the weekly monitor DAG (velocast issue 10).

Drift is measured only on what can drift in this domain, never on time or calendar columns (their
distribution follows from the chosen windows, so they would "drift" by construction):

* ``hourly_count``: the counts themselves, all counters pooled;
* ``daily_total``: each counter's total of each Europe/Paris day, repeated on the day's hours;
* ``residual``: ``hourly_count - predicted_count``, the champion's errors, when both sides have
  predictions.

``drift_frame`` builds these columns from normalized rows; ``measure_drift`` compares a reference
and a current frame with Evidently and returns the *measured* share of drifted columns (the
``DriftedColumnsCount`` metric's ``value["share"]``, never its configured ``drift_share``
threshold), each column's score, and a per-counter view: each counter's hourly-count distribution
compared on its own (a wide frame hour × counter through the same metrics), so that one broken
counter is named even when the pooled columns do not move. ``reference_slice`` picks a comparable
calendar slice of the champion's training rows for the current window.

Stat tests (set explicitly, so a longer or shorter window never silently switches the test), with
Evidently's default thresholds:

* pooled columns: normed Wasserstein distance (drift at >= 0.1), Evidently's default above 1000
  rows. With tens of thousands of autocorrelated hours, a p-value test (KS) flags any small
  difference; an effect size does not grow with the sample.
* per counter: two-sample Kolmogorov-Smirnov (drift at p < 0.05), Evidently's default up to 1000
  rows, which one week vs four weeks of a counter's hours are. Measured between ordinary adjacent
  weeks: 0-6 % of counters drift (the test's nominal 5 %), 90-100 % at +40 % traffic; the normed
  Wasserstein at 0.1 would flag about half of the counters between ordinary weeks.

Paris traffic itself moves a lot from week to week (weather, holidays, strikes). Over the 58 pairs
of consecutive weeks of the packaged data, the scores have medians (90th percentiles) of 0.075
(0.20) for ``hourly_count``, 0.13 (0.34) for ``daily_total`` and 0.32 (0.68) for ``residual``
with last week's count as the forecast: at the default threshold about half of the ordinary weeks
drift on the counts and most on the residual. The result therefore keeps every column's score.
The residuals of both sides must be out-of-sample forecasts: in-sample residuals (the champion on
its own training rows) are narrower and make any current week look drifted.

Every number is measured on all the rows given (no sampling). Evidently is imported inside the
functions that use it: importing it takes seconds, and DAG files import this module when parsed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.contract import PARIS_TZ
from velocast.errors import RequestError

DRIFT_COLUMNS: Final = ("hourly_count", "daily_total", "residual")
ROW_COLUMNS: Final = ("counter_id", "counted_at", "hourly_count")
COLUMN_METHOD: Final = "wasserstein"
COUNTER_METHOD: Final = "ks"
# 52 weeks: the same weekdays one year earlier (weekday traffic differs from weekend traffic).
YEAR: Final = timedelta(days=364)
MIN_COVERED_DAYS: Final = 7
_HOUR: Final = pd.Timedelta(hours=1)
_REQUIRED: Final = (*ROW_COLUMNS, "daily_total")


class DriftDataError(RequestError, ValueError):
    """The rows cannot be measured for drift (a side empty, columns missing, naive timestamps)."""


@dataclass(frozen=True)
class DriftResult:
    """What ``measure_drift`` measured; ``to_dict()`` is JSON-serialisable (audit, Discord)."""

    share: float
    drifted_count: int
    columns: tuple[str, ...]
    drifted_columns: tuple[str, ...]
    column_scores: dict[str, float]
    method: str
    counter_share: float | None
    counters_compared: int
    drifted_counters: tuple[str, ...]
    reference_rows: int
    current_rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "drifted_count": self.drifted_count,
            "columns": list(self.columns),
            "drifted_columns": list(self.drifted_columns),
            "column_scores": dict(self.column_scores),
            "method": self.method,
            "counter_share": self.counter_share,
            "counters_compared": self.counters_compared,
            "drifted_counters": list(self.drifted_counters),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class DriftReport:
    """The measured result and Evidently's HTML report (column drift, then per-counter drift)."""

    result: DriftResult
    html: str = field(repr=False)


def drift_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The drift columns of normalized rows (``counter_id``, ``counted_at`` UTC, ``hourly_count``,
    optionally ``predicted_count``); other columns are dropped.

    ``daily_total`` is the counter's total of the Paris day over the rows given; it is NaN on the
    days the rows' time span does not cover entirely (the edges of a window that does not start or
    end at Paris midnight), whose partial totals would look like collapsed days. ``residual`` is
    present only when ``predicted_count`` is (NaN where a prediction is missing).
    """
    _require(rows, ROW_COLUMNS, "rows")
    counted_at = _utc(rows["counted_at"], "rows")
    out = pd.DataFrame(
        {
            "counter_id": rows["counter_id"].astype("string").reset_index(drop=True),
            "counted_at": counted_at.reset_index(drop=True),
            "hourly_count": _float(rows["hourly_count"], "hourly_count").reset_index(drop=True),
        }
    )
    local_day = out["counted_at"].dt.tz_convert(PARIS_TZ).dt.tz_localize(None).dt.floor("D")
    groups = out["hourly_count"].groupby([out["counter_id"], local_day])
    total = groups.transform("sum").where(groups.transform("count") > 0)
    complete = local_day.isin(_complete_days(out["counted_at"], local_day))
    out["daily_total"] = total.where(complete).astype("float64")
    if "predicted_count" in rows.columns:
        predicted = _float(rows["predicted_count"], "predicted_count").reset_index(drop=True)
        out["residual"] = out["hourly_count"] - predicted
    return out


def measure_drift(
    reference: pd.DataFrame, current: pd.DataFrame, *, min_counter_hours: int = 24
) -> DriftReport:
    """Compare ``current`` with ``reference`` (both ``drift_frame`` outputs).

    Measured columns: ``hourly_count``, plus ``daily_total`` and ``residual`` when both sides have
    values for them. Per counter: counters with at least ``min_counter_hours`` counted hours on each
    side. Raises ``DriftDataError`` when a side is empty, lacks a column or has no count.
    """
    started = time.perf_counter()
    if min_counter_hours < 1:
        raise DriftDataError(f"min_counter_hours must be at least 1, got {min_counter_hours}")
    for side, frame in (("reference", reference), ("current", current)):
        if frame.empty:
            raise DriftDataError(f"the {side} drift frame is empty: there is nothing to compare")
        _require(frame, _REQUIRED, f"the {side} drift frame")
        if frame["hourly_count"].notna().sum() == 0:
            raise DriftDataError(f"the {side} drift frame has no hourly_count value (all null)")
    # Only what can drift in this domain: calendar and extra columns never reach Evidently.
    columns = tuple(
        name
        for name in DRIFT_COLUMNS
        if name in reference.columns
        and name in current.columns
        and reference[name].notna().any()
        and current[name].notna().any()
    )
    pooled = _evidently_drift(reference, current, columns, COLUMN_METHOD)

    counters = _comparable_counters(reference, current, min_counter_hours)
    by_counter: _Drift | None = None
    if counters:
        by_counter = _evidently_drift(
            _hours_by_counter(reference, counters),
            _hours_by_counter(current, counters),
            counters,
            COUNTER_METHOD,
        )

    html = _html(pooled, by_counter)
    result = DriftResult(
        share=pooled.share,
        drifted_count=pooled.count,
        columns=columns,
        drifted_columns=pooled.drifted,
        column_scores=pooled.scores,
        method=pooled.method,
        counter_share=None if by_counter is None else by_counter.share,
        counters_compared=len(counters),
        drifted_counters=() if by_counter is None else by_counter.drifted,
        reference_rows=len(reference),
        current_rows=len(current),
        seconds=time.perf_counter() - started,
    )
    return DriftReport(result=result, html=html)


def reference_slice(
    training: pd.DataFrame, current_start: datetime, current_end: datetime, *, days: int = 28
) -> tuple[pd.DataFrame, str]:
    """A slice of the champion's training rows comparable with the window [current_start, current_end).

    Rule 1: the same Paris days 364 days earlier (same weekdays), widened to ``days`` days centred on
    them, when the training rows have data on at least 7 of those days (all of them if the window is
    shorter). Rule 2 otherwise: the last ``days`` Paris days of the training rows. Returns the
    slice and a short description of the rule and dates (for the audit and the Discord message).
    """
    if training.empty:
        raise DriftDataError("the training rows are empty: there is no reference to slice")
    _require(training, ("counted_at",), "the training rows")
    start, end = _aware(current_start, "current_start"), _aware(current_end, "current_end")
    if end <= start:
        raise DriftDataError(f"the current window is empty: {start.isoformat()} → {end.isoformat()}")
    if days < 1:
        raise DriftDataError(f"days must be at least 1, got {days}")
    counted_at = _utc(training["counted_at"], "the training rows")

    first, stop = _day_span(start - YEAR, end - YEAR)
    target_days = (stop - first).days
    in_target = (counted_at >= _midnight(first)) & (counted_at < _midnight(stop))
    covered = _local_days(counted_at[in_target]).nunique()
    needed = min(MIN_COVERED_DAYS, target_days)
    if covered >= needed:
        before = max(days - target_days, 0) // 2
        first, stop = (
            first - timedelta(days=before),
            stop + timedelta(days=max(days - target_days, 0) - before),
        )
        rule = f"same weeks one year earlier (364 days, same weekdays), widened to {(stop - first).days} days"
    else:
        _, stop = _day_span(counted_at.max(), counted_at.max() + _HOUR)
        first = stop - timedelta(days=days)
        rule = (
            f"last {days} days of the training rows (they cover {covered} of the {needed} days needed "
            f"one year earlier, {_day_text(start - YEAR)})"
        )
    mask = (counted_at >= _midnight(first)) & (counted_at < _midnight(stop))
    sliced: pd.DataFrame = training.loc[mask.to_numpy()].reset_index(drop=True)
    last = stop - timedelta(days=1)
    return sliced, f"{rule}: {first.isoformat()} → {last.isoformat()} (Paris days), {len(sliced)} rows"


@dataclass(frozen=True)
class _Drift:
    """One Evidently run: the measured share and count, each column's score and verdict, widgets."""

    share: float
    count: int
    scores: dict[str, float]
    drifted: tuple[str, ...]
    method: str
    widgets: list[Any]
    tests_widgets: list[Any]


def _evidently_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: tuple[str, ...], method: str
) -> _Drift:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    names = list(columns)
    definition = DataDefinition(numerical_columns=names)
    report = Report(
        [
            DriftedColumnsCount(columns=names, method=method),
            *(ValueDrift(column=name, method=method) for name in names),
        ],
        include_tests=True,  # each ValueDrift's test is Evidently's own verdict (score vs its threshold)
    )
    # A constant column (a counter broken to zeros) makes Evidently's correlations divide by zero.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = report.run(
            Dataset.from_pandas(current[names], data_definition=definition),
            Dataset.from_pandas(reference[names], data_definition=definition),
        )
    results = snapshot.dict()
    share, count, methods, scores = 0.0, 0, set(), {}
    for metric in results["metrics"]:
        kind = metric["config"]["type"].rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            share, count = float(metric["value"]["share"]), int(metric["value"]["count"])
        elif kind == "ValueDrift":
            scores[metric["config"]["column"]] = float(metric["value"])
            methods.add(str(metric["config"]["method"]))
    failed = {
        test["metric_config"]["params"]["column"]
        for test in results["tests"]
        if test["metric_config"]["params"]["type"].endswith(":ValueDrift") and test["status"] == "FAIL"
    }
    model = snapshot.to_snapshot_model()
    return _Drift(
        share=share,
        count=count,
        scores=scores,
        drifted=tuple(name for name in names if name in failed),
        method=", ".join(sorted(methods)),
        widgets=list(model.widgets),
        tests_widgets=list(model.tests_widgets),
    )


def _html(pooled: _Drift, by_counter: _Drift | None) -> str:
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget

    sections = [
        group_widget(title="Drift of hourly counts, daily totals and residuals", widgets=pooled.widgets)
    ]
    tests = list(pooled.tests_widgets)
    if by_counter is not None:
        title = "Per-counter drift of the hourly-count distribution (one column per counter)"
        sections.append(group_widget(title=title, widgets=by_counter.widgets))
        tests += by_counter.tests_widgets
    html: str = render_widgets([*sections, *tests], as_iframe=False)
    return html


def _comparable_counters(reference: pd.DataFrame, current: pd.DataFrame, min_hours: int) -> tuple[str, ...]:
    def hours(frame: pd.DataFrame) -> pd.Series:
        counted = frame.loc[frame["hourly_count"].notna() & frame["counter_id"].notna()]
        return counted.groupby(counted["counter_id"].astype(str))["counted_at"].nunique()

    ref, cur = hours(reference), hours(current)
    return tuple(sorted(set(ref.index[ref >= min_hours]) & set(cur.index[cur >= min_hours])))


def _hours_by_counter(frame: pd.DataFrame, counters: tuple[str, ...]) -> pd.DataFrame:
    """One row per hour, one column per counter (NaN where a counter has no count that hour)."""
    ids = frame["counter_id"].astype(str)
    keep = (ids.isin(counters) & frame["hourly_count"].notna()).to_numpy()
    rows = frame.loc[keep, ["counted_at", "hourly_count"]].assign(counter=ids.to_numpy()[keep])
    wide = rows.groupby(["counted_at", "counter"])["hourly_count"].mean().unstack()
    return wide.reindex(columns=list(counters)).reset_index(drop=True).astype("float64")


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DriftDataError(
            f"{what}: missing column(s) {', '.join(missing)} (columns: {', '.join(map(str, frame.columns))})"
        )


def _utc(values: pd.Series, what: str) -> pd.Series:
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise DriftDataError(
            f"{what}: counted_at must be timezone-aware (UTC) timestamps, got {values.dtype}"
        )
    utc: pd.Series = values.dt.tz_convert("UTC")
    return utc


def _aware(moment: datetime, what: str) -> pd.Timestamp:
    if moment.tzinfo is None:
        raise DriftDataError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return pd.Timestamp(moment).tz_convert("UTC")


def _float(values: pd.Series, name: str) -> pd.Series:
    try:
        numbers: pd.Series = pd.to_numeric(values).astype("float64")
    except (TypeError, ValueError) as error:
        raise DriftDataError(f"{name} must be numeric: {error}") from error
    return numbers


def _complete_days(counted_at: pd.Series, local_day: pd.Series) -> pd.DatetimeIndex:
    """The Paris days (naive local midnights) the rows' time span covers from midnight to midnight."""
    days = pd.DatetimeIndex(local_day.dropna().unique())
    starts = days.tz_localize(PARIS_TZ)  # Paris midnight always exists once (clocks change at 2-3 am)
    ends = (days + pd.Timedelta(days=1)).tz_localize(PARIS_TZ)
    span_start, span_end = counted_at.min(), counted_at.max() + _HOUR
    complete: pd.DatetimeIndex = days[(starts >= span_start) & (ends <= span_end)]
    return complete


def _local_days(counted_at: pd.Series) -> pd.Series:
    days: pd.Series = counted_at.dt.tz_convert(PARIS_TZ).dt.date
    return days


def _day_span(start: pd.Timestamp, end: pd.Timestamp) -> tuple[date, date]:
    """The Paris days [first, stop) that the instants [start, end) touch."""
    first = start.tz_convert(PARIS_TZ).date()
    last = (end - pd.Timedelta(microseconds=1)).tz_convert(PARIS_TZ).date()
    return first, last + timedelta(days=1)


def _midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(PARIS_TZ).tz_convert("UTC")


def _day_text(moment: pd.Timestamp) -> str:
    return moment.tz_convert(PARIS_TZ).date().isoformat()


__all__ = [
    "DRIFT_COLUMNS",
    "DriftDataError",
    "DriftReport",
    "DriftResult",
    "drift_frame",
    "measure_drift",
    "reference_slice",
]
