"""The one promotion of a registered model to champion: the registry, then the MLflow alias.

``promote_champion`` is what ``POST /promote_champion`` and ``velocast promote`` run:

1. the registry's rules, read-only (``Registry.entry`` + ``check_promotable``): the run exists,
   no test-mode model in prod, a REJECTed model only with ``override_rejection`` and a reason;
2. for a model in MLflow (``model_uri`` ``models:/<name>/<version>``), a bounded check that the
   tracking server answers and has that version (``ChampionAliases.check_version``);
3. the registry write (``Registry.promote``, generation-guarded; the rules are checked again on
   the stored entry), which records who, when, through what and why on the entry;
4. the MLflow alias (``champion`` in prod, ``champion-dev`` in dev) moved to the version.

MLflow unreachable: **nothing is written** (step 2 fails first) and the call fails as unavailable
(``MlflowUnavailableError``: HTTP 503, CLI exit 1): the registry, which the sidecar serves from, and the
alias stay as they were, consistent. Should MLflow fail between steps 3 and 4, the call fails
with ``AliasNotMovedError`` (also unavailable), whose message says that the registry changed
and the alias did not: the same call again moves it (re-promoting the champion is a no-op in the
registry that re-applies the alias). So a success always means both agree, and a failure is
always fixed by retrying it.

Models outside MLflow (``gs://``, files: the bootstrap champion, tests) have no alias to move:
``AliasOutcome.status`` says ``not_applicable``. No Airflow; MLflow is imported only for models
in MLflow.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from velocast.errors import ConflictError, UnavailableError
from velocast.ml.registry import PromotionResult, Registry, check_promotable
from velocast.ml.registry_entries import RegistryEntry, champion_alias, normalize_env
from velocast.settings import VelocastSettings

if TYPE_CHECKING:  # MLflow is heavy: imported when a model in MLflow is promoted
    from velocast.ml.tracking import ChampionAliases

# ``models:/<name>/<version>`` (what training registers); ``velocast.ml.pyfunc`` parses the
# same URIs but imports MLflow.
_MODELS_URI: Final = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))/?$"
)


class AliasMirrorError(UnavailableError):
    """MLflow kept the champion alias from following the registry (the message says if the
    registry changed); the same promotion again fixes it once MLflow answers."""


class MlflowUnavailableError(AliasMirrorError):
    """MLflow did not answer the check before the write: nothing was promoted."""


class AliasNotMovedError(AliasMirrorError):
    """The registry was promoted but MLflow did not move the alias: repeat the same promotion."""


class UnmirroredModelUriError(ConflictError):
    """A ``models:/`` entry that names no version: the alias could not follow the registry."""


class AliasOutcome(BaseModel):
    """What became of the MLflow alias that mirrors the registry's champion."""

    model_config = ConfigDict(frozen=True)

    status: Literal["moved", "not_applicable"]
    alias: str  # champion (prod) | champion-dev (dev)
    registered_model: str | None = None
    version: int | None = None
    detail: str


class ChampionPromotion(BaseModel):
    """The registry's result and the alias's."""

    model_config = ConfigDict(frozen=True)

    registry: PromotionResult
    alias: AliasOutcome

    def to_dict(self) -> dict[str, Any]:
        return self.registry.to_dict() | {"alias": self.alias.model_dump(mode="json")}


def mlflow_version(entry: RegistryEntry) -> tuple[str, int] | None:
    """``(registered model, version)`` of an entry in MLflow; None for a model stored elsewhere."""
    match = _MODELS_URI.match(entry.model_uri.strip())
    if match is None:
        return None
    if match.group("version") is None:
        raise UnmirroredModelUriError(
            f"run {entry.run_id!r}: its model_uri {entry.model_uri!r} names an alias, not a version: "
            "the champion alias cannot mirror it (register the entry with models:/<name>/<version>)"
        )
    return match.group("name"), int(match.group("version"))


def promote_champion(
    settings: VelocastSettings,
    env: str,
    model_type: str,
    run_id: str,
    *,
    override_rejection: bool = False,
    reason: str | None = None,
    by: str,
    via: str,
    registry: Registry | None = None,
    aliases: ChampionAliases | None = None,
) -> ChampionPromotion:
    """Make ``run_id`` the ``env`` champion of ``model_type``, in the registry and in MLflow.

    See the module docstring for the order and for what happens when MLflow is unreachable.
    ``by`` (who asks) and ``via`` (api, cli...) are recorded on the entry with ``reason``.
    Raises ``UnknownRunError`` (404), ``ChampionTestModeError`` / ``RejectedModelError`` (409),
    ``ModelVersionMissingError`` / ``UnmirroredModelUriError`` (409), ``OverrideReasonMissingError``
    (422), ``MlflowUnavailableError`` / ``AliasNotMovedError`` (503, both ``AliasMirrorError``).
    """
    environment = normalize_env(env)
    registry = registry if registry is not None else Registry(settings)
    entry = registry.entry(environment, model_type, run_id)
    check_promotable(environment, entry, override_rejection=override_rejection, reason=reason)
    target = mlflow_version(entry)
    alias = champion_alias(environment)
    if target is None:
        result = registry.promote(
            environment,
            model_type,
            run_id,
            override_rejection=override_rejection,
            reason=reason,
            by=by,
            via=via,
        )
        outcome = AliasOutcome(
            status="not_applicable",
            alias=alias,
            detail=f"{result.champion.model_uri} is not a model in MLflow: there is no alias to move",
        )
        return ChampionPromotion(registry=result, alias=outcome)

    from velocast.ml.tracking import ChampionAliases, TrackingError

    aliases = aliases if aliases is not None else ChampionAliases.from_settings(settings)
    name, version = target
    try:
        aliases.check_version(name, version)
    except TrackingError as error:
        raise MlflowUnavailableError(f"{error}; nothing was promoted (the registry is unchanged)") from error
    result = registry.promote(
        environment, model_type, run_id, override_rejection=override_rejection, reason=reason, by=by, via=via
    )
    try:
        aliases.move(name, version, environment)
    except TrackingError as error:
        raise AliasNotMovedError(
            f"{result.message}, but the MLflow alias {name}@{alias} was not moved to version {version}: "
            f"{error}. Repeat the same promotion to move it."
        ) from error
    outcome = AliasOutcome(
        status="moved",
        alias=alias,
        registered_model=name,
        version=version,
        detail=f"{name}@{alias} → version {version}",
    )
    return ChampionPromotion(registry=result, alias=outcome)


__all__ = [
    "AliasMirrorError",
    "AliasNotMovedError",
    "AliasOutcome",
    "ChampionPromotion",
    "MlflowUnavailableError",
    "UnmirroredModelUriError",
    "mlflow_version",
    "promote_champion",
]
