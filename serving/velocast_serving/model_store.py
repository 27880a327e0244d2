"""The champions this worker serves, and their hot reload.

``ModelStore.refresh`` reads the registry (``summary.json``) of ``settings.serving_env``, picks the
model to serve for every model type present (the champion, else the best test_current R² among the
entries not REJECTed by their deployment decision: the rule of
``velocast.ml.registry_entries.select_champion``), loads the ones that changed and swaps them in with
one assignment of an immutable ``StoreSnapshot``: a request holds the snapshot it started with.
A type with entries but nothing to serve (only REJECTed ones; only test-mode ones in prod) is
listed in ``unserved`` with its reason code, and in ``errors`` with a sentence.

A background thread calls ``refresh`` every ``serving_reload_interval_seconds``; it costs one
metadata read (``Registry.generation()``) unless the registry changed. Each uvicorn worker runs its
own store, so every worker picks up a promotion within an interval plus the load time.

A model that fails to load leaves the previous one of its type serving; the failure is counted
(``model_reloads_total{result="failure"}``), kept in ``errors`` (``/ready``, ``/model_summary``) and
retried with a backoff (interval → 5 min), and at once when the registry changes again.

Model URIs: ``gs://bucket/path.joblib`` (downloaded with the registry's storage client),
``file:///path`` or a plain path (files written by ``VelocastModel.save``), and ``models:/name@alias``
or ``models:/name/version`` (MLflow's registry, through ``velocast.ml.model_uri_loader``, imported
only when such a URI shows up: it reads the tracking server's REST API without importing MLflow,
which alone cost a worker about a second per start-up).
"""

from __future__ import annotations

import importlib
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit

import google.cloud.storage as gcs
import pandas as pd

from velocast.errors import UnavailableError
from velocast.ml.model_base import VelocastModel, load_model
from velocast.ml.models import DEFAULT_MODEL_TYPE
from velocast.ml.registry import Registry
from velocast.ml.registry_entries import (
    NoChampionReason,
    RegistryEntry,
    normalize_env,
    select_champion,
    why_no_champion,
)
from velocast.settings import VelocastSettings

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS: Final = 300.0
REGISTRY_ERROR_KEY: Final = "registry"
# A one-row prediction right after loading: a file that unpickles but cannot predict (library
# mismatch, truncated estimator) is refused before it serves.
_SMOKE_TIME: Final = pd.Timestamp("2024-01-08T08:00:00Z")


class ModelLoadError(UnavailableError):
    """A model URI that cannot be turned into a fitted ``VelocastModel``."""


@dataclass(frozen=True)
class LoadedModel:
    entry: RegistryEntry
    model: VelocastModel
    loaded_at: datetime
    load_seconds: float


def _frozen_empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class StoreSnapshot:
    """What a worker serves at one instant (never mutated: replaced as a whole)."""

    env: str
    models: Mapping[str, LoadedModel] = field(default_factory=lambda: MappingProxyType({}))
    # Registry generation the models reflect; None until the registry was read once.
    generation: int | None = None
    checked_at: datetime | None = None
    # model type (or "registry") → the last error; empty when everything loaded.
    errors: Mapping[str, str] = field(default_factory=_frozen_empty)
    # model type → why none of its entries may serve (also in ``errors``; not retried: a registry
    # change, such as a promotion with override_rejection, is what changes it).
    unserved: Mapping[str, NoChampionReason] = field(default_factory=lambda: MappingProxyType({}))
    # Type of the best champion across types: serves requests without model_type when the
    # default type has no model.
    best_model_type: str | None = None

    @property
    def ready(self) -> bool:
        return bool(self.models)

    @property
    def default_model_type(self) -> str | None:
        if DEFAULT_MODEL_TYPE in self.models:
            return DEFAULT_MODEL_TYPE
        if self.best_model_type in self.models:
            return self.best_model_type
        return next(iter(sorted(self.models)), None)


class StoreListener(Protocol):
    def model_loaded(self, entry: RegistryEntry) -> None: ...
    def model_load_failed(self, model_type: str) -> None: ...
    def registry_poll_failed(self) -> None: ...
    def models_changed(self, env: str, entries: Mapping[str, RegistryEntry]) -> None: ...


ModelLoader = Callable[[str, gcs.Client], VelocastModel]


def load_model_uri(uri: str, client: gcs.Client) -> VelocastModel:
    """The model at ``uri``; any failure is a ``ModelLoadError`` saying what went wrong."""
    try:
        parts = urlsplit(uri)
        if parts.scheme == "gs":
            return _load_gcs(parts.netloc, parts.path.lstrip("/"), client)
        if parts.scheme == "file":
            return load_model(Path(unquote(parts.path)))
        if parts.scheme == "models":
            return _load_mlflow(uri, client)
        if parts.scheme == "" or (len(parts.scheme) == 1 and uri[1:3] in {":\\", ":/"}):
            return load_model(Path(uri))
    except ModelLoadError:
        raise
    # Unpickling a damaged file raises about anything (EOFError, UnpicklingError, KeyError...).
    except Exception as error:
        raise ModelLoadError(f"cannot load {uri}: {type(error).__name__}: {error}") from error
    raise ModelLoadError(f"cannot load {uri}: unsupported URI scheme {parts.scheme!r} (gs, file, models)")


def _load_gcs(bucket: str, name: str, client: gcs.Client) -> VelocastModel:
    if not bucket or not name:
        raise ModelLoadError(f"not a gs://bucket/object URI: gs://{bucket}/{name}")
    with tempfile.TemporaryDirectory(prefix="velocast-model-") as tmp:
        path = Path(tmp) / Path(name).name
        client.bucket(bucket).blob(name).download_to_filename(str(path))
        return load_model(path)


def _load_mlflow(uri: str, client: gcs.Client) -> VelocastModel:
    # Imported here: only models:/ URIs need it. It never imports MLflow itself (only for what it
    # does not read: a non-http tracking URI, an s3:// store...). ``client`` reads gs:// stores.
    try:
        registered = importlib.import_module("velocast.ml.model_uri_loader")
        loader = registered.load_registered_model
    except (ImportError, AttributeError) as error:
        raise ModelLoadError(
            f"cannot load {uri}: models:/ URIs need velocast.ml.model_uri_loader.load_registered_model, "
            f"which is not available ({type(error).__name__}: {error})"
        ) from error
    model = loader(uri, storage=client)
    if not isinstance(model, VelocastModel):
        raise ModelLoadError(f"cannot load {uri}: it holds a {type(model).__name__}, not a velocast model")
    return model


_UNSERVED_SENTENCES: Final[dict[NoChampionReason, str]] = {
    "only_rejected": (
        "every {model_type!r} entry of {env} was REJECTed by its deployment decision: none is served "
        "(promote one with override_rejection and a reason to serve it anyway)"
    ),
    "only_test_mode": "every {model_type!r} entry of {env} was trained in test mode: none is served in prod",
}


def _checked(model: VelocastModel, entry: RegistryEntry) -> VelocastModel:
    if model.model_type != entry.model_type:
        raise ModelLoadError(
            f"{entry.model_uri} holds a {model.model_type!r} model, registered as {entry.model_type!r}"
        )
    counters = model.encoder.counters if model.encoder is not None else ()
    probe = pd.DataFrame(
        {
            "counter_id": pd.array([counters[0] if counters else "probe"], dtype="string"),
            "counted_at": pd.Series([_SMOKE_TIME]),
        }
    )
    try:
        values = model.predict(probe)
    except Exception as error:
        raise ModelLoadError(f"{entry.model_uri} loads but cannot predict: {error}") from error
    if values.shape != (1,) or not math.isfinite(float(values[0])):
        raise ModelLoadError(f"{entry.model_uri} predicts {values!r} for one row")
    return model


class ModelStore:
    def __init__(
        self,
        settings: VelocastSettings,
        *,
        registry: Registry | None = None,
        loader: ModelLoader = load_model_uri,
    ) -> None:
        self.settings = settings
        self.env = normalize_env(settings.serving_env)
        self.interval = settings.serving_reload_interval_seconds
        self._registry = registry
        self._loader = loader
        self._snapshot = StoreSnapshot(env=self.env)
        self._listeners: list[StoreListener] = []
        # Called after every registry check with the snapshot (e.g. the worker board's heartbeat).
        self._after_refresh: list[Callable[[StoreSnapshot], None]] = []
        # One refresh at a time (the poller and a promotion may both ask).
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_delay = self.interval
        self._retry_at = 0.0

    # --- reading --------------------------------------------------------------------------------
    @property
    def snapshot(self) -> StoreSnapshot:
        return self._snapshot

    @property
    def registry(self) -> Registry:
        """Created on first use: without credentials the app still starts (and is not ready)."""
        if self._registry is None:
            self._registry = Registry(self.settings)
        return self._registry

    def load_entry(self, entry: RegistryEntry) -> VelocastModel:
        """The model of ``entry``: the one served if it is that run, else loaded (and checked)."""
        served = self._snapshot.models.get(entry.model_type)
        if served is not None and served.entry.run_id == entry.run_id:
            return served.model
        return _checked(self._loader(entry.model_uri, self.registry.client), entry)

    def add_listener(self, listener: StoreListener) -> None:
        self._listeners.append(listener)
        snapshot = self._snapshot
        listener.models_changed(self.env, {t: m.entry for t, m in snapshot.models.items()})

    # --- reloading ------------------------------------------------------------------------------
    def after_refresh(self, callback: Callable[[StoreSnapshot], None]) -> None:
        self._after_refresh.append(callback)

    def refresh(self, *, force: bool = False) -> bool:
        """Bring the served models in line with the registry; True if a served model changed."""
        with self._lock:
            changed = self._refresh(force)
            for callback in self._after_refresh:
                callback(self._snapshot)
            return changed

    def _refresh(self, force: bool) -> bool:
        current = self._snapshot
        now = datetime.now(UTC)
        try:
            registry = self.registry
            generation = registry.generation()
            failed_loads = set(current.errors) - set(current.unserved)
            retry_due = REGISTRY_ERROR_KEY in current.errors or (
                bool(failed_loads) and time.monotonic() >= self._retry_at
            )
            if not force and generation == current.generation and not retry_due:
                self._snapshot = replace(current, checked_at=now)
                return False
            entries = registry.entries(self.env)
        except Exception as error:  # GCS down, no credentials, a damaged summary.json...
            message = f"cannot read the registry {self._registry_uri()}: {type(error).__name__}: {error}"
            if current.errors.get(REGISTRY_ERROR_KEY) != message:
                log.warning("%s", message)
            for listener in self._listeners:
                listener.registry_poll_failed()
            stale = {**current.errors, REGISTRY_ERROR_KEY: message}
            self._snapshot = replace(current, checked_at=now, errors=MappingProxyType(stale))
            return False

        allow_test_mode = self.env != "prod"
        wanted = {
            model_type: select_champion(entries, model_type, allow_test_mode=allow_test_mode)
            for model_type in sorted({entry.model_type for entry in entries})
        }
        best = select_champion(entries, allow_test_mode=allow_test_mode)
        models: dict[str, LoadedModel] = {}
        errors: dict[str, str] = {}
        unserved: dict[str, NoChampionReason] = {}
        for model_type, entry in wanted.items():
            if entry is None:
                reason = why_no_champion(entries, model_type, allow_test_mode=allow_test_mode)
                if reason is not None:
                    unserved[model_type] = reason
                    sentence = _UNSERVED_SENTENCES[reason].format(model_type=model_type, env=self.env)
                    errors[model_type] = f"{reason}: {sentence}"
                continue
            previous = current.models.get(model_type)
            if previous is not None and (previous.entry.key, previous.entry.model_uri) == (
                entry.key,
                entry.model_uri,
            ):
                # Same model; the entry's flags (is_champion) may have moved.
                models[model_type] = replace(previous, entry=entry)
                continue
            try:
                models[model_type] = self._load(entry)
            except ModelLoadError as error:
                errors[model_type] = f"run {entry.run_id!r}: {error}"
                log.error("keeping the previous %s model: %s", model_type, errors[model_type])
                for listener in self._listeners:
                    listener.model_load_failed(model_type)
                if previous is not None:
                    models[model_type] = previous

        if unserved != dict(current.unserved):
            for model_type in unserved:
                log.warning("not serving %s: %s", model_type, errors[model_type])
        if set(errors) - set(unserved):
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(MAX_RETRY_SECONDS, self._retry_delay * 2)
        else:
            self._retry_delay = self.interval
        changed = {t: m.entry.key for t, m in models.items()} != {
            t: m.entry.key for t, m in current.models.items()
        }
        self._snapshot = StoreSnapshot(
            env=self.env,
            models=MappingProxyType(models),
            generation=generation,
            checked_at=now,
            errors=MappingProxyType(errors),
            unserved=MappingProxyType(unserved),
            best_model_type=best.model_type if best is not None else None,
        )
        if changed:
            served = {t: m.entry for t, m in models.items()}
            log.info("serving %s", {t: e.run_id for t, e in served.items()} or "nothing")
            for listener in self._listeners:
                listener.models_changed(self.env, served)
        return changed

    def _load(self, entry: RegistryEntry) -> LoadedModel:
        started = time.perf_counter()
        try:
            model = _checked(self._loader(entry.model_uri, self.registry.client), entry)
        except ModelLoadError:
            raise
        except Exception as error:  # a custom loader's failure is still a load failure
            raise ModelLoadError(f"cannot load {entry.model_uri}: {type(error).__name__}: {error}") from error
        seconds = time.perf_counter() - started
        log.info(
            "loaded %s run %s from %s in %.2fs", entry.model_type, entry.run_id, entry.model_uri, seconds
        )
        for listener in self._listeners:
            listener.model_loaded(entry)
        return LoadedModel(entry=entry, model=model, loaded_at=datetime.now(UTC), load_seconds=seconds)

    def _registry_uri(self) -> str:
        return f"gs://{self.settings.bucket}/{self.settings.registry_object}"

    # --- the poller -----------------------------------------------------------------------------
    def start(self) -> None:
        """Poll the registry in a daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="velocast-model-reload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any surprise
                log.exception("model reload failed")
