"""columns: source columns are found by role whatever their case, accents and spacing."""

from __future__ import annotations

import pandas as pd

from tests.unit.data.samples import DENFERT
from velocast.data.columns import column_key
from velocast.data.normalize import normalize


def test_column_names_match_case_accents_and_spacing_insensitively() -> None:
    assert column_key("\ufeffCoordonnées  Géographiques") == "coordonnees_geographiques"
    assert column_key("Date d'installation du site de comptage") == "date_d_installation_du_site_de_comptage"
    raw = pd.DataFrame(
        {
            "IDENTIFIANT DU COMPTEUR": [DENFERT],
            "comptage horaire": ["4"],
            "Date-et-heure-de-comptage": ["2024-01-01T10:00:00Z"],
            "COORDONNEES GEOGRAPHIQUES": ["48.8,2.3"],
        }
    )
    row = normalize(raw).frame.iloc[0]
    assert (row["counter_id"], row["hourly_count"], row["latitude"]) == (DENFERT, 4, 48.8)
