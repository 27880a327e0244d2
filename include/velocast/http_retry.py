"""What HTTP answers say about retrying, read the same way by every client of velocast (the Open
Data API client, the serving sidecar hook)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (given as seconds or as an HTTP date); None if absent or
    unreadable. A date in the past is 0."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


__all__ = ["retry_after_seconds"]
