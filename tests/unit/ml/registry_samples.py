"""Registry entries for tests (the unit tests of registry_entries and the integration tests of the store)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from velocast.ml.registry_entries import RegistryEntry


def entry(
    run_id: str,
    model_type: str = "hgb",
    r2_current: float | None = 0.80,
    *,
    test_mode: bool = False,
    is_champion: bool = False,
    created_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> RegistryEntry:
    """An entry of ``model_type`` scoring R² 0.82 on test_baseline and ``r2_current`` on test_current."""
    return RegistryEntry(
        run_id=run_id,
        model_uri=f"models:/velocast-bike-traffic/{run_id}",
        model_type=model_type,
        metrics={
            "test_baseline": {"r2": 0.82, "rmse": 40.0, "mae": 25.0},
            "test_current": {"r2": r2_current, "rmse": 42.0, "mae": 26.0},
        },
        data_window={"start": "2023-01-01T00:00:00Z", "end": "2024-02-29T23:00:00Z"},
        created_at=created_at or datetime(2024, 3, 3, tzinfo=UTC),
        is_champion=is_champion,
        test_mode=test_mode,
        extra=extra or {},
    )
