# Everything the docker-compose .env needs. Secret VALUES are never output: read them with
# `gcloud secrets versions access latest --secret=<id>` (secret_ids below).

output "project_id" {
  description = "Project of every resource (VELOCAST_GCP_PROJECT)."
  value       = var.project_id
}

output "region" {
  description = "Region of the bucket, Cloud SQL and secret replicas."
  value       = var.region
}

output "bigquery_location" {
  description = "Location of the BigQuery datasets (VELOCAST_GCP_LOCATION)."
  value       = var.bigquery_location
}

output "bucket_name" {
  description = "Project bucket (VELOCAST_BUCKET)."
  value       = google_storage_bucket.velocast.name
}

output "bucket_url" {
  description = "gs:// URL of the project bucket."
  value       = google_storage_bucket.velocast.url
}

output "mlflow_artifact_root" {
  description = "Default artifact root of the MLflow server (VELOCAST_MLFLOW_ARTIFACT_ROOT)."
  value       = "gs://${google_storage_bucket.velocast.name}/mlflow"
}

output "dataset_ids" {
  description = "BigQuery dataset IDs by logical key (raw, predictions, audit: the contracts' \"dataset\" field)."
  value       = { for key, dataset in google_bigquery_dataset.this : key => dataset.dataset_id }
}

output "table_ids" {
  description = "Fully qualified table IDs (project.dataset.table) by contract name."
  value       = { for name, table in google_bigquery_table.contract : name => "${table.project}.${table.dataset_id}.${table.table_id}" }
}

output "service_account_emails" {
  description = "Service account emails by runtime (airflow, serving, mlflow)."
  value       = { for name, account in google_service_account.this : name => account.email }
}

output "sql_instance_name" {
  description = "Name of the Cloud SQL instance of the MLflow backend store."
  value       = google_sql_database_instance.mlflow.name
}

output "sql_instance_connection_name" {
  description = "Connection name (project:region:instance) for the Cloud SQL Auth Proxy of the MLflow server."
  value       = google_sql_database_instance.mlflow.connection_name
}

output "sql_private_ip_address" {
  description = "Private IP address of the Cloud SQL instance (reachable from the VPC network only)."
  value       = google_sql_database_instance.mlflow.private_ip_address
}

output "mlflow_database_name" {
  description = "PostgreSQL database of the MLflow backend store."
  value       = google_sql_database.mlflow.name
}

output "mlflow_database_user" {
  description = "PostgreSQL user of the MLflow server; its password is in the secret secret_ids.mlflow_db_password."
  value       = google_sql_user.mlflow.name
}

output "secret_ids" {
  description = "Secret Manager secret IDs by logical name: mlflow_db_password, discord_webhook, serving_predict_api_key, serving_admin_api_key."
  value       = { for name, secret in google_secret_manager_secret.this : name => secret.secret_id }
}

output "secret_names" {
  description = "Full resource names (projects/<number>/secrets/<id>) of the secrets, by logical name."
  value       = { for name, secret in google_secret_manager_secret.this : name => secret.name }
}

output "velocast_environment" {
  description = "Non-secret VELOCAST_* variables (velocast.settings.VelocastSettings) for the docker-compose .env. The API keys, the webhook and the database password come from secret_ids."
  value = {
    VELOCAST_ENV                  = var.environment
    VELOCAST_GCP_PROJECT          = var.project_id
    VELOCAST_GCP_LOCATION         = var.bigquery_location
    VELOCAST_BUCKET               = google_storage_bucket.velocast.name
    VELOCAST_RAW_DATASET          = google_bigquery_dataset.this["raw"].dataset_id
    VELOCAST_PREDICTIONS_DATASET  = google_bigquery_dataset.this["predictions"].dataset_id
    VELOCAST_AUDIT_DATASET        = google_bigquery_dataset.this["audit"].dataset_id
    VELOCAST_MLFLOW_ARTIFACT_ROOT = "gs://${google_storage_bucket.velocast.name}/mlflow"
  }
}
