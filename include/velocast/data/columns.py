"""Which source column provides each contract column, whatever the variant calls it.

Column names are matched after removing accents, case, spacing and punctuation (``column_key``),
so ``"Coordonnées géographiques"``, ``coordonnees_geographiques`` and ``COORDONNEES GEOGRAPHIQUES``
are one column. Each role (counter id, count, date...) has a list of aliases in ``ALIASES``; the
first one present in a frame provides the role (``SourceColumns``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pandas as pd

from velocast.contract import RAW_COUNTS, load_contract

# Columns the loader adds; everything else in the contract comes from the source.
LOAD_COLUMNS: Final[tuple[str, ...]] = ("ingestion_run_id", "ingested_at")
DATA_COLUMNS: Final[tuple[str, ...]] = tuple(
    name for name in load_contract(RAW_COUNTS).column_names if name not in LOAD_COLUMNS
)

# Source columns per role, as normalized keys (see ``column_key``); the first one present wins.
# The contract's own names come first so that normalizing a normalized frame is a no-op.
ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "counter_id": ("counter_id", "id_compteur", "identifiant_du_compteur"),
    "counter_name": ("counter_name", "nom_compteur", "nom_du_compteur"),
    "site_id": ("site_id", "id", "identifiant_du_site_de_comptage"),
    "site_name": ("site_name", "name", "nom_du_site_de_comptage"),
    "count": ("hourly_count", "sum_counts", "comptage_horaire"),
    "date": ("counted_at", "date", "date_et_heure_de_comptage"),
    "installation_date": ("installation_date", "date_d_installation_du_site_de_comptage"),
    "coordinates": ("coordinates", "coordonnees_geographiques", "geo_point_2d"),
    "geometry": ("geometry", "geo_shape"),
    "latitude": ("latitude", "lat", "coordinates_lat"),
    "longitude": ("longitude", "lon", "lng", "coordinates_lon"),
    "orientation": ("orientation_compteur",),
    "year": ("annee_comptage",),
    "month": ("mois_comptage",),
    "day": ("jour_comptage",),
    "hour": ("heure_comptage",),
}


def column_key(name: object) -> str:
    """``"Coordonnées géographiques"`` -> ``"coordonnees_geographiques"`` (BOM, accents, case, spacing)."""
    ascii_text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^0-9a-z]+", "_", ascii_text.lower()).strip("_")


def resolve_columns(columns: Sequence[object]) -> dict[str, int]:
    """Role -> position of the source column that provides it."""
    positions: dict[str, int] = {}
    for position, name in enumerate(columns):
        positions.setdefault(column_key(name), position)
    resolved: dict[str, int] = {}
    for role, aliases in ALIASES.items():
        for alias in aliases:
            if alias in positions:
                resolved[role] = positions[alias]
                break
    return resolved


@dataclass(frozen=True, eq=False)
class SourceColumns:
    """A raw frame's columns by role, each as a series with a fresh RangeIndex (row positions)."""

    raw: pd.DataFrame
    positions: Mapping[str, int]

    @classmethod
    def of(cls, raw: pd.DataFrame) -> SourceColumns:
        return cls(raw=raw, positions=resolve_columns(list(raw.columns)))

    def __contains__(self, role: str) -> bool:
        return role in self.positions

    def get(self, role: str) -> pd.Series | None:
        """The column providing ``role``, or None when the frame has none."""
        if role not in self.positions:
            return None
        return self.raw.iloc[:, self.positions[role]].reset_index(drop=True)
