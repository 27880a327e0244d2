# Datasets and every table the DAGs write. Table schemas, partitioning and clustering are NOT
# written here: they come from the JSON contracts the code itself loads
# (include/velocast/contract/*.json, velocast.contract.load_contract), so the warehouse and the
# ingestion/validation code cannot drift apart. tests/infra/test_terraform.py checks that
# contract_tables equals velocast.contract.ALL_TABLES and that every attribute below is taken
# from the contract.

locals {
  contract_dir = "${path.module}/../include/velocast/contract"

  # velocast.contract.ALL_TABLES: adding a contract there without adding it here fails the tests.
  contract_tables = [
    "hourly_counts",
    "hourly_counts_quarantine",
    "ingestion_log",
    "hourly_predictions",
    "model_decisions",
    "prediction_scores",
  ]

  contracts = {
    for name in local.contract_tables : name => jsondecode(file("${local.contract_dir}/${name}.json"))
  }

  # A contract's "dataset" is a logical key; it maps to the dataset named in the settings.
  datasets = {
    raw = {
      dataset_id  = var.raw_dataset
      description = "Hourly bike counts ingested from Paris Open Data (ODbL), the quarantine of rejected rows and the ingestion log."
    }
    predictions = {
      dataset_id  = var.predictions_dataset
      description = "Hourly bike count forecasts written by the daily prediction DAG, and their daily scores against the actuals."
    }
    audit = {
      dataset_id  = var.audit_dataset
      description = "Audit trail of the weekly monitor-and-train runs: drift, double evaluation, decisions and promotions."
    }
  }
}

resource "google_bigquery_dataset" "this" {
  # checkov:skip=CKV_GCP_81:Google-managed encryption at rest is kept on purpose: the data are public Paris Open Data counts and derived forecasts; a CMEK key ring (which can never be deleted) adds key lifecycle and cost for no gain in this threat model.
  for_each = local.datasets

  project                    = var.project_id
  dataset_id                 = each.value.dataset_id
  friendly_name              = each.value.dataset_id
  description                = each.value.description
  location                   = var.bigquery_location
  delete_contents_on_destroy = false
  labels                     = local.labels

  depends_on = [google_project_service.this]
}

resource "google_bigquery_table" "contract" {
  # checkov:skip=CKV_GCP_80:Google-managed encryption at rest, as for the datasets (CKV_GCP_81): public open data, no CMEK key to manage.
  for_each = local.contracts

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.this[each.value.dataset].dataset_id
  table_id            = each.value.table
  description         = each.value.description
  schema              = jsonencode(each.value.schema)
  clustering          = each.value.clustering
  deletion_protection = var.deletion_protection
  labels              = local.labels

  time_partitioning {
    type  = each.value.time_partitioning.type
    field = each.value.time_partitioning.field
  }
}
