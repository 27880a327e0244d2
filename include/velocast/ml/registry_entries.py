"""The entries of the model registry, and the rules read from a list of them.

One entry per trained model and environment (``dev`` / ``prod``)::

    entry = {"run_id", "model_uri", "model_type",
             "metrics": {"test_baseline": {"r2", "rmse", "mae"}, "test_current": {...}},
             "data_window": {"start", "end"}, "created_at" (ISO 8601, UTC),
             "is_champion", "test_mode", "extra": {...}}

Entries are validated pydantic models that keep unknown fields (a newer writer's additions
survive an older reader). ``select_champion`` is the one rule that says which entry a process
serves; ``find_entry`` the one lookup by run id. Stored together in ``summary.json`` by
``velocast.ml.registry``.

Pure (pydantic only): shared by everything that reads the registry, Airflow tasks, the serving
sidecar and the exporter alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from velocast.errors import NotFoundError, RequestError, VelocastError

Environment = Literal["dev", "prod"]
ENVIRONMENTS: Final[tuple[Environment, ...]] = ("dev", "prod")


# --- errors ------------------------------------------------------------------------------------


class RegistryError(VelocastError):
    """Base class of the registry's errors."""


class UnknownEnvironmentError(RegistryError, RequestError, ValueError):
    """An environment other than dev/prod."""


class UnknownRunError(RegistryError, NotFoundError, LookupError):
    """No entry with this run id and model type in the environment."""


def normalize_env(env: str) -> Environment:
    """``"DEV"`` → ``"dev"``; anything but dev/prod raises ``UnknownEnvironmentError``."""
    lowered = env.strip().lower() if isinstance(env, str) else env
    if lowered not in ENVIRONMENTS:
        raise UnknownEnvironmentError(f"unknown registry environment {env!r}: expected one of {ENVIRONMENTS}")
    return lowered


# --- entries -----------------------------------------------------------------------------------

# Unknown fields are kept (extra="allow"): an older reader rewriting the file must not drop what
# a newer writer added.
_MODEL_CONFIG = ConfigDict(extra="allow", frozen=True)


class SplitMetrics(BaseModel):
    model_config = _MODEL_CONFIG

    r2: float | None
    rmse: float | None
    mae: float | None

    @field_validator("r2", "rmse", "mae", mode="after")
    @classmethod
    def _nan_is_null(cls, value: float | None) -> float | None:
        # Strict JSON has no NaN; an undefined metric is stored as null.
        return None if value is None or math.isnan(value) else value


class EntryMetrics(BaseModel):
    model_config = _MODEL_CONFIG

    test_baseline: SplitMetrics
    test_current: SplitMetrics


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Naive datetimes are refused (their zone is a guess); aware ones are stored in UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class DataWindow(BaseModel):
    """The time span of the rows the model was trained on."""

    model_config = _MODEL_CONFIG

    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> DataWindow:
        if self.end < self.start:
            raise ValueError(f"data_window ends ({self.end}) before it starts ({self.start})")
        return self


def utc_now() -> datetime:
    return datetime.now(UTC)


class RegistryEntry(BaseModel):
    model_config = _MODEL_CONFIG

    run_id: str = Field(min_length=1)
    model_uri: str = Field(min_length=1)
    model_type: str = Field(min_length=1)
    metrics: EntryMetrics
    data_window: DataWindow
    created_at: UtcDatetime = Field(default_factory=utc_now)
    is_champion: bool = False
    test_mode: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model_type, self.run_id)

    @property
    def r2_current(self) -> float | None:
        return self.metrics.test_current.r2

    def to_dict(self) -> dict[str, Any]:
        """The stored form: JSON types only, datetimes as ISO 8601 UTC (``...Z``)."""
        return self.model_dump(mode="json")


def find_entry(
    entries: Iterable[RegistryEntry], env: Environment, model_type: str, run_id: str
) -> RegistryEntry:
    """The entry of ``(model_type, run_id)``; ``UnknownRunError`` (with a hint) if there is none."""
    entries = list(entries)
    target = next((e for e in entries if e.key == (model_type, run_id)), None)
    if target is None:
        other_types = sorted({e.model_type for e in entries if e.run_id == run_id})
        hint = f" (it is registered as model_type {other_types})" if other_types else ""
        raise UnknownRunError(f"{env}: no {model_type!r} entry with run_id {run_id!r}{hint}")
    return target


def select_champion(
    entries: Iterable[RegistryEntry],
    model_type: str | None = None,
    *,
    allow_test_mode: bool = True,
) -> RegistryEntry | None:
    """The entry to serve: the champion if any, else the best R² on test_current.

    Without ``model_type`` there can be one champion per type: the best of them (by test_current
    R²) wins. Ties and undefined R² go to the most recent entry. With ``allow_test_mode=False``
    (prod), test-mode entries are never chosen.
    """
    candidates = [
        entry
        for entry in entries
        if (model_type is None or entry.model_type == model_type) and (allow_test_mode or not entry.test_mode)
    ]
    champions = [entry for entry in candidates if entry.is_champion]
    pool = champions or candidates
    if not pool:
        return None

    def rank(entry: RegistryEntry) -> tuple[bool, float, datetime]:
        r2 = entry.r2_current
        return (r2 is not None, r2 if r2 is not None else -math.inf, entry.created_at)

    return max(pool, key=rank)


__all__ = [
    "ENVIRONMENTS",
    "DataWindow",
    "EntryMetrics",
    "Environment",
    "RegistryEntry",
    "RegistryError",
    "SplitMetrics",
    "UnknownEnvironmentError",
    "UnknownRunError",
    "UtcDatetime",
    "find_entry",
    "normalize_env",
    "select_champion",
    "utc_now",
]
