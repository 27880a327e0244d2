"""The original system's clients: raw-export payloads on /predict and /compat/predict.

The payloads are the ones those clients send: ``{"records": [...], "model_type": "rf", "metric":
"r2"}`` where a record is a row of the raw export with French column names, the counter given by its
name only (``nom_du_compteur``), a date with its Paris offset and ``"lat, lon"`` coordinates. The rows
come from the repository's real data: the training slice of the fixtures (10 counters) and the City's
CSV export sample (``raw_export_samples``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from velocast_serving.counter_names import name_key
from velocast_serving.main import create_app

from velocast.ml.model_base import VelocastModel, load_model
from velocast.ml.models import build_model
from velocast.ml.registry_entries import RegistryEntry

pytestmark = [pytest.mark.stack]

EXPORT_CSV = (
    Path(__file__).resolve().parents[2]
    / "data"
    / "paris_bike_counts"
    / "raw_export_samples"
    / "fredericsov_pybike__comptage-velo-donnees-compteurs.csv"
)
DAY = "2024-02-20"  # a Tuesday of the training window; the rows' hours are local
HOURS = (7, 8, 9, 18)
# Counters of the fixtures' slice whose names have accents and apostrophes.
COUNTERS = ("100036718-104036718", "100036719-103036719", "100003096-353242251")


def export_record(row: pd.Series) -> dict[str, Any]:
    """A raw-export row as the original clients post it: French columns, the counter by name only."""
    local = row["counted_at"].tz_convert("Europe/Paris")
    return {
        "nom_du_compteur": row["counter_name"],
        "date_et_heure_de_comptage": local.isoformat(),  # e.g. 2024-02-20T08:00:00+01:00
        "coordonnées_géographiques": f"{row['latitude']}, {row['longitude']}",
        "mois_annee_comptage": local.strftime("%Y-%m"),
        "comptage_horaire": float(row["hourly_count"]),
    }


def normalized_record(counter_id: str, counted_at: str) -> dict[str, Any]:
    return {"counter_id": counter_id, "counted_at": counted_at}


def csv_export_rows() -> list[dict[str, Any]]:
    """The City's CSV export (all 16 columns) as a pandas client sends it, without the counter id."""
    frame = pd.read_csv(EXPORT_CSV, sep=";", encoding="utf-8-sig")
    frame.columns = [re.sub(r"[\s']+", "_", str(name).strip().lower()) for name in frame.columns]
    assert "coordonnées_géographiques" in frame.columns and "date_d_installation_du_site_de_comptage" in frame
    rows: list[dict[str, Any]] = json.loads(
        frame.drop(columns="identifiant_du_compteur").to_json(orient="records", force_ascii=False)
    )
    return rows


@dataclass(frozen=True)
class Compat:
    client: TestClient
    frame: pd.DataFrame
    rf: VelocastModel
    rows: pd.DataFrame  # the slice's rows the export records are made of, in order


@pytest.fixture(scope="module")
def compat(local_stack, settings, artifacts, kit, tmp_path_factory) -> Iterator[Compat]:
    """An app serving the fixtures' hgb champion (model A) and an rf champion trained on the slice."""
    rf = build_model("rf", {"n_estimators": 10, "max_depth": 12}).fit(artifacts.frame)
    rf_path = rf.save(tmp_path_factory.mktemp("compat") / "rf.joblib")
    test_settings = kit.settings_for(settings)
    registry = kit.champion_registry(test_settings, artifacts)
    registry.add_entry("dev", kit.entry("run-rf", str(rf_path), 0.70, model_type="rf"))
    registry.promote("dev", "rf", "run-rf")
    frame = artifacts.frame
    local = frame["counted_at"].dt.tz_convert("Europe/Paris")
    chosen = frame[
        frame["counter_id"].isin(COUNTERS)
        & (local.dt.strftime("%Y-%m-%d") == DAY)
        & local.dt.hour.isin(HOURS)
    ]
    rows = chosen.sort_values(["counted_at", "counter_id"]).reset_index(drop=True)
    assert len(rows) == len(COUNTERS) * len(HOURS)
    with TestClient(create_app(test_settings)) as client:
        yield Compat(client=client, frame=frame, rf=rf, rows=rows)
        kit.cancel_running_job(client)


def _original_payload(compat: Compat, **fields: Any) -> dict[str, Any]:
    records = [export_record(row) for _, row in compat.rows.iterrows()] + csv_export_rows()
    return {"records": records, **fields}


def _expected_ids(compat: Compat) -> list[str]:
    return compat.rows["counter_id"].tolist() + ["100003096-353242251"] * len(csv_export_rows())


def test_the_original_payload_is_served_by_both_routes(compat, kit):
    payload = _original_payload(compat, model_type="rf", metric="r2")
    assert payload["records"][0]["date_et_heure_de_comptage"] == f"{DAY}T07:00:00+01:00"
    ids = _expected_ids(compat)

    # The same rows in the normalized shape, with their counter ids: the values to match.
    by_id = [
        normalized_record(counter, record["date_et_heure_de_comptage"])
        for counter, record in zip(ids, payload["records"], strict=True)
    ]
    reference = compat.client.post(
        "/predict", json={"records": by_id, "model_type": "rf"}, headers=kit.predict
    )
    assert reference.status_code == 200, reference.text
    expected = [p["predicted_count"] for p in reference.json()["predictions"]]
    assert len(set(expected)) > 1 and max(expected) > 0

    predicted = compat.client.post("/predict", json=payload, headers=kit.predict)
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert [p["counter_id"] for p in body["predictions"]] == ids
    assert [p["predicted_count"] for p in body["predictions"]] == expected
    assert [pd.Timestamp(p["counted_at"]) for p in body["predictions"]] == [
        pd.Timestamp(r["date_et_heure_de_comptage"]) for r in payload["records"]
    ]
    assert body["champion"]["model_type"] == "rf" and body["champion"]["run_id"] == "run-rf"
    assert body["metric"] == {"name": "r2", "value": pytest.approx(0.70), "split": "test_current"}
    assert body["unresolved_counter_names"] == [] and body["unseen_counter_rows"] == 0

    original = compat.client.post("/compat/predict", json=payload, headers=kit.predict)
    assert original.status_code == 200, original.text
    answer = original.json()
    assert set(answer) == {"predictions", "model_metadata"}
    assert answer["predictions"] == expected  # one number per record, in order
    metadata = answer["model_metadata"]
    assert metadata["model_type"] == "rf" and metadata["run_id"] == "run-rf"
    assert metadata["model_uri"].endswith("rf.joblib") and metadata["is_champion"] is True
    assert metadata["metric"] == "r2" and metadata["metric_value"] == pytest.approx(0.70)
    assert metadata["env"] == "dev" and metadata["loaded_at"]
    assert metadata["unseen_counters"] == [] and metadata["unresolved_counter_names"] == []

    # The model itself, on the ids and UTC hours the rows stand for.
    bare = compat.rf.predict(
        pd.DataFrame(
            {
                "counter_id": pd.array(ids, dtype="string"),
                "counted_at": pd.to_datetime(
                    [r["date_et_heure_de_comptage"] for r in payload["records"]], utc=True
                ),
            }
        )
    )
    assert answer["predictions"] == bare.tolist()


def test_bearer_keys_work_and_the_predict_role_is_needed(compat, kit):
    payload = _original_payload(compat, model_type="rf")
    bearer = {"Authorization": f"Bearer {kit.predict_key}"}
    assert compat.client.post("/compat/predict", json=payload, headers=bearer).status_code == 200
    assert compat.client.post("/compat/predict", json=payload).status_code == 401


@pytest.mark.parametrize(("metric", "value"), [("r2", 0.80), ("rmse", 42.0), ("mae", 26.0), (None, 0.80)])
def test_the_metric_is_reported_and_the_champion_answers(compat, kit, metric, value):
    fields = {} if metric is None else {"metric": metric}
    payload = _original_payload(compat, **fields)  # no model_type: the default type, hgb
    answer = compat.client.post("/compat/predict", json=payload, headers=kit.predict)
    assert answer.status_code == 200, answer.text
    metadata = answer.json()["model_metadata"]
    assert metadata["run_id"] == "run-a" and metadata["is_champion"] is True
    assert metadata["metric"] == (metric or "r2") and metadata["metric_value"] == pytest.approx(value)
    body = compat.client.post("/predict", json=payload, headers=kit.predict).json()
    assert body["metric"]["name"] == (metric or "r2") and body["metric"]["value"] == pytest.approx(value)
    assert [p["predicted_count"] for p in body["predictions"]] == answer.json()["predictions"]


@pytest.mark.parametrize("path", ["/predict", "/compat/predict"])
def test_unknown_metrics_and_unnamed_counters_are_precise_422s(compat, kit, path):
    records = _original_payload(compat)["records"][:2]
    unknown = compat.client.post(path, json={"records": records, "metric": "mape"}, headers=kit.predict)
    assert unknown.status_code == 422, unknown.text
    [detail] = unknown.json()["detail"]
    assert detail["loc"] == ["body", "metric"] and "'r2', 'rmse' or 'mae'" in detail["msg"]

    nameless = {key: value for key, value in records[1].items() if key != "nom_du_compteur"}
    nameless["identifiant_du_site_de_comptage"] = 100003096
    response = compat.client.post(path, json={"records": [records[0], nameless]}, headers=kit.predict)
    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["body", "records", 1, "export"]
    assert "needs nom_du_compteur" in detail["msg"]


def test_an_export_row_with_its_counter_id_is_not_resolved_by_name(compat, kit):
    row = csv_export_rows()[0]
    record = {**row, "identifiant_du_compteur": "999-not-trained", "nom_du_compteur": row["nom_du_compteur"]}
    body = compat.client.post("/predict", json={"records": [record]}, headers=kit.predict).json()
    assert body["predictions"][0]["counter_id"] == "999-not-trained"
    assert body["unseen_counters"] == ["999-not-trained"] and body["unresolved_counter_names"] == []


def _serve(fresh_app, kit, artifacts, model: VelocastModel, folder: Path, run_id: str) -> TestClient:
    path = model.save(folder / f"{run_id}.joblib")

    def setup(registry: Any) -> None:
        registry.add_entry("dev", kit.entry(run_id, str(path), 0.80))
        registry.promote("dev", "hgb", run_id)

    client: TestClient = fresh_app(setup)[0]
    return client


def test_unknown_and_ambiguous_names_are_reported_and_still_predicted(fresh_app, kit, artifacts, tmp_path):
    frame = artifacts.frame
    first, second = "100007049-101007049", "100041488-101041488"  # 28 and 27 boulevard Diderot E-O
    shared = frame.loc[frame["counter_id"] == second, "counter_name"].iloc[0]
    renamed = frame.copy()
    renamed.loc[renamed["counter_id"] == first, "counter_name"] = shared  # two counters, one name
    model = build_model("hgb", {"max_iter": 20}).fit(renamed)
    assert model.counter_names is not None and model.counter_names[shared] == (first, second)
    client = _serve(fresh_app, kit, artifacts, model, tmp_path, "run-shared")

    at = f"{DAY}T08:00:00+01:00"
    accents = frame.loc[frame["counter_id"] == "100036718-104036718", "counter_name"].iloc[0]
    assert accents == "39 quai François Mauriac NO-SE"
    unknown_row = {  # a real counter of the City's export the model never saw
        "nom_du_compteur": "Totem 73 boulevard de Sébastopol S-N",
        "date_et_heure_de_comptage": at,
    }
    records = [
        {"nom_du_compteur": shared, "date_et_heure_de_comptage": at},
        {"nom_du_compteur": "  39 QUAI FRANCOIS mauriac no-se ", "date_et_heure_de_comptage": at},
        unknown_row,
        {"nom_du_compteur": shared, "date_et_heure_de_comptage": f"{DAY}T09:00:00+01:00"},
    ]
    body = client.post("/predict", json={"records": records}, headers=kit.predict).json()
    assert [p["counter_id"] for p in body["predictions"]] == [None, "100036718-104036718", None, None]
    assert all(p["predicted_count"] >= 0 for p in body["predictions"])
    assert body["unresolved_counter_names"] == [
        {"name": shared, "reason": "ambiguous_name", "counter_ids": [first, second], "rows": 2},
        {"name": unknown_row["nom_du_compteur"], "reason": "unknown_name", "counter_ids": [], "rows": 1},
    ]
    assert body["unseen_counter_rows"] == 3 and body["unseen_counters"] == []

    answer = client.post("/compat/predict", json={"records": records}, headers=kit.predict).json()
    assert answer["predictions"] == [p["predicted_count"] for p in body["predictions"]]
    assert answer["model_metadata"]["unresolved_counter_names"] == body["unresolved_counter_names"]
    # An unresolved name is predicted as any counter the model was not trained on.
    unseen = client.post(
        "/predict", json={"records": [normalized_record("999-unseen", at)]}, headers=kit.predict
    ).json()
    assert body["predictions"][0]["predicted_count"] == unseen["predictions"][0]["predicted_count"]


def test_a_model_saved_without_names_reports_name_only_rows(fresh_app, kit, artifacts, tmp_path):
    old = load_model(artifacts.path_a)
    del old.__dict__["counter_names"]  # what a file saved before names were kept unpickles to
    client = _serve(fresh_app, kit, artifacts, old, tmp_path, "run-old")

    rows = csv_export_rows()[:3]
    with_id = {**rows[0], "identifiant_du_compteur": "100003096-353242251"}
    response = client.post("/compat/predict", json={"records": [*rows, with_id]}, headers=kit.predict)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["predictions"]) == 4
    assert answer["model_metadata"]["run_id"] == "run-old"
    assert answer["model_metadata"]["unresolved_counter_names"] == [
        {"name": rows[0]["nom_du_compteur"], "reason": "model_has_no_names", "counter_ids": [], "rows": 3}
    ]
    assert answer["model_metadata"]["unseen_counter_rows"] == 3
    by_id = client.post(
        "/predict",
        json={"records": [normalized_record("100003096-353242251", rows[0]["date_et_heure_de_comptage"])]},
        headers=kit.predict,
    ).json()
    assert answer["predictions"][3] == by_id["predictions"][0]["predicted_count"]


def test_the_fallback_entry_answers_whatever_the_metric(fresh_app, kit, artifacts):
    """No champion flagged: the best entry by R² serves; a better RMSE elsewhere changes nothing."""

    def setup(registry: Any) -> None:
        better_rmse = kit.entry("run-a", artifacts.uri_a, 0.80).model_dump()
        better_rmse["metrics"]["test_current"] |= {"rmse": 10.0, "mae": 5.0}
        registry.add_entry("dev", RegistryEntry.model_validate(better_rmse))
        registry.add_entry("dev", kit.entry("run-b", artifacts.uri_b, 0.85))

    client, _ = fresh_app(setup)
    records = [export_record(row) for _, row in artifacts.frame.head(3).iterrows()]
    answer = client.post(
        "/compat/predict", json={"records": records, "metric": "rmse"}, headers=kit.predict
    ).json()
    metadata = answer["model_metadata"]
    assert metadata["run_id"] == "run-b" and metadata["is_champion"] is False
    assert metadata["metric"] == "rmse" and metadata["metric_value"] == pytest.approx(42.0)


def test_name_keys_fold_case_accents_spacing_and_punctuation():
    assert name_key(" 18 Quai de l'Hôtel de Ville  NO-SE ") == "18 quai de l hotel de ville no se"
    assert name_key("39 quai François Mauriac NO-SE") == name_key("39 QUAI FRANCOIS MAURIAC no_se")
    assert name_key("28 boulevard Diderot E-O") != name_key("27 boulevard Diderot E-O")


def test_the_openapi_document_describes_the_compat_route(compat):
    document = compat.client.app.openapi()
    operation = document["paths"]["/compat/predict"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    schemas = document["components"]["schemas"]
    assert "ExportRecord" in schemas and "coordonnées_géographiques" in schemas["ExportRecord"]["properties"]
    assert set(schemas["CompatPredictResponse"]["properties"]) == {"predictions", "model_metadata"}
