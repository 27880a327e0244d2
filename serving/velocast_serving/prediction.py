"""A prediction request → the model that serves it, the normalized frame and the model's report.

``predict_request`` is what both prediction routes (``/predict``, ``/compat/predict``) run: it picks
the served model of the asked type, resolves the counters known by name only
(``velocast_serving.counter_names``), builds the normalized frame (a reason for every refused row)
and predicts. Records of each shape are normalized together by ``velocast.data.normalize`` (so its
column aliases resolve per shape even when a request mixes shapes), then put back in request order.

``metric`` does not choose the model: the store serves one model per type (the champion the
deployment rule chose, else the best entry by R²) and loading others per request would cost a model
load each time; the served model's value for the metric is reported instead (``MetricReport``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from fastapi import HTTPException, status

from velocast.data.normalize import normalize
from velocast.data.readers import records_to_frame
from velocast.errors import RequestError
from velocast.ml.model_base import Prediction
from velocast.ml.registry_entries import RegistryEntry
from velocast_serving.context import ServingContext
from velocast_serving.counter_names import resolve_counter_names
from velocast_serving.model_store import LoadedModel, StoreSnapshot
from velocast_serving.records import PredictionRecord, record_shape
from velocast_serving.schemas import MetricName, MetricReport, PredictRequest, UnresolvedCounterName

# Calendar features (holidays, school terms) only make sense for dates in this range.
FIRST_DATE: Final = pd.Timestamp("2000-01-01T00:00:00Z")
END_DATE: Final = pd.Timestamp("2100-01-01T00:00:00Z")
MAX_REPORTED_REJECTIONS: Final = 100


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str


class RecordsRejectedError(RequestError):
    """Records that cannot be predicted; ``rejections`` are in request order."""

    def __init__(self, rejections: list[Rejection]) -> None:
        self.rejections = rejections
        super().__init__(f"{len(rejections)} record(s) cannot be read")

    def errors(self) -> list[dict[str, Any]]:
        """Errors in FastAPI's 422 format (``loc`` names the record), at most 100."""
        shown = self.rejections[:MAX_REPORTED_REJECTIONS]
        errors: list[dict[str, Any]] = [
            {"type": "record_rejected", "loc": ["body", "records", item.index], "msg": item.reason}
            for item in shown
        ]
        hidden = len(self.rejections) - len(shown)
        if hidden:
            errors.append(
                {"type": "record_rejected", "loc": ["body", "records"], "msg": f"and {hidden} more"}
            )
        return errors


def records_frame(
    records: Sequence[PredictionRecord], resolved_ids: Mapping[int, str] | None = None
) -> pd.DataFrame:
    """The normalized frame of ``records``, indexed by record position; raises ``RecordsRejectedError``.

    ``resolved_ids``: position → counter id of the raw-export records given by a name only.
    """
    resolved_ids = resolved_ids or {}
    by_shape: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
    for position, record in enumerate(records):
        positions, dumps = by_shape.setdefault(str(record_shape(record)), ([], []))
        positions.append(position)
        dump = record.model_dump(exclude_none=True)
        if position in resolved_ids:
            dump["identifiant_du_compteur"] = resolved_ids[position]
        dumps.append(dump)

    frames: list[pd.DataFrame] = []
    rejections: list[Rejection] = []
    for positions, dumps in by_shape.values():
        raw = records_to_frame(dumps)
        raw.index = pd.Index(positions)
        result = normalize(raw)
        frames.append(result.frame)
        rejected = result.rejected
        rejections += [
            Rejection(int(i), str(reason))
            for i, reason in zip(rejected.index.tolist(), rejected["reason"].tolist(), strict=True)
        ]
    if not frames:
        empty = {
            "counter_id": pd.Series([], dtype="string"),
            "counted_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        }
        return pd.DataFrame(empty)
    frame = pd.concat(frames).sort_index() if len(frames) > 1 else frames[0]

    # Pydantic guarantees both values are present; a blank that normalize read as null is not.
    # A counter named only (its name did not resolve) is predicted as an unseen counter.
    counted_at = frame["counted_at"]
    checks = (
        ((frame["counter_id"].isna() & frame["counter_name"].isna()).to_numpy(dtype=bool), "no counter id"),
        (counted_at.isna().to_numpy(dtype=bool), "no date"),
        (
            ((counted_at < FIRST_DATE) | (counted_at >= END_DATE)).to_numpy(dtype=bool, na_value=False),
            f"date outside the supported range [{FIRST_DATE:%Y-%m-%d}, {END_DATE:%Y-%m-%d})",
        ),
    )
    for mask, reason in checks:
        rejections += [Rejection(int(i), reason) for i in frame.index[np.flatnonzero(mask)]]
    if rejections:
        rejections.sort(key=lambda item: item.index)
        raise RecordsRejectedError(rejections)
    return frame


# --- serving a request -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedPrediction:
    """What answered a prediction request, for either response shape."""

    loaded: LoadedModel
    env: str
    frame: pd.DataFrame  # normalized, in request order
    report: Prediction
    unresolved_names: list[UnresolvedCounterName]
    metric: MetricReport

    def counter_ids(self) -> list[str | None]:
        """The rows' counter ids, None for the unresolved names."""
        ids = self.frame["counter_id"].astype(object)
        return ids.where(ids.notna(), None).tolist()


def serving_model(snapshot: StoreSnapshot, model_type: str | None) -> LoadedModel:
    """The model ``snapshot`` serves for ``model_type`` (default: the snapshot's); 503 or 404 otherwise."""
    chosen = model_type or snapshot.default_model_type
    if chosen is None or not snapshot.ready:
        reason = "; ".join(snapshot.errors.values()) or f"no model in the {snapshot.env} registry"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no champion is loaded: {reason}")
    loaded = snapshot.models.get(chosen)
    if loaded is None:
        error = snapshot.errors.get(chosen)
        detail = f"no {chosen!r} model is loaded for env {snapshot.env}"
        detail += f": {error}" if error else f" (loaded types: {', '.join(sorted(snapshot.models))})"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail)
    return loaded


def metric_report(entry: RegistryEntry, metric: MetricName | None) -> MetricReport:
    """The entry's test_current value for ``metric`` (default r2): reported, it chose nothing."""
    name: MetricName = metric or "r2"
    return MetricReport(name=name, value=getattr(entry.metrics.test_current, name))


def predict_request(body: PredictRequest, context: ServingContext) -> ServedPrediction:
    """Predict ``body`` (blocking); unreadable records are a 422 naming each one."""
    snapshot = context.store.snapshot  # one snapshot for the whole request, whatever reloads meanwhile
    loaded = serving_model(snapshot, body.model_type)
    names = resolve_counter_names(body.records, loaded.model)
    frame = records_frame(body.records, names.counter_ids)
    report = loaded.model.predict_with_report(frame)
    context.metrics.predictions.labels(loaded.entry.model_type).inc(len(frame))
    return ServedPrediction(
        loaded=loaded,
        env=snapshot.env,
        frame=frame,
        report=report,
        unresolved_names=names.unresolved,
        metric=metric_report(loaded.entry, body.metric),
    )
