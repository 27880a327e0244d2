"""BigQuery SQL literals, free of Airflow so the serving sidecar can build queries too."""

from __future__ import annotations

from datetime import date, datetime


def timestamp_literal(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps given to BigQuery must be timezone-aware")
    return f"TIMESTAMP '{moment.isoformat()}'"


def date_literal(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


__all__ = ["date_literal", "timestamp_literal"]
