"""BigQuery SQL pieces built from Python values: literals and table references.

One place decides how a date, a moment or a table id is quoted, and refuses what cannot be quoted
safely. Free of Airflow, so the serving sidecar and the exporter can build queries too.
"""

from __future__ import annotations

from datetime import date, datetime


def timestamp_literal(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps given to BigQuery must be timezone-aware")
    return f"TIMESTAMP '{moment.isoformat()}'"


def date_literal(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


def time_range(column: str, start: datetime, end: datetime) -> str:
    """``column`` in the half-open range ``[start, end)``, as a WHERE condition."""
    if end < start:
        raise ValueError(f"the range ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return f"{column} >= {timestamp_literal(start)} AND {column} < {timestamp_literal(end)}"


def table_ref(table_id: str) -> str:
    """``project.dataset.table`` (or ``dataset.table``) as a quoted BigQuery table reference.

    The whole path goes in one pair of backticks, as BigQuery accepts it; an id that could end the
    quoting early (a backtick, a backslash, a line break) or has an empty part is refused.
    """
    parts = table_id.split(".")
    if not 2 <= len(parts) <= 3 or not all(part.strip() for part in parts):
        raise ValueError(f"not a table id (dataset.table or project.dataset.table): {table_id!r}")
    if any(char in table_id for char in "`\\\n\r"):
        raise ValueError(f"a table id cannot hold a backtick, backslash or line break: {table_id!r}")
    return f"`{table_id}`"


__all__ = ["date_literal", "table_ref", "time_range", "timestamp_literal"]
