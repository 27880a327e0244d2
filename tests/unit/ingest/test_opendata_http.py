"""The Open Data request policy (``velocast.ingest.opendata_http``): wait hints and error families.

The retries themselves run against the replay server in ``test_opendata.py``.
"""

from __future__ import annotations

import time

from velocast.errors import UnavailableError, is_retryable
from velocast.ingest.opendata_http import (
    OpenDataError,
    OpenDataUnavailableError,
    reset_in_seconds,
)


def test_rate_limit_reset_is_an_epoch_turned_into_seconds_from_now() -> None:
    assert 25 <= (reset_in_seconds(str(time.time() + 30)) or 0) <= 30
    assert reset_in_seconds(str(time.time() - 30)) == 0.0
    assert reset_in_seconds(None) is None and reset_in_seconds("later") is None


def test_only_the_exhausted_retries_are_an_unavailable_error() -> None:
    unavailable = OpenDataUnavailableError("down", url="https://x", status=503)
    refused = OpenDataError("refused", url="https://x", status=404)
    assert isinstance(unavailable, UnavailableError) and is_retryable(unavailable)
    assert not is_retryable(refused)
