"""The reasons rows are rejected, collected while the parsers read the columns.

A parser that finds values present but unreadable names their rows and a reason; a row can collect
several reasons (one per unreadable column). Only bad rows ever cost Python time. ``normalize``
turns what was collected into its ``rejected`` frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from velocast.data.values import quote

# The source values of some row positions: a column, or a function building them on demand.
Quotable: TypeAlias = pd.Series | Callable[[np.ndarray], list[Any]]


class Rejections:
    """Reasons collected per row position."""

    def __init__(self) -> None:
        self._reasons: dict[int, list[str]] = {}

    def add(self, mask: np.ndarray, source: Quotable, describe: Callable[[str], str]) -> None:
        """Reject the rows in ``mask``; ``describe`` gets the quoted source value of each."""
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            return
        values = source.iloc[positions].tolist() if isinstance(source, pd.Series) else source(positions)
        for position, value in zip(positions.tolist(), values, strict=True):
            self._reasons.setdefault(position, []).append(describe(quote(value)))

    def mask(self, n: int) -> np.ndarray:
        """Which of the ``n`` rows have at least one reason."""
        rejected = np.zeros(n, dtype=bool)
        if self._reasons:
            rejected[list(self._reasons)] = True
        return rejected

    def reasons(self, positions: np.ndarray) -> list[str]:
        """The reasons of each rejected row in ``positions``, joined with ``"; "``."""
        return ["; ".join(self._reasons[p]) for p in positions.tolist()]
