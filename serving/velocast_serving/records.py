"""The shapes a prediction record may take (part of the sidecar's OpenAPI description).

A prediction record comes in one of four shapes, told apart by its keys (see ``record_shape``):

* ``normalized``: the warehouse's rows (``counter_id``, ``counted_at``, optional ``latitude``...);
* ``api``: a Paris Explore API v2.1 record (``id_compteur``, ``date``, ``coordinates``...);
* ``v1``: a v1 export record (its values under ``fields``);
* ``export``: a row of the raw export with its French snake_case columns (``nom_du_compteur``,
  ``date_et_heure_de_comptage``, optional ``identifiant_du_compteur``...), what the clients of the
  original system post; a counter named but not identified is resolved by name (``counter_names``).

Pydantic checks the structure and the JSON types (a precise 422 per field); the values themselves
(dates, counts, coordinates) are read by ``velocast.data.normalize``, the same code as ingestion, so the
sidecar accepts exactly what the pipeline accepts. Keys a shape does not know are ignored: clients
can post warehouse rows or API records as they are.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StringConstraints,
    Tag,
    model_validator,
)

RecordShape = Literal["normalized", "api", "v1", "export"]

# Dates are text (ISO 8601); naive ones are Europe/Paris wall-clock time, as in the City's exports.
DateText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CounterId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
# Strict: "3" and true are not numbers (lax pydantic would take them).
JsonNumber = Annotated[float, Strict()]
Latitude = Annotated[float, Strict(), Field(ge=-90, le=90)]
Longitude = Annotated[float, Strict(), Field(ge=-180, le=180)]

_RECORD_CONFIG: Final = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class NormalizedRecord(BaseModel):
    """A row of the normalized frame (``velocast.data.normalize``): what the warehouse stores."""

    model_config = _RECORD_CONFIG

    counter_id: CounterId
    counted_at: DateText = Field(description="ISO 8601; without an offset, Europe/Paris local time")
    counter_name: ShortText | None = None
    site_id: ShortText | None = None
    site_name: ShortText | None = None
    hourly_count: JsonNumber | None = Field(None, description="ignored by the prediction")
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    installation_date: DateText | None = None


class LonLat(BaseModel):
    model_config = _RECORD_CONFIG

    lon: Longitude
    lat: Latitude


class ApiRecord(BaseModel):
    """A record of the Paris Explore API v2.1 (``comptage-velo-donnees-compteurs``)."""

    model_config = _RECORD_CONFIG

    id_compteur: CounterId
    date: DateText = Field(description="ISO 8601; without an offset, Europe/Paris local time")
    nom_compteur: ShortText | None = None
    id: ShortText | None = None
    name: ShortText | None = None
    sum_counts: JsonNumber | None = Field(None, description="ignored by the prediction")
    coordinates: LonLat | None = None
    installation_date: DateText | None = None


class V1Fields(BaseModel):
    model_config = _RECORD_CONFIG

    id_compteur: CounterId
    date: DateText
    nom_compteur: ShortText | None = None
    id: ShortText | None = None
    name: ShortText | None = None
    sum_counts: JsonNumber | None = None
    coordinates: tuple[Latitude, Longitude] | None = Field(None, description="[lat, lon]")
    installation_date: DateText | None = None


class V1Record(BaseModel):
    """A record of the v1 export API: the values sit under ``fields``."""

    model_config = _RECORD_CONFIG

    fields: V1Fields


SiteId = Annotated[int, Strict()] | ShortText  # the export's site ids are numbers, or their text


class ExportRecord(BaseModel):
    """A row of the raw export (``comptage-velo-donnees-compteurs``), French snake_case columns.

    The original system's clients post these. ``identifiant_du_compteur`` is optional: a counter
    given by ``nom_du_compteur`` only is resolved through the names the model was trained on
    (see ``PredictResponse.unresolved_counter_names``). The other columns (``mois_annee_comptage``,
    photos, URLs...) are ignored.
    """

    model_config = _RECORD_CONFIG

    identifiant_du_compteur: CounterId | None = None
    nom_du_compteur: ShortText | None = Field(None, description="required without identifiant_du_compteur")
    date_et_heure_de_comptage: DateText = Field(
        description="ISO 8601, e.g. 2024-02-20T08:00:00+01:00; without an offset, Europe/Paris local time"
    )
    comptage_horaire: JsonNumber | None = Field(None, description="ignored by the prediction")
    coordonnees_geographiques: ShortText | LonLat | tuple[Latitude, Longitude] | None = Field(
        None,
        validation_alias=AliasChoices("coordonnées_géographiques", "coordonnees_geographiques"),
        description='"lat, lon" as text (e.g. "48.8672, 2.3501"), {"lon", "lat"} or [lat, lon]',
    )
    identifiant_du_site_de_comptage: SiteId | None = None
    nom_du_site_de_comptage: ShortText | None = None
    date_d_installation_du_site_de_comptage: ShortText | None = None

    @model_validator(mode="after")
    def _counter_is_named(self) -> ExportRecord:
        if self.identifiant_du_compteur is None and not (self.nom_du_compteur or "").strip():
            raise ValueError(
                "without identifiant_du_compteur, a record needs nom_du_compteur (the counter's name)"
            )
        return self


# The keys that tell the shapes apart, checked in this order: the first shape with one of its keys.
_SHAPE_KEYS: Final[tuple[tuple[frozenset[str], RecordShape], ...]] = (
    (frozenset({"fields"}), "v1"),
    (frozenset({"counter_id", "counted_at"}), "normalized"),
    (frozenset({"id_compteur", "date"}), "api"),
    (frozenset({"nom_du_compteur", "date_et_heure_de_comptage", "identifiant_du_compteur"}), "export"),
)


def record_shape(value: Any) -> RecordShape | None:
    """Which shape a raw record is read as; None (a 422) for anything but an object."""
    if isinstance(value, BaseModel):
        return _SHAPE_OF_CLASS.get(type(value))
    if not isinstance(value, dict):
        return None
    for keys, shape in _SHAPE_KEYS:
        if not keys.isdisjoint(value):
            return shape
    # None of them: the normalized shape's "field required" errors are the clearest answer.
    return "normalized"


_SHAPE_OF_CLASS: Final[dict[type[BaseModel], RecordShape]] = {
    NormalizedRecord: "normalized",
    ApiRecord: "api",
    V1Record: "v1",
    ExportRecord: "export",
}

PredictionRecord = Annotated[
    Annotated[NormalizedRecord, Tag("normalized")]
    | Annotated[ApiRecord, Tag("api")]
    | Annotated[V1Record, Tag("v1")]
    | Annotated[ExportRecord, Tag("export")],
    Discriminator(
        record_shape,
        custom_error_type="record_type",
        custom_error_message=(
            "a record is a JSON object: normalized (counter_id, counted_at), "
            "API v2.1 (id_compteur, date), v1 export (fields) or raw export "
            "(nom_du_compteur or identifiant_du_compteur, date_et_heure_de_comptage)"
        ),
    ),
]
