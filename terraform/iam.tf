# One service account per runtime, with the narrowest bindings that let it work: on the
# datasets, the bucket and the individual secrets it uses, at project level only where
# Google Cloud offers no narrower scope (running BigQuery jobs, connecting to Cloud SQL).
# No service account keys are created here (they would land in the state): attach the
# accounts to the workloads, or impersonate them (README.md).

locals {
  service_accounts = {
    airflow = "velocast Airflow: ingestion, prediction and monitor-and-train DAGs"
    serving = "velocast serving sidecar: predictions, training jobs, registry promotion"
    mlflow  = "velocast MLflow tracking server: Cloud SQL backend store, GCS artifacts"
  }

  # Who reads which secret (logical secret names from secrets.tf).
  secret_access = {
    "airflow/discord_webhook"         = { account = "airflow", secret = "discord_webhook" }
    "airflow/serving_predict_api_key" = { account = "airflow", secret = "serving_predict_api_key" }
    "airflow/serving_admin_api_key"   = { account = "airflow", secret = "serving_admin_api_key" }
    "serving/serving_predict_api_key" = { account = "serving", secret = "serving_predict_api_key" }
    "serving/serving_admin_api_key"   = { account = "serving", secret = "serving_admin_api_key" }
    "mlflow/mlflow_db_password"       = { account = "mlflow", secret = "mlflow_db_password" }
  }

  # Object read/write in the project bucket: staging and drift reports (airflow), the registry
  # (airflow reads it, serving promotes), MLflow artifacts (mlflow, serving loading models).
  bucket_object_users = toset(["airflow", "serving", "mlflow"])

  members = { for name, account in google_service_account.this : name => "serviceAccount:${account.email}" }
}

resource "google_service_account" "this" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "${var.name_prefix} ${each.key}"
  description  = each.value

  depends_on = [google_project_service.this]
}

# Running a query or a load job is a project-level permission (bigquery.jobs.create); the data
# it may touch is granted per dataset below.
resource "google_project_iam_member" "airflow_bigquery_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.members["airflow"]
}

# Airflow writes every table: raw counts, quarantine, ingestion log, predictions, audit rows.
resource "google_bigquery_dataset_iam_member" "airflow_data_editor" {
  for_each = google_bigquery_dataset.this

  project    = var.project_id
  dataset_id = each.value.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = local.members["airflow"]
}

# The sidecar's training jobs read the recent actuals by window (POST /train current_window):
# queries in the project, read-only on the raw dataset.
resource "google_project_iam_member" "serving_bigquery_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.members["serving"]
}

resource "google_bigquery_dataset_iam_member" "serving_raw_data_viewer" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.this["raw"].dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = local.members["serving"]
}

resource "google_storage_bucket_iam_member" "object_user" {
  for_each = local.bucket_object_users

  bucket = google_storage_bucket.velocast.name
  role   = "roles/storage.objectUser"
  member = local.members[each.key]
}

# The Cloud SQL Auth Proxy / connector of the MLflow server needs cloudsql.instances.connect,
# which only exists at project level.
resource "google_project_iam_member" "mlflow_cloudsql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = local.members["mlflow"]
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_access

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.members[each.value.account]
}
