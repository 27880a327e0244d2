"""The model registry: one JSON object (``summary.json``) in the project bucket.

Format (``schema_version`` 1; the entries are ``velocast.ml.registry_entries.RegistryEntry``)::

    {"schema_version": 1,
     "environments": {"dev":  {"models": [entry, ...]},
                      "prod": {"models": [entry, ...]}}}

Invariants, per environment: a ``(model_type, run_id)`` pair appears once; at most one champion
per model type (``promote`` moves the flag); a ``test_mode`` entry (trained on a sample) is never
a champion in ``prod``, neither by promotion nor by the no-champion fallback of ``champion()``;
an entry whose deployment decision was REJECT is never chosen by that fallback, and becomes
champion only by a promotion with ``override_rejection`` and a reason, which the entry records
(``promotions``: who, when, through what, why) like every promotion.

``promote`` here changes the registry only; ``velocast.ml.promotion.promote_champion`` is the
promotion the API and the CLI run (the registry, then the MLflow alias that mirrors it).

Concurrency: every change is a read-modify-write guarded by the object's generation. The write
carries ``if_generation_match`` (0 when the object does not exist yet), so GCS refuses it with
412 if anyone wrote in between; the change is then re-applied to a fresh read, after a jittered
backoff, a bounded number of times. Two writers therefore never lose each other's entries.
(gcp-storage-emulator ignores generation preconditions: locally this guard is a no-op, which
the integration tests show and work around with an enforcing proxy.)

Shared by Airflow and the serving sidecar: depends on google-cloud-storage and pydantic only.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, Final, TypeVar

import google.cloud.storage as gcs
from google.api_core.exceptions import NotFound, PreconditionFailed
from pydantic import BaseModel, ConfigDict

from velocast.errors import ConflictError, RequestError, UnavailableError
from velocast.gcp.clients import storage_client
from velocast.ml.registry_entries import (
    ENVIRONMENTS,
    Environment,
    PromotionRecord,
    RegistryEntry,
    RegistryError,
    find_entry,
    normalize_env,
    select_champion,
    utc_now,
)
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1

T = TypeVar("T")


# --- errors ------------------------------------------------------------------------------------


class DuplicateEntryError(RegistryError, ConflictError, ValueError):
    """A different entry with the same ``(model_type, run_id)`` is already registered."""


class ChampionTestModeError(RegistryError, ConflictError):
    """A ``test_mode`` entry was to become champion in ``prod``."""


class RejectedModelError(RegistryError, ConflictError):
    """A REJECTed entry was to become champion without ``override_rejection``."""


class OverrideReasonMissingError(RegistryError, RequestError, ValueError):
    """``override_rejection`` without a reason: an override is always explained."""


class RegistryConflictError(RegistryError, ConflictError):
    """Concurrent writers kept winning: the update was not applied after the last attempt."""


class RegistryFormatError(RegistryError, UnavailableError):
    """The stored object is not a registry this code understands (it is left untouched)."""


# --- promotion results -------------------------------------------------------------------------


class PromotionStatus(StrEnum):
    PROMOTED = "promoted"
    ALREADY_CHAMPION = "already_champion"


class PromotionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: PromotionStatus
    message: str
    champion: RegistryEntry
    # The entry that lost the flag, as stored after the change (is_champion False); None if none.
    previous_champion: RegistryEntry | None
    # What this promotion recorded on the champion's entry; None when it was champion already.
    record: PromotionRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- the stored document (pure) ----------------------------------------------------------------


def empty_summary() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "environments": {env: {"models": []} for env in ENVIRONMENTS}}


def _check_format(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("environments", {}), dict):
        raise RegistryFormatError("the registry object is not a JSON object with an 'environments' object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RegistryFormatError(f"registry schema_version {version!r} is not supported (expected 1)")
    return doc


def _env_entries(doc: dict[str, Any], env: Environment) -> list[RegistryEntry]:
    models = doc.get("environments", {}).get(env, {}).get("models", [])
    return [RegistryEntry.model_validate(item) for item in models]


def _set_env_entries(doc: dict[str, Any], env: Environment, entries: Iterable[RegistryEntry]) -> None:
    environment = doc.setdefault("environments", {}).setdefault(env, {})
    environment["models"] = [entry.to_dict() for entry in entries]


def check_promotable(
    env: Environment, target: RegistryEntry, *, override_rejection: bool = False, reason: str | None = None
) -> None:
    """Raise if ``target`` may not become the champion of ``env`` (pure: no I/O).

    A test-mode entry never in prod (no override); a REJECTed entry only with
    ``override_rejection``; an override always with a reason.
    """
    if override_rejection and not (reason or "").strip():
        raise OverrideReasonMissingError(
            "override_rejection needs a reason: say why a REJECTed model should serve anyway"
        )
    if env == "prod" and target.test_mode:
        raise ChampionTestModeError(
            f"prod: run {target.run_id!r} ({target.model_type!r}) was trained in test mode and can never "
            "become a prod champion"
        )
    if target.is_rejected and not override_rejection:
        raise RejectedModelError(
            f"{env}: {target.model_type!r} run {target.run_id!r} has the deployment decision "
            f"{target.describe_decision()}; it is promoted only with override_rejection=true and a reason"
        )


# --- the registry ------------------------------------------------------------------------------


class Registry:
    """``summary.json`` at ``gs://{settings.bucket}/{settings.registry_object}``."""

    def __init__(
        self,
        settings: VelocastSettings,
        client: gcs.Client | None = None,
        *,
        max_attempts: int = 10,
        backoff_seconds: float = 0.05,
        max_backoff_seconds: float = 2.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.settings = settings
        self.client = client if client is not None else storage_client(settings)
        self.bucket = self.client.bucket(settings.bucket)
        self.object_name = settings.registry_object
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds

    @property
    def uri(self) -> str:
        return f"gs://{self.settings.bucket}/{self.object_name}"

    # --- reads -------------------------------------------------------------------------------
    def generation(self) -> int:
        """The object's current generation (0 if absent): a cheap "has anything changed?" probe."""
        metadata = self.bucket.get_blob(self.object_name)
        return 0 if metadata is None else int(metadata.generation)

    def summary(self) -> dict[str, Any]:
        """The raw document (an empty registry if the object does not exist yet)."""
        return self._with_retries(lambda: self._read()[0], "read")

    def entries(self, env: str) -> list[RegistryEntry]:
        """The entries of ``env``, in the order they were added."""
        return _env_entries(self.summary(), normalize_env(env))

    def entry(self, env: str, model_type: str, run_id: str) -> RegistryEntry:
        """The entry of ``(model_type, run_id)`` in ``env``; ``UnknownRunError`` if there is none."""
        environment = normalize_env(env)
        return find_entry(self.entries(environment), environment, model_type, run_id)

    def champion(self, env: str, model_type: str | None = None) -> RegistryEntry | None:
        """The entry to serve in ``env``: see ``select_champion``."""
        environment = normalize_env(env)
        return select_champion(self.entries(environment), model_type, allow_test_mode=environment != "prod")

    # --- writes ------------------------------------------------------------------------------
    def add_entry(self, env: str, entry: RegistryEntry | Mapping[str, Any]) -> RegistryEntry:
        """Register a trained model; idempotent for an identical entry (a retried call).

        Entries are added as non-champions: ``promote`` is the only way to move the flag, so that
        the one-champion invariant and the test-mode rule live in one place.
        """
        environment = normalize_env(env)
        new = entry if isinstance(entry, RegistryEntry) else RegistryEntry.model_validate(dict(entry))
        if new.is_champion:
            raise ValueError(f"run {new.run_id!r}: add the entry with is_champion=False, then promote() it")

        def apply(doc: dict[str, Any]) -> tuple[RegistryEntry, bool]:
            current = _env_entries(doc, environment)
            for existing in current:
                if existing.key != new.key:
                    continue
                # Champion status (and its history) may have moved since; compare the rest.
                settled = existing.model_copy(update={"is_champion": False, "promotions": new.promotions})
                if settled.to_dict() == new.to_dict():
                    return existing, False
                raise DuplicateEntryError(
                    f"{environment}: a different entry for model_type {new.model_type!r} and "
                    f"run_id {new.run_id!r} is already registered"
                )
            _set_env_entries(doc, environment, [*current, new])
            return new, True

        return self._update(apply)

    def promote(
        self,
        env: str,
        model_type: str,
        run_id: str,
        *,
        override_rejection: bool = False,
        reason: str | None = None,
        by: str = "velocast",
        via: str = "registry",
    ) -> PromotionResult:
        """Make ``run_id`` the champion of ``model_type`` in ``env`` (and only it).

        The rules of ``check_promotable`` apply (to the entry as stored at the write). A promotion
        that changes the champion appends a ``PromotionRecord`` (``by``, ``via``, ``reason``, the
        override) to the entry's ``promotions``; re-promoting the champion writes nothing.
        """
        environment = normalize_env(env)
        at = utc_now()  # outside ``apply``, which must be deterministic across retries
        note = reason.strip() if reason and reason.strip() else None

        def apply(doc: dict[str, Any]) -> tuple[PromotionResult, bool]:
            current = _env_entries(doc, environment)
            target = find_entry(current, environment, model_type, run_id)
            check_promotable(environment, target, override_rejection=override_rejection, reason=reason)
            if target.is_champion and not any(
                e.is_champion and e.model_type == model_type and e.run_id != run_id for e in current
            ):
                message = f"{environment}: {model_type!r} run {run_id!r} is already the champion"
                return PromotionResult(
                    status=PromotionStatus.ALREADY_CHAMPION,
                    message=message,
                    champion=target,
                    previous_champion=None,
                ), False
            previous_run = next(
                (
                    e.run_id
                    for e in current
                    if e.is_champion and e.key != target.key and e.model_type == model_type
                ),
                None,
            )
            record = PromotionRecord(
                at=at,
                by=by,
                via=via,
                reason=note,
                override_rejection=override_rejection and target.is_rejected,
                decision=target.decision,
                previous_champion_run_id=previous_run,
            )
            promoted = target.model_copy(
                update={"is_champion": True, "promotions": [*target.promotions, record]}
            )
            updated: list[RegistryEntry] = []
            demoted: list[RegistryEntry] = []
            for entry in current:
                if entry.key == target.key:
                    updated.append(promoted)
                elif entry.model_type == model_type and entry.is_champion:
                    demoted.append(entry.model_copy(update={"is_champion": False}))
                    updated.append(demoted[-1])
                else:
                    updated.append(entry)
            _set_env_entries(doc, environment, updated)
            previous = demoted[0] if demoted else None
            replaced = f", replacing run {previous.run_id!r}" if previous is not None else ""
            overridden = f" (its REJECT decision overridden: {note})" if record.override_rejection else ""
            message = (
                f"{environment}: {model_type!r} run {run_id!r} is now the champion{replaced}{overridden}"
            )
            return PromotionResult(
                status=PromotionStatus.PROMOTED,
                message=message,
                champion=promoted,
                previous_champion=previous,
                record=record,
            ), True

        result = self._update(apply)
        log.info("%s", result.message)
        return result

    # --- storage -----------------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Any], int]:
        """The document and its generation (0: the object does not exist)."""
        metadata = self.bucket.get_blob(self.object_name)
        if metadata is None:
            return empty_summary(), 0
        generation = int(metadata.generation)
        # A fresh blob (no media link) and the generation as a precondition: the bytes are those
        # of the generation the write will be conditioned on, or GCS answers 412 and we retry.
        data = self.bucket.blob(self.object_name).download_as_bytes(if_generation_match=generation)
        try:
            doc = json.loads(data)
        except json.JSONDecodeError as error:
            raise RegistryFormatError(f"{self.uri} is not valid JSON: {error}") from error
        return _check_format(doc), generation

    def _update(self, apply: Callable[[dict[str, Any]], tuple[T, bool]]) -> T:
        """Read, ``apply`` (which mutates the document and says whether it changed), write if so.

        ``apply`` must be deterministic from the document: it runs again on every retry.
        """

        def attempt() -> T:
            doc, generation = self._read()
            result, changed = apply(doc)
            if changed:
                payload = json.dumps(doc, indent=2, sort_keys=False, allow_nan=False)
                # With a generation precondition the client library may also retry transient
                # errors of the upload safely.
                self.bucket.blob(self.object_name).upload_from_string(
                    payload, content_type="application/json", if_generation_match=generation
                )
            return result

        return self._with_retries(attempt, "update")

    def _with_retries(self, operation: Callable[[], T], what: str) -> T:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return operation()
            # NotFound: the object was deleted between the metadata read and the download.
            except (PreconditionFailed, NotFound) as error:
                if attempt == self.max_attempts:
                    raise RegistryConflictError(
                        f"{what} of {self.uri} kept conflicting with concurrent writers "
                        f"({self.max_attempts} attempts): {error}"
                    ) from error
                delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
                # Full jitter: writers that collided do not collide again in lockstep.
                time.sleep(random.uniform(0, delay))
        raise AssertionError("unreachable")  # pragma: no cover
