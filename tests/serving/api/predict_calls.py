"""Records to post and a successful ``POST /predict``, shared by the route tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

RECORDS_AT = pd.Timestamp("2024-02-26T07:00:00Z")


def records(artifacts: Any, kit: Any, hours: int = 4) -> list[dict[str, Any]]:
    """Normalized records of the first two served counters, for ``hours`` hours from RECORDS_AT."""
    return [
        kit.normalized_record(counter, RECORDS_AT + pd.Timedelta(hours=h))
        for h in range(hours)
        for counter in artifacts.counters[:2]
    ]


def predict(client: Any, kit: Any, posted: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of a 200 answer to ``POST /predict`` with the predict key."""
    response = client.post("/predict", json={"records": posted}, headers=kit.predict)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
