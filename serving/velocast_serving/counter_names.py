"""Counters known by their name only (raw-export records without ``identifiant_du_compteur``) → ids.

The model keeps the names it was trained on (``VelocastModel.counter_names``: name → counter ids).
Names are compared by ``name_key``: trimmed, case-folded, accents removed, punctuation and spacing
collapsed, so ``"18 Quai de l'Hôtel de Ville NO-SE"`` and ``"18 quai de l hotel de ville no se"``
are one name. A name that stands for exactly one counter resolves to its id; any other name is
reported (``UnresolvedCounterName``: unknown, ambiguous, or a model file without names) and its rows
are predicted as a counter the model was not trained on: the original system's clients expect one
prediction per record, in order, so a name is never a reason to refuse the request.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from velocast.ml.model_base import VelocastModel
from velocast_serving.records import ExportRecord, PredictionRecord
from velocast_serving.schemas import UnresolvedCounterName, UnresolvedReason

_SEPARATORS: Final = re.compile(r"[\W_]+")


def name_key(name: str) -> str:
    """``" 18 Quai de l'Hôtel de Ville NO-SE"`` → ``"18 quai de l hotel de ville no se"``."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SEPARATORS.sub(" ", letters).strip()


def ids_by_name_key(counter_names: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]] | None:
    """The model's names folded by ``name_key``; None when the model keeps no names."""
    if not counter_names:
        return None
    folded: dict[str, set[str]] = {}
    for name, ids in counter_names.items():
        folded.setdefault(name_key(name), set()).update(ids)
    return {key: tuple(sorted(ids)) for key, ids in folded.items()}


@dataclass
class _Unresolved:
    reason: UnresolvedReason
    counter_ids: tuple[str, ...] = ()
    rows: int = field(default=0)


@dataclass(frozen=True)
class NameResolution:
    """Record position → the counter id its name resolved to; the names that did not resolve."""

    counter_ids: dict[int, str]
    unresolved: list[UnresolvedCounterName]


def _resolve(name: str, index: dict[str, tuple[str, ...]] | None) -> str | _Unresolved:
    if index is None:
        return _Unresolved("model_has_no_names")
    ids = index.get(name_key(name), ())
    if len(ids) == 1:
        return ids[0]
    return _Unresolved("ambiguous_name", ids) if ids else _Unresolved("unknown_name")


def resolve_counter_names(records: Sequence[PredictionRecord], model: VelocastModel) -> NameResolution:
    """The ids of the records given by a counter name only, through ``model``'s training names."""
    index: dict[str, tuple[str, ...]] | None = None
    index_built = False
    outcomes: dict[str, str | _Unresolved] = {}  # per distinct name as sent: names repeat a lot
    counter_ids: dict[int, str] = {}
    for position, record in enumerate(records):
        if not isinstance(record, ExportRecord) or record.identifiant_du_compteur is not None:
            continue
        if not index_built:
            index, index_built = ids_by_name_key(model.counter_names), True
        name = (record.nom_du_compteur or "").strip()  # never blank here: the schema's rule
        outcome = outcomes.get(name)
        if outcome is None:
            outcome = outcomes[name] = _resolve(name, index)
        if isinstance(outcome, str):
            counter_ids[position] = outcome
        else:
            outcome.rows += 1
    unresolved = [
        UnresolvedCounterName(
            name=name, reason=item.reason, counter_ids=list(item.counter_ids), rows=item.rows
        )
        for name, item in outcomes.items()
        if isinstance(item, _Unresolved)
    ]
    return NameResolution(counter_ids, unresolved)


__all__ = ["NameResolution", "ids_by_name_key", "name_key", "resolve_counter_names"]
