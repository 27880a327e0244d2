"""The replay's counts in memory: the shipped parquet, shifted by whole weeks, and the rows a query selects.

The record shape (field names, their CSV labels, which fields vary per row) is defined here too, since
the loaded per-counter constants and every renderer follow it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from velocast.contract import PARIS

DATASET = "comptage-velo-donnees-compteurs"
NS_PER_SECOND = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_SECOND
NS_PER_WEEK = 7 * 24 * NS_PER_HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)

# API field names in the order of the real CSV export, with their French export labels.
LABELS: dict[str, str] = {
    "id_compteur": "Identifiant du compteur",
    "nom_compteur": "Nom du compteur",
    "id": "Identifiant du site de comptage",
    "name": "Nom du site de comptage",
    "sum_counts": "Comptage horaire",
    "date": "Date et heure de comptage",
    "installation_date": "Date d'installation du site de comptage",
    "url_photos_n1": "Lien vers photo du site de comptage",
    "coordinates": "Coordonnées géographiques",
    "counter": "Identifiant technique compteur",
    "photos": "ID Photos",
    "test_lien_vers_photos_du_site_de_comptage_": "test_lien_vers_photos_du_site_de_comptage_",
    "id_photo_1": "id_photo_1",
    "url_sites": "url_sites",
    "type_dimage": "type_dimage",
    "mois_annee_comptage": "mois_annee_comptage",
}
FIELDS: tuple[str, ...] = tuple(LABELS)
# Fields that vary per row; all others are per-counter constants.
DYNAMIC = ("sum_counts", "date", "mois_annee_comptage")

IntArray = npt.NDArray[np.int64]


def default_data_path() -> Path:
    """The packaged counts (``velocast/local/data/bike_counts.parquet``, see its ``NOTICE.md``)."""
    return Path(str(files("velocast.local").joinpath("data/bike_counts.parquet")))


def ns_to_datetime(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def datetime_to_ns(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def weeks_to_reach_yesterday(last: datetime, now: datetime) -> int:
    """The fewest whole weeks (possibly negative) that make yesterday (UTC) a complete day of data.

    ``last`` is the last hourly timestamp; the day of ``last - 23h`` is the last day with a 23:00 hour.
    """
    last_full_day = (last.astimezone(UTC) - timedelta(hours=23)).date()
    gap_days = (now.astimezone(UTC).date() - timedelta(days=1) - last_full_day).days
    return -(-gap_days // 7)


class ReplayData:
    """The counts in memory: one row per (counter, hour), sorted by shifted date, then counter."""

    def __init__(self, path: Path, shift_weeks: int | None, now: datetime | None) -> None:
        table = pq.read_table(path, columns=["id_compteur", "nom_compteur", "id", "name", "lat", "lon"])
        frame = table.to_pandas()
        categories = sorted(frame["id_compteur"].unique())
        codes = pd.Categorical(frame["id_compteur"], categories=categories).codes.astype(np.int64)
        numbers = pq.read_table(path, columns=["sum_counts", "date"])
        raw_dates = numbers.column("date").cast(pa.timestamp("ns", tz="UTC")).to_numpy().view(np.int64)
        last = ns_to_datetime(int(raw_dates.max()))
        self.shift_weeks = (
            shift_weeks
            if shift_weeks is not None
            else weeks_to_reach_yesterday(last, now or datetime.now(UTC))
        )
        dates = raw_dates + self.shift_weeks * NS_PER_WEEK
        order = np.lexsort((codes, dates))  # the file is sorted already; a custom --data may not be
        self.dates: IntArray = np.ascontiguousarray(dates[order])
        self.codes: IntArray = np.ascontiguousarray(codes[order])
        self.counts: IntArray = numbers.column("sum_counts").to_numpy().astype(np.int64)[order]

        # mois_annee_comptage is the month in Paris local time, stored as an index into month labels;
        # computed on the distinct hours only (time-zone conversion of every row is slow).
        hours, hour_of_row = np.unique(self.dates, return_inverse=True)
        local = pd.DatetimeIndex(hours.view("datetime64[ns]")).tz_localize("UTC").tz_convert(PARIS)
        keys, month_of_hour = np.unique((local.year * 12 + local.month - 1).to_numpy(), return_inverse=True)
        self.months: IntArray = month_of_hour.astype(np.int64)[hour_of_row]
        self.month_labels = [f"{k // 12:04d}-{k % 12 + 1:02d}" for k in keys.tolist()]

        meta = frame.drop_duplicates("id_compteur").set_index("id_compteur")
        self.counter_ids: list[str] = [str(c) for c in categories]
        self.code_of = {cid: i for i, cid in enumerate(self.counter_ids)}
        self.counters: list[dict[str, Any]] = [
            counter_constants(
                cid,
                nom=str(meta.at[cid, "nom_compteur"]),
                site=str(meta.at[cid, "id"]),
                name=str(meta.at[cid, "name"]),
                lat=float(meta.at[cid, "lat"]),
                lon=float(meta.at[cid, "lon"]),
            )
            for cid in self.counter_ids
        ]

    def __len__(self) -> int:
        return len(self.dates)

    def first_last(self) -> tuple[datetime, datetime]:
        return ns_to_datetime(int(self.dates[0])), ns_to_datetime(int(self.dates[-1]))


def counter_constants(cid: str, *, nom: str, site: str, name: str, lat: float, lon: float) -> dict[str, Any]:
    """The per-counter fields of a record; the ones the copy does not hold are null."""
    return {
        "id_compteur": cid,
        "nom_compteur": nom,
        "id": site,
        "name": name,
        "installation_date": None,
        "url_photos_n1": None,
        "coordinates": {"lon": lon, "lat": lat},
        "counter": None,
        "photos": None,
        "test_lien_vers_photos_du_site_de_comptage_": None,
        "id_photo_1": None,
        "url_sites": f"https://www.eco-visio.net/Photos/{site}",
        "type_dimage": None,
    }


@dataclass
class Query:
    """What a data request asks for, once its parameters are parsed (see ``query.parse_query``)."""

    lo: int = INT64_MIN  # inclusive, ns
    hi: int = INT64_MAX  # exclusive, ns
    until: int = INT64_MAX  # exclusive, ns: rows after it are not published yet
    counter: str | None = None
    empty: bool = False  # contradictory id_compteur conditions
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    fields: tuple[str, ...] = FIELDS
    tz: ZoneInfo | None = None  # None: UTC


def select_rows(data: ReplayData, query: Query) -> IntArray:
    """Positions of the matching rows, in the requested order (callers page by slicing them)."""
    hi = min(query.hi, query.until)
    if query.empty or query.lo >= hi:
        return np.empty(0, dtype=np.int64)
    start, stop = np.searchsorted(data.dates, [query.lo, hi], side="left")
    positions: IntArray = np.arange(start, stop, dtype=np.int64)
    if query.counter is not None:
        code = data.code_of.get(query.counter, -1)
        positions = positions[data.codes[positions] == code]
    natural = [("date", False), ("id_compteur", False)]
    if query.order and query.order != natural[: len(query.order)]:
        columns = {"date": data.dates, "id_compteur": data.codes, "sum_counts": data.counts}
        # np.lexsort sorts by the last key first; a stable sort keeps (date, counter) on ties.
        keys = [-columns[name][positions] if desc else columns[name][positions] for name, desc in query.order]
        positions = positions[np.lexsort(keys[::-1])]
    return positions
