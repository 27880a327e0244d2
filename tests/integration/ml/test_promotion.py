"""Promoting a REJECTed model through the registry (GCS emulator) and ``velocast promote``.

The entries are stored outside MLflow (gs:// URIs), so the alias part is ``not_applicable``: the
MLflow alias is tested through ``POST /promote_champion`` (tests/serving/api/test_admin.py) and
``velocast.ml.promotion`` on trained models (test_tracking_training.py).
"""

from __future__ import annotations

import argparse
import io
import json
import uuid
from contextlib import redirect_stdout
from typing import Any

import pytest

from tests.unit.ml.registry_samples import entry
from velocast.cli.main import run_handler
from velocast.cli.ml import cmd_promote, register
from velocast.ml.registry import PromotionStatus, Registry, RejectedModelError
from velocast.ml.registry_entries import RegistryEntry
from velocast.settings import VelocastSettings

pytestmark = [pytest.mark.stack]

REASON = "REJECT: challenger 'hgb' R² on test_baseline is 0.2000, below the minimum 0.6000."


def stored_entry(
    run_id: str, decision: str, r2_current: float, *, reason: str | None = None
) -> RegistryEntry:
    extra: dict[str, Any] = {"decision": decision} | ({"decision_reason": reason} if reason else {})
    sample = entry(run_id, r2_current=r2_current, extra=extra)
    return sample.model_copy(update={"model_uri": f"gs://velocast-local/tests/{run_id}.joblib"})


@pytest.fixture
def promotion_settings(local_stack: Any, settings: VelocastSettings) -> VelocastSettings:
    return settings.model_copy(update={"registry_object": f"tests/{uuid.uuid4().hex}/summary.json"})


@pytest.fixture
def registry(promotion_settings: VelocastSettings) -> Registry:
    registry = Registry(promotion_settings)
    registry.add_entry("dev", stored_entry("deployed", "DEPLOY", 0.80))
    registry.add_entry("dev", stored_entry("forgot", "REJECT", 0.90, reason=REASON))
    return registry


def run_promote(argv: list[str], settings: VelocastSettings) -> tuple[int, dict[str, Any]]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    out = io.StringIO()
    with redirect_stdout(out):
        status = run_handler(
            cmd_promote, parser.parse_args(["promote", "--model-type", "hgb", *argv]), settings
        )
    return status, json.loads(out.getvalue())


def test_the_registry_records_an_override_and_keeps_retried_adds_idempotent(registry: Registry) -> None:
    # No champion yet: the fallback serves the DEPLOYed model, not the REJECTed one that scores better lately.
    assert registry.champion("dev", "hgb").run_id == "deployed"  # type: ignore[union-attr]
    generation = registry.generation()
    with pytest.raises(RejectedModelError, match="deployment decision REJECT"):
        registry.promote("dev", "hgb", "forgot")
    assert registry.generation() == generation  # refused: nothing written

    result = registry.promote(
        "dev",
        "hgb",
        "forgot",
        override_rejection=True,
        reason="  the baseline is stale  ",
        by="bob",
        via="tests",
    )
    assert result.status is PromotionStatus.PROMOTED and result.record is not None
    stored = registry.entry("dev", "hgb", "forgot")
    assert stored.is_champion and stored.promotions == [result.record]
    assert result.record.reason == "the baseline is stale" and result.record.override_rejection
    assert result.record.by == "bob" and result.record.decision == "REJECT"
    assert registry.champion("dev", "hgb").run_id == "forgot"  # type: ignore[union-attr]

    # A promotion that needs no override records one too, naming the champion it replaced.
    back = registry.promote("dev", "hgb", "deployed", by="bob", via="tests")
    assert back.record is not None and back.record.override_rejection is False
    assert back.record.previous_champion_run_id == "forgot" and back.record.reason is None
    # Training retrying its add_entry after a promotion is still the same entry.
    again = registry.add_entry("dev", stored_entry("forgot", "REJECT", 0.90, reason=REASON))
    assert again.promotions == stored.promotions and not again.is_champion


def test_cli_promote_needs_the_override_flags_for_a_rejected_model(
    registry: Registry, promotion_settings: VelocastSettings
) -> None:
    status, output = run_promote(["--run-id", "forgot"], promotion_settings)
    assert status == 2 and output["type"] == "RejectedModelError" and REASON in output["error"]
    status, output = run_promote(["--run-id", "forgot", "--override-rejection"], promotion_settings)
    assert status == 2 and output["type"] == "OverrideReasonMissingError"
    assert not any(e.is_champion for e in registry.entries("dev"))

    status, output = run_promote(
        ["--run-id", "forgot", "--override-rejection", "--reason", "hotfix", "--by", "carol"],
        promotion_settings,
    )
    assert status == 0, output
    assert output["status"] == "promoted" and output["alias"]["status"] == "not_applicable"
    assert output["record"]["via"] == "cli" and output["record"]["by"] == "carol"
    assert output["record"]["override_rejection"] is True and output["record"]["reason"] == "hotfix"
    assert registry.entry("dev", "hgb", "forgot").promotions[-1].model_dump(mode="json") == output["record"]
