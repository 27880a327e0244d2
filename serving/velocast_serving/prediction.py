"""Validated records → the normalized frame the models take, with a reason for every refused row.

Records of each shape are normalized together by ``velocast.data.normalize`` (so its column aliases
resolve per shape even when a request mixes shapes), then put back in request order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from velocast.data.normalize import normalize
from velocast.data.readers import records_to_frame
from velocast.errors import RequestError
from velocast_serving.schemas import PredictionRecord, record_shape

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


def records_frame(records: Sequence[PredictionRecord]) -> pd.DataFrame:
    """The normalized frame of ``records``, indexed by record position; raises ``RecordsRejectedError``."""
    by_shape: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
    for position, record in enumerate(records):
        positions, dumps = by_shape.setdefault(str(record_shape(record)), ([], []))
        positions.append(position)
        dumps.append(record.model_dump(exclude_none=True))

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
    counted_at = frame["counted_at"]
    checks = (
        (frame["counter_id"].isna().to_numpy(dtype=bool), "no counter id"),
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
