"""The entries of the model registry, and the rules read from a list of them.

One entry per trained model and environment (``dev`` / ``prod``)::

    entry = {"run_id", "model_uri", "model_type",
             "metrics": {"test_baseline": {"r2", "rmse", "mae"}, "test_current": {...}},
             "data_window": {"start", "end"}, "created_at" (ISO 8601, UTC),
             "is_champion", "test_mode", "extra": {...},
             "promotions": [{"at", "by", "via", "reason", "override_rejection", "decision",
                             "previous_champion_run_id"}, ...]}

Training stores the deployment decision in ``extra`` (``decision``: REJECT | SKIP | DEPLOY, and
``decision_reason``); ``promotions`` is the entry's promotion history, oldest first (who made it
champion, when, through what, why, and whether a REJECT was overridden).

Entries are validated pydantic models that keep unknown fields (a newer writer's additions
survive an older reader). ``select_champion`` is the one rule that says which entry a process
serves (``why_no_champion`` says why it chose none); ``find_entry`` the one lookup by run id.
Stored together in ``summary.json`` by ``velocast.ml.registry``.

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
# ``velocast.ml.decisions.Decision.REJECT`` (not imported: this module stays pydantic-only).
REJECT_DECISION: Final = "REJECT"
# Why a model type with entries has nothing to serve (see ``why_no_champion``).
NoChampionReason = Literal["only_rejected", "only_test_mode"]


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


# The MLflow alias that mirrors each environment's champion (one registered model serves both).
CHAMPION_ALIASES: Final[dict[Environment, str]] = {"prod": "champion", "dev": "champion-dev"}


def champion_alias(env: str) -> str:
    """``champion`` in prod, ``champion-dev`` in dev."""
    return CHAMPION_ALIASES[normalize_env(env)]


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


class PromotionRecord(BaseModel):
    """One promotion of an entry to champion: when, by whom, through what and why."""

    model_config = _MODEL_CONFIG

    at: UtcDatetime
    by: str = Field(min_length=1, max_length=200, description="who asked (a user, or the admin API key)")
    via: str = Field(min_length=1, max_length=50, description="api | cli | the calling code")
    reason: str | None = Field(None, max_length=1000)
    # True when the entry's deployment decision was REJECT and the caller overrode it.
    override_rejection: bool = False
    decision: str | None = None  # the entry's deployment decision (extra.decision), if any
    previous_champion_run_id: str | None = None


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
    promotions: list[PromotionRecord] = Field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model_type, self.run_id)

    @property
    def decision(self) -> str | None:
        """The deployment decision training recorded (REJECT | SKIP | DEPLOY); None if none."""
        value = self.extra.get("decision")
        return value if isinstance(value, str) else None

    @property
    def decision_reason(self) -> str | None:
        value = self.extra.get("decision_reason")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def is_rejected(self) -> bool:
        return self.decision == REJECT_DECISION

    def describe_decision(self) -> str:
        """``REJECT (reason: ...)``, or the recorded R² values when no reason was stored."""
        if self.decision_reason is not None:
            return f"{self.decision} (reason: {self.decision_reason})"
        scores = ", ".join(
            f"R² {'undefined' if split.r2 is None else f'{split.r2:.4f}'} on {name}"
            for name, split in (
                ("test_baseline", self.metrics.test_baseline),
                ("test_current", self.metrics.test_current),
            )
        )
        return f"{self.decision} (no reason recorded; {scores})"

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
    (prod), test-mode entries are never chosen. The no-champion fallback never picks an entry
    whose deployment decision was REJECT (a model that forgot the reference period may score
    well lately): such an entry serves only once promoted, which needs an explicit override.
    """
    candidates = [
        entry
        for entry in entries
        if (model_type is None or entry.model_type == model_type) and (allow_test_mode or not entry.test_mode)
    ]
    champions = [entry for entry in candidates if entry.is_champion]
    pool = champions or [entry for entry in candidates if not entry.is_rejected]
    if not pool:
        return None

    def rank(entry: RegistryEntry) -> tuple[bool, float, datetime]:
        r2 = entry.r2_current
        return (r2 is not None, r2 if r2 is not None else -math.inf, entry.created_at)

    return max(pool, key=rank)


def why_no_champion(
    entries: Iterable[RegistryEntry], model_type: str, *, allow_test_mode: bool = True
) -> NoChampionReason | None:
    """Why ``select_champion`` serves nothing of ``model_type`` although it has entries.

    ``only_test_mode``: every entry is a test-mode one (prod); ``only_rejected``: every entry
    that could serve was REJECTed by its deployment decision. None when an entry is chosen or
    the type has no entries at all.
    """
    of_type = [entry for entry in entries if entry.model_type == model_type]
    if not of_type or select_champion(of_type, model_type, allow_test_mode=allow_test_mode) is not None:
        return None
    eligible = [entry for entry in of_type if allow_test_mode or not entry.test_mode]
    return "only_rejected" if eligible else "only_test_mode"


__all__ = [
    "CHAMPION_ALIASES",
    "ENVIRONMENTS",
    "REJECT_DECISION",
    "DataWindow",
    "EntryMetrics",
    "Environment",
    "NoChampionReason",
    "PromotionRecord",
    "RegistryEntry",
    "RegistryError",
    "SplitMetrics",
    "UnknownEnvironmentError",
    "UnknownRunError",
    "UtcDatetime",
    "champion_alias",
    "find_entry",
    "normalize_env",
    "select_champion",
    "utc_now",
    "why_no_champion",
]
