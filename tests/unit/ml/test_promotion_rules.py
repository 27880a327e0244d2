"""The registry's rules about REJECTed models, without storage: what the no-champion fallback may
serve, why it serves nothing, what a promotion needs, and which entries have an MLflow alias."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.ml.registry_samples import entry
from velocast.ml.decisions import Decision
from velocast.ml.promotion import UnmirroredModelUriError, mlflow_version
from velocast.ml.registry import (
    ChampionTestModeError,
    OverrideReasonMissingError,
    RejectedModelError,
    check_promotable,
)
from velocast.ml.registry_entries import (
    REJECT_DECISION,
    RegistryEntry,
    champion_alias,
    select_champion,
    why_no_champion,
)

FORGOT_THE_REFERENCE = "REJECT: challenger 'hgb' R² on test_baseline is 0.2000, below the minimum 0.6000."


def decided(
    run_id: str, decision: str, r2_current: float, *, reason: str | None = None, **options: Any
) -> RegistryEntry:
    extra: dict[str, Any] = {"decision": decision}
    if reason is not None:
        extra["decision_reason"] = reason
    return entry(run_id, r2_current=r2_current, extra=extra, **options)


def forgetful(run_id: str = "forgot", **options: Any) -> RegistryEntry:
    """The issue's challenger: R² 0.20 on test_baseline, 0.90 on test_current, REJECTed."""
    challenger = decided(run_id, "REJECT", 0.90, reason=FORGOT_THE_REFERENCE, **options)
    metrics = challenger.metrics.model_copy(
        update={"test_baseline": challenger.metrics.test_baseline.model_copy(update={"r2": 0.20})}
    )
    return challenger.model_copy(update={"metrics": metrics})


def test_the_decision_constant_is_the_decisions_one() -> None:
    assert Decision.REJECT.value == REJECT_DECISION


def test_the_fallback_never_serves_a_rejected_entry() -> None:
    entries = [forgetful(), decided("deployed", "DEPLOY", 0.80), decided("skipped", "SKIP", 0.75)]
    assert select_champion(entries, "hgb").run_id == "deployed"  # type: ignore[union-attr]
    assert select_champion(entries).run_id == "deployed"  # type: ignore[union-attr]
    # Entries without a recorded decision (bootstrap, older entries) are still candidates.
    assert select_champion([forgetful(), entry("legacy", r2_current=0.5)]).run_id == "legacy"  # type: ignore[union-attr]


def test_only_rejected_entries_serve_nothing_and_say_why() -> None:
    only_rejected = [forgetful(), decided("also-rejected", "REJECT", 0.7)]
    assert select_champion(only_rejected, "hgb") is None
    assert select_champion(only_rejected) is None
    assert why_no_champion(only_rejected, "hgb") == "only_rejected"
    # Another type is unaffected, and the best across types is never the REJECTed one.
    mixed = [*only_rejected, decided("rf-1", "DEPLOY", 0.6, model_type="rf")]
    assert select_champion(mixed).run_id == "rf-1"  # type: ignore[union-attr]
    assert why_no_champion(mixed, "rf") is None
    assert why_no_champion(mixed, "lstm") is None  # no entries: nothing to explain


def test_test_mode_and_rejection_reasons_in_prod() -> None:
    samples = [decided("sample", "DEPLOY", 0.99, test_mode=True)]
    assert why_no_champion(samples, "hgb", allow_test_mode=False) == "only_test_mode"
    assert why_no_champion(samples, "hgb", allow_test_mode=True) is None
    # Test-mode entries cannot serve in prod, the others are REJECTed: the REJECTs are the reason.
    both = [*samples, forgetful()]
    assert select_champion(both, "hgb", allow_test_mode=False) is None
    assert why_no_champion(both, "hgb", allow_test_mode=False) == "only_rejected"


def test_a_promoted_rejected_entry_serves() -> None:
    # Promotion (with the override) sets the flag: the champion serves whatever its decision.
    entries = [forgetful(is_champion=True), decided("deployed", "DEPLOY", 0.95)]
    assert select_champion(entries, "hgb").run_id == "forgot"  # type: ignore[union-attr]


def test_promoting_a_rejected_entry_needs_an_explained_override() -> None:
    with pytest.raises(RejectedModelError) as refused:
        check_promotable("dev", forgetful())
    message = str(refused.value)
    assert "deployment decision REJECT" in message and FORGOT_THE_REFERENCE in message
    assert "override_rejection" in message and "'forgot'" in message
    # Without a stored reason, the message gives the stored scores.
    with pytest.raises(RejectedModelError, match=r"no reason recorded; R² 0\.8200 on test_baseline"):
        check_promotable("dev", decided("old", "REJECT", 0.9))
    for blank in (None, "", "   "):
        with pytest.raises(OverrideReasonMissingError, match="needs a reason"):
            check_promotable("dev", forgetful(), override_rejection=True, reason=blank)
    check_promotable("dev", forgetful(), override_rejection=True, reason="incident 42: the baseline is stale")
    check_promotable("prod", decided("deployed", "DEPLOY", 0.8))
    # The override never lets a test-mode model into prod.
    with pytest.raises(ChampionTestModeError):
        check_promotable("prod", forgetful(test_mode=True), override_rejection=True, reason="no")


def test_which_entries_have_an_mlflow_alias() -> None:
    def at(uri: str) -> RegistryEntry:
        return entry("run-1").model_copy(update={"model_uri": uri})

    assert mlflow_version(at("models:/velocast-bike-traffic-hgb/7")) == ("velocast-bike-traffic-hgb", 7)
    assert mlflow_version(at("gs://bucket/models/run-1.joblib")) is None
    assert mlflow_version(at("/tmp/model.joblib")) is None
    with pytest.raises(UnmirroredModelUriError, match="names an alias"):
        mlflow_version(at("models:/velocast-bike-traffic-hgb@champion"))
    assert champion_alias("PROD") == "champion" and champion_alias("dev") == "champion-dev"
