"""The model store: model URIs (gs://, file, models:/ through MLflow) and retries of failed loads."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import numpy as np
import pytest
from velocast_serving.model_store import ModelLoadError, ModelStore, load_model_uri

from velocast.gcp.clients import storage_client
from velocast.ml.registry import Registry

pytestmark = [pytest.mark.stack]


def test_model_uri_schemes(artifacts, settings, monkeypatch):
    client = storage_client(settings)
    assert load_model_uri(artifacts.uri_a, client).model_type == "hgb"
    assert load_model_uri(artifacts.path_a.as_uri(), client).model_type == "hgb"
    assert load_model_uri(str(artifacts.path_a), client).model_type == "hgb"
    with pytest.raises(ModelLoadError, match="unsupported URI scheme 's3'"):
        load_model_uri("s3://bucket/model.joblib", client)
    with pytest.raises(ModelLoadError, match="cannot load gs://"):
        load_model_uri(f"gs://{settings.bucket}/tests/serving/missing.joblib", client)
    with pytest.raises(ModelLoadError, match=r"UnpicklingError|EOFError|not a velocast model"):
        load_model_uri(artifacts.uri_corrupt, client)

    # models:/ goes through velocast.ml.model_uri_loader, imported only then.
    monkeypatch.setitem(sys.modules, "velocast.ml.model_uri_loader", None)
    with pytest.raises(
        ModelLoadError, match=r"models:/ URIs need velocast.ml.model_uri_loader.load_registered_model"
    ):
        load_model_uri("models:/velocast-bike-traffic@champion", client)


def test_models_uri_loads_from_the_mlflow_server(artifacts, settings, mlflow_server):
    """A model logged and registered in the real MLflow server serves by ``models:/`` URI."""
    from velocast.ml.evaluation import double_evaluate
    from velocast.ml.tracking import Tracker

    tracker = Tracker(settings, experiment_name=f"serving-{uuid.uuid4().hex[:8]}")
    frame = artifacts.frame.tail(500)
    logged = tracker.log_training(
        artifacts.model_b,
        double_evaluate(artifacts.model_b, None, frame, frame),
        None,
        {"rows": len(frame)},
        {"test_baseline": frame, "test_current": frame},
    )
    loaded = load_model_uri(logged.model_uri, storage_client(settings))
    assert loaded.model_type == "hgb"
    assert np.array_equal(loaded.predict(frame), artifacts.model_b.predict(frame))


def test_a_failed_load_is_retried_with_a_backoff(settings, kit, artifacts):
    """A transient failure (GCS blip) heals without any registry change; no retry storm meanwhile."""
    test_settings = kit.settings_for(settings)
    kit.champion_registry(test_settings, artifacts)
    calls: list[str] = []

    def flaky(uri: str, client: Any) -> Any:
        calls.append(uri)
        if len(calls) == 1:
            raise ConnectionError("connection reset by peer")
        return load_model_uri(uri, client)

    store = ModelStore(test_settings, loader=flaky)
    assert store.refresh() is False
    assert "ConnectionError: connection reset by peer" in store.snapshot.errors["hgb"]
    assert store.refresh() is False and len(calls) == 1  # before the retry time: no new attempt
    assert kit.wait_for(store.refresh, timeout=5, interval=0.05)
    assert len(calls) == 2 and store.snapshot.errors == {}
    assert store.snapshot.models["hgb"].entry.run_id == "run-a"


def _forgetful(kit: Any, run_id: str, uri: str) -> Any:
    """A challenger that forgot the reference period: R² 0.20 on test_baseline, 0.90 on test_current."""
    reason = "REJECT: challenger 'hgb' R² on test_baseline is 0.2000, below the minimum 0.6000."
    challenger = kit.entry(run_id, uri, 0.90, extra={"decision": "REJECT", "decision_reason": reason})
    baseline = challenger.metrics.test_baseline.model_copy(update={"r2": 0.20})
    return challenger.model_copy(
        update={"metrics": challenger.metrics.model_copy(update={"test_baseline": baseline})}
    )


def test_the_no_champion_fallback_never_serves_a_rejected_model(settings, kit, artifacts):
    test_settings = kit.settings_for(settings)
    registry = Registry(test_settings)
    registry.add_entry("dev", kit.entry("run-a", artifacts.uri_a, 0.80, extra={"decision": "DEPLOY"}))
    registry.add_entry("dev", _forgetful(kit, "run-forgot", artifacts.uri_b))
    store = ModelStore(test_settings)
    store.refresh()
    assert store.snapshot.models["hgb"].entry.run_id == "run-a"  # not the better-lately REJECT
    assert store.snapshot.errors == {} and store.snapshot.unserved == {}
    assert registry.champion("dev", "hgb").run_id == "run-a"  # type: ignore[union-attr]


def test_a_type_with_only_rejected_models_serves_nothing_and_says_why(settings, kit, artifacts):
    test_settings = kit.settings_for(settings)
    registry = Registry(test_settings)
    registry.add_entry("dev", _forgetful(kit, "run-forgot", artifacts.uri_b))
    registry.add_entry("dev", kit.entry("run-low", artifacts.uri_a, 0.5, extra={"decision": "REJECT"}))
    calls: list[str] = []

    def loader(uri: str, client: Any) -> Any:
        calls.append(uri)
        return load_model_uri(uri, client)

    store = ModelStore(test_settings, loader=loader)
    store.refresh()
    snapshot = store.snapshot
    assert not snapshot.ready and snapshot.unserved == {"hgb": "only_rejected"}
    assert snapshot.errors["hgb"].startswith("only_rejected: every 'hgb' entry of dev was REJECTed")
    assert snapshot.default_model_type is None
    # Not a failed load: nothing was loaded, and nothing is retried until the registry changes.
    assert calls == []
    assert store.refresh() is False and calls == []
