"""registry_entries, without storage: the entry schema, environments, the lookup by run id and the
choice of the champion."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tests.unit.ml.registry_samples import entry
from velocast.ml.registry_entries import (
    RegistryEntry,
    UnknownEnvironmentError,
    UnknownRunError,
    find_entry,
    normalize_env,
    select_champion,
)


def test_select_champion_prefers_recent_entries_on_ties() -> None:
    older = entry("older", created_at=datetime(2024, 1, 1, tzinfo=UTC))
    newer = entry("newer", created_at=datetime(2024, 2, 1, tzinfo=UTC))
    assert select_champion([older, newer]).run_id == "newer"  # type: ignore[union-attr]
    assert select_champion([]) is None


def test_select_champion_prefers_the_flag_then_the_best_defined_r2() -> None:
    entries = [entry("best", r2_current=0.9), entry("nan", r2_current=math.nan), entry("low", r2_current=0.5)]
    assert select_champion(entries).run_id == "best"  # type: ignore[union-attr]
    flagged = [*entries, entry("flagged", r2_current=0.1, is_champion=True)]
    assert select_champion(flagged).run_id == "flagged"  # type: ignore[union-attr]
    assert select_champion(flagged, "rf") is None


def test_test_mode_entries_are_left_out_when_not_allowed() -> None:
    entries = [entry("sample", r2_current=0.99, test_mode=True), entry("real", r2_current=0.7)]
    assert select_champion(entries).run_id == "sample"  # type: ignore[union-attr]
    assert select_champion(entries, allow_test_mode=False).run_id == "real"  # type: ignore[union-attr]


def test_find_entry_hints_at_the_registered_type() -> None:
    entries = [entry("run-1", "rf")]
    assert find_entry(entries, "dev", "rf", "run-1").model_type == "rf"
    with pytest.raises(UnknownRunError, match=r"registered as model_type \['rf'\]"):
        find_entry(entries, "dev", "hgb", "run-1")
    with pytest.raises(UnknownRunError, match="'missing'"):
        find_entry(entries, "dev", "rf", "missing")


def test_environments() -> None:
    assert normalize_env(" Prod ") == "prod"
    with pytest.raises(UnknownEnvironmentError, match="staging"):
        normalize_env("staging")


def test_entries_store_utc_and_null_for_undefined_metrics() -> None:
    stored = entry(
        "run-1", r2_current=math.nan, created_at=datetime(2024, 3, 3, 1, tzinfo=timezone(timedelta(hours=1)))
    ).to_dict()
    assert stored["created_at"] == "2024-03-03T00:00:00Z"
    assert stored["metrics"]["test_current"]["r2"] is None
    backwards = {"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}
    with pytest.raises(ValidationError, match="before it starts"):
        RegistryEntry.model_validate(entry("run-1").to_dict() | {"data_window": backwards})
