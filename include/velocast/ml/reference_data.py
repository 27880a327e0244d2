"""The reference data set: ``train_baseline`` / ``test_baseline`` in the project bucket.

"Baseline" is the evaluation's word for this reference data, not a baseline model: every
challenger is trained on ``train_baseline`` (plus the recent actuals, if any) and scored on the
same ``test_baseline``, so that models trained months apart can be compared.

A raw export (CSV, JSON or parquet; any column variant ``velocast.data.normalize`` reads) is
normalized and split *by time*: by default the last 20 % of the rows (cut on an hour boundary) is
``test_baseline``; ``split_at`` cuts at an explicit instant instead. Both parts are written as
Parquet under ``gs://<bucket>/data/`` (``train_baseline.parquet``, ``test_baseline.parquet``) with a
``baseline.json`` manifest (sizes, windows, source). Every retraining is scored on the same
``test_baseline``, so it is written once and only replaced on purpose.

Only rows usable for both training and scoring are kept: rows ``normalize`` rejects and rows
without a counter or a count are dropped (and counted in the manifest).

Shared with the serving sidecar: google-cloud-storage through ``velocast.gcp.clients.storage_client``
(never the Airflow hook).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd
from google.cloud import storage as gcs

from velocast.contract import PARIS_TZ
from velocast.data.normalize import normalize
from velocast.data.readers import read_source
from velocast.errors import RequestError
from velocast.gcp.clients import storage_client
from velocast.ml.evaluation import DEFAULT_TEST_FRACTION, FrameInfo, temporal_split
from velocast.ml.model_base import TARGET
from velocast.settings import VelocastSettings

BASELINE_PREFIX: Final = "data"
TRAIN_OBJECT: Final = "train_baseline.parquet"
TEST_OBJECT: Final = "test_baseline.parquet"
MANIFEST_OBJECT: Final = "baseline.json"
_GS_URI = re.compile(r"^gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:/(?P<prefix>.*?))?/?$")


class BaselineError(RequestError, ValueError):
    """The data cannot make a baseline (empty, one-sided split, missing objects...)."""


@dataclass(frozen=True)
class BaselineLocation:
    """Where a baseline lives: ``gs://bucket/prefix/{train,test}_baseline.parquet``."""

    bucket: str
    prefix: str

    @classmethod
    def default(cls, settings: VelocastSettings) -> BaselineLocation:
        return cls(bucket=settings.bucket, prefix=BASELINE_PREFIX)

    @classmethod
    def parse(cls, uri: str) -> BaselineLocation:
        """``gs://bucket/some/prefix`` (the folder that holds the two parquet files)."""
        match = _GS_URI.match(uri.strip())
        if match is None:
            raise BaselineError(f"a baseline location is gs://<bucket>/<prefix>, got {uri!r}")
        return cls(bucket=match.group("bucket"), prefix=(match.group("prefix") or "").strip("/"))

    def object_name(self, file_name: str) -> str:
        return f"{self.prefix}/{file_name}" if self.prefix else file_name

    def uri(self, file_name: str = "") -> str:
        return f"gs://{self.bucket}/{self.object_name(file_name)}"


@dataclass(frozen=True)
class Baseline:
    """The reference data set, split by time: ``train`` (train_baseline) and ``test`` (test_baseline)."""

    train: pd.DataFrame
    test: pd.DataFrame
    # Rows of the source that are in neither part, by reason.
    dropped: dict[str, int]


def split_baseline(
    raw: pd.DataFrame,
    *,
    split_at: datetime | pd.Timestamp | str | None = None,
    test_fraction: float | None = None,
) -> Baseline:
    """Normalize ``raw`` and split it by time (``split_at``, or the last ``test_fraction``)."""
    if split_at is not None and test_fraction is not None:
        raise BaselineError("give split_at or test_fraction, not both")
    result = normalize(raw)
    frame = result.frame
    usable = frame["counter_id"].notna() & frame[TARGET].notna()
    dropped = {"rejected": len(result.rejected), "no_counter_or_count": int((~usable).sum())}
    frame = frame[usable]
    if frame.empty:
        raise BaselineError(f"no usable row in the source ({len(raw)} rows; dropped: {dropped})")
    if split_at is None:
        fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
        try:
            train, test = temporal_split(frame, fraction)
        except ValueError as error:
            raise BaselineError(str(error)) from None
    else:
        cut = pd.Timestamp(split_at)
        # A naive instant is read like the sources' naive times: Europe/Paris wall clock.
        cut = cut.tz_localize(PARIS_TZ) if cut.tzinfo is None else cut
        frame = frame.sort_values("counted_at", kind="stable")
        is_test = frame["counted_at"] >= cut
        train, test = frame[~is_test], frame[is_test]
        if train.empty or test.empty:
            span = f"{frame['counted_at'].min().isoformat()} → {frame['counted_at'].max().isoformat()}"
            raise BaselineError(f"split_at {cut.isoformat()} leaves one side empty: the data spans {span}")
    return Baseline(train=train.reset_index(drop=True), test=test.reset_index(drop=True), dropped=dropped)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_baseline(
    baseline: Baseline,
    settings: VelocastSettings,
    *,
    location: BaselineLocation | None = None,
    source: str | None = None,
    client: gcs.Client | None = None,
) -> dict[str, Any]:
    """Upload both parts and the manifest; returns the manifest."""
    where = location or BaselineLocation.default(settings)
    bucket = (client or storage_client(settings)).bucket(where.bucket)
    train_info, test_info = FrameInfo.of(baseline.train), FrameInfo.of(baseline.test)
    manifest: dict[str, Any] = {
        "train_uri": where.uri(TRAIN_OBJECT),
        "test_uri": where.uri(TEST_OBJECT),
        "train": train_info.to_dict(),
        "test": test_info.to_dict(),
        "counters": int(pd.concat([baseline.train["counter_id"], baseline.test["counter_id"]]).nunique()),
        "dropped": dict(baseline.dropped),
        "source": source,
        "created_at": datetime.now(UTC).isoformat(),
    }
    for name, frame in ((TRAIN_OBJECT, baseline.train), (TEST_OBJECT, baseline.test)):
        bucket.blob(where.object_name(name)).upload_from_string(
            _parquet_bytes(frame), content_type="application/vnd.apache.parquet"
        )
    # Written last: a manifest says both parts are complete.
    bucket.blob(where.object_name(MANIFEST_OBJECT)).upload_from_string(
        json.dumps(manifest, indent=2), content_type="application/json"
    )
    return manifest


def create_baseline(
    source: Path,
    settings: VelocastSettings,
    *,
    split_at: datetime | pd.Timestamp | str | None = None,
    test_fraction: float | None = None,
    location: BaselineLocation | None = None,
) -> dict[str, Any]:
    """Read ``source``, split it and store it in the bucket; returns the manifest."""
    raw = read_source(Path(source))
    baseline = split_baseline(raw, split_at=split_at, test_fraction=test_fraction)
    return write_baseline(baseline, settings, location=location, source=str(source))


def load_baseline(
    settings: VelocastSettings,
    location: BaselineLocation | str | None = None,
    *,
    client: gcs.Client | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train_baseline, test_baseline)`` from the bucket (``gs://<bucket>/data/`` by default)."""
    train, test = _load_parts(settings, location, (TRAIN_OBJECT, TEST_OBJECT), client)
    return train, test


def load_test_baseline(
    settings: VelocastSettings,
    location: BaselineLocation | str | None = None,
    *,
    client: gcs.Client | None = None,
) -> pd.DataFrame:
    """``test_baseline`` alone (evaluation needs no training rows)."""
    return _load_parts(settings, location, (TEST_OBJECT,), client)[0]


def _load_parts(
    settings: VelocastSettings,
    location: BaselineLocation | str | None,
    names: tuple[str, ...],
    client: gcs.Client | None,
) -> list[pd.DataFrame]:
    where = BaselineLocation.parse(location) if isinstance(location, str) else location
    where = where or BaselineLocation.default(settings)
    bucket = (client or storage_client(settings)).bucket(where.bucket)
    frames = []
    for name in names:
        blob = bucket.get_blob(where.object_name(name))
        if blob is None:
            raise BaselineError(
                f"{where.uri(name)} does not exist: create the baseline first (velocast baseline)"
            )
        frames.append(pd.read_parquet(io.BytesIO(blob.download_as_bytes())))
    return frames


def load_manifest(
    settings: VelocastSettings, location: BaselineLocation | None = None, *, client: gcs.Client | None = None
) -> dict[str, Any] | None:
    where = location or BaselineLocation.default(settings)
    blob = (
        (client or storage_client(settings)).bucket(where.bucket).get_blob(where.object_name(MANIFEST_OBJECT))
    )
    if blob is None:
        return None
    manifest: dict[str, Any] = json.loads(blob.download_as_bytes())
    return manifest


__all__ = [
    "BASELINE_PREFIX",
    "Baseline",
    "BaselineError",
    "BaselineLocation",
    "create_baseline",
    "load_baseline",
    "load_manifest",
    "load_test_baseline",
    "split_baseline",
    "write_baseline",
]
