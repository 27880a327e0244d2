"""Build the replay server's data file from the public copy of the Paris bike counts.

Input: ``dataset_projet_velo.parquet`` (RegineNj/ProjetVelo), hourly counts per counter with the
hour given as *local Paris time* parts. Output: the Explore API v2.1 field names with a UTC ``date``:

    python -m velocast.local.build_replay_data SOURCE.parquet [--out PATH]

Time conversion: the local hour ``heure_comptage`` on day ``annee/mois/jour_comptage`` is localized
to Europe/Paris. The autumn fall-back hour (02h on the last Sunday of October) happens twice but the
source holds it once per counter; it is read as the *first* occurrence (summer time, ``+02:00``), so
the UTC hour after it (e.g. 2023-10-29T01:00Z) is missing. A nonexistent spring-forward hour would be
shifted forward (the source has none: 02h is absent on 2023-03-26).
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from velocast.contract import PARIS_TZ

DEFAULT_OUT = Path(__file__).parent / "data" / "bike_counts.parquet"
SOURCE_SHA256 = "9b4c9041223637a6a29f6d9eed1c92edc39d2067369540ec7ea213e1f8361cc1"
# A trailing direction such as "SO-NE", "N-S" or "E-O": letters, a dash, letters.
_DIRECTION = re.compile(r"\s+[A-Z]{1,2}-[A-Z]{1,2}$")

SCHEMA = pa.schema(
    [
        ("id_compteur", pa.string()),
        ("nom_compteur", pa.string()),
        ("id", pa.string()),
        ("name", pa.string()),
        ("sum_counts", pa.int64()),
        ("date", pa.timestamp("us", tz="UTC")),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
    ]
)


def site_name(nom_compteur: str) -> str:
    """The site name is the counter name without its trailing direction token."""
    return _DIRECTION.sub("", nom_compteur)


def to_api_shape(source: pd.DataFrame) -> pd.DataFrame:
    """Map the source columns to the v2.1 field names, with a UTC timestamp, sorted by date."""
    local = pd.to_datetime(
        pd.DataFrame(
            {
                "year": source["annee_comptage"],
                "month": source["mois_comptage"],
                "day": source["jour_comptage"],
                "hour": source["heure_comptage"],
            }
        )
    )
    # ambiguous=True: the repeated fall-back hour is taken as its first (summer time) occurrence.
    utc = local.dt.tz_localize(PARIS_TZ, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC")
    out = pd.DataFrame(
        {
            "id_compteur": source["id_compteur"].astype(str),
            "nom_compteur": source["nom_compteur"].astype(str),
            "id": source["id_compteur"].astype(str).str.split("-", n=1).str[0],
            "name": source["nom_compteur"].astype(str).map(site_name),
            "sum_counts": source["comptage_horaire"].astype("int64"),
            "date": utc.dt.as_unit("us"),
            "lat": source["latitude"].astype("float64"),
            "lon": source["longitude"].astype("float64"),
        }
    )
    if out.duplicated(["id_compteur", "date"]).any():
        raise ValueError("the source holds a (counter, hour) twice after the UTC conversion")
    return out.sort_values(["date", "id_compteur"], kind="stable").reset_index(drop=True)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Zstd with dictionary-encoded strings: the file ships in git."""
    table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", compression_level=19, use_dictionary=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="path to dataset_projet_velo.parquet")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    digest = hashlib.sha256(args.source.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        print(f"warning: source sha256 {digest} differs from the documented {SOURCE_SHA256}")
    frame = to_api_shape(pd.read_parquet(args.source))
    write_parquet(frame, args.out)
    print(
        f"wrote {args.out}: {len(frame):,} rows, {frame['id_compteur'].nunique()} counters, "
        f"{frame['date'].min()} -> {frame['date'].max()}, {args.out.stat().st_size:,} bytes"
    )


if __name__ == "__main__":
    main()
