# --- Project and placement ---------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "ID of the Google Cloud project that receives every resource (VELOCAST_GCP_PROJECT)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region of the regional resources: the bucket, Cloud SQL, secret replicas."
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1."
  }
}

variable "bigquery_location" {
  type        = string
  description = "Location of the BigQuery datasets (VELOCAST_GCP_LOCATION). The bucket's region must lie inside it for load jobs."
  default     = "EU"

  validation {
    condition     = can(regex("^(EU|US|[a-z]+-[a-z]+[0-9]+)$", var.bigquery_location))
    error_message = "bigquery_location must be the EU or US multi-region or a region such as europe-west1."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names (service accounts, Cloud SQL instance, secrets)."
  default     = "velocast"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix must be 2-15 lowercase letters, digits or hyphens, starting with a letter (service account IDs are limited to 30 characters)."
  }
}

variable "environment" {
  type        = string
  description = "velocast environment these resources serve (VELOCAST_ENV; also the env label)."
  default     = "prod"

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every labelled resource, on top of app=velocast, env=<environment> and managed-by=terraform."
  default     = {}

  validation {
    condition = alltrue([
      for key, value in var.labels :
      can(regex("^[a-z][a-z0-9_-]{0,62}$", key)) && can(regex("^[a-z0-9_-]{0,63}$", value))
    ])
    error_message = "Label keys must start with a lowercase letter; keys and values use lowercase letters, digits, '_' or '-' (63 characters at most)."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the BigQuery tables and the Cloud SQL instance from deletion by Terraform and the API. Set false only to tear down a test environment."
  default     = true
}

# --- Storage ------------------------------------------------------------------------------

variable "bucket_name" {
  type        = string
  description = "Name of the project bucket (VELOCAST_BUCKET): staging files, registry/summary.json, MLflow artifacts, drift reports. Null means \"<project_id>-<name_prefix>\"."
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid Cloud Storage bucket name (3-63 lowercase letters, digits, '-', '_' or '.')."
  }
}

variable "staging_retention_days" {
  type        = number
  description = "Days before ingestion staging files (staging/ prefix) are deleted. They only feed BigQuery load jobs."
  default     = 7

  validation {
    condition     = var.staging_retention_days >= 1 && floor(var.staging_retention_days) == var.staging_retention_days
    error_message = "staging_retention_days must be a whole number of days, at least 1."
  }
}

variable "drift_report_retention_days" {
  type        = number
  description = "Days before Evidently drift reports (drift_reports/ prefix) are deleted; model_decisions keeps their URIs."
  default     = 180

  validation {
    condition     = var.drift_report_retention_days >= 1 && floor(var.drift_report_retention_days) == var.drift_report_retention_days
    error_message = "drift_report_retention_days must be a whole number of days, at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days a replaced or deleted object version is kept (e.g. previous registry/summary.json generations) before deletion."
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number of days, at least 1."
  }
}

# --- BigQuery -----------------------------------------------------------------------------

variable "raw_dataset" {
  type        = string
  description = "Dataset of the ingested counts, the quarantine and the ingestion log (VelocastSettings.raw_dataset)."
  default     = "bike_traffic_raw"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.raw_dataset)) && length(var.raw_dataset) <= 1024
    error_message = "raw_dataset must be a BigQuery dataset ID (letters, digits and underscores)."
  }
}

variable "predictions_dataset" {
  type        = string
  description = "Dataset of the hourly forecasts (VelocastSettings.predictions_dataset)."
  default     = "bike_traffic_predictions"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.predictions_dataset)) && length(var.predictions_dataset) <= 1024
    error_message = "predictions_dataset must be a BigQuery dataset ID (letters, digits and underscores)."
  }
}

variable "audit_dataset" {
  type        = string
  description = "Dataset of the monitor-and-train audit trail (VelocastSettings.audit_dataset)."
  default     = "monitoring_audit"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.audit_dataset)) && length(var.audit_dataset) <= 1024
    error_message = "audit_dataset must be a BigQuery dataset ID (letters, digits and underscores)."
  }
}

# --- Cloud SQL (MLflow backend store) --------------------------------------------------------

variable "network_self_link" {
  type        = string
  description = "Self-link of the VPC network that reaches Cloud SQL over private IP, e.g. projects/my-project/global/networks/velocast. The MLflow server must run in (or be peered with) this network."

  validation {
    condition     = can(regex("projects/[^/]+/global/networks/[^/]+$", var.network_self_link))
    error_message = "network_self_link must end with projects/<project>/global/networks/<network>."
  }
}

variable "create_private_service_access" {
  type        = bool
  description = "Reserve a /20 range in the network and peer it with Google services (private services access), which private-IP Cloud SQL needs. Set false when the network already has a private services connection."
  default     = true
}

variable "sql_database_version" {
  type        = string
  description = "PostgreSQL major version of the MLflow backend store. The local stack and its tests run MLflow on PostgreSQL 15."
  default     = "POSTGRES_15"

  validation {
    condition     = contains(["POSTGRES_15", "POSTGRES_16"], var.sql_database_version)
    error_message = "sql_database_version must be POSTGRES_15 or POSTGRES_16."
  }
}

variable "sql_edition" {
  type        = string
  description = "Cloud SQL edition. ENTERPRISE fits the small shared-core and custom tiers an MLflow backend needs."
  default     = "ENTERPRISE"

  validation {
    condition     = contains(["ENTERPRISE", "ENTERPRISE_PLUS"], var.sql_edition)
    error_message = "sql_edition must be ENTERPRISE or ENTERPRISE_PLUS."
  }
}

variable "sql_tier" {
  type        = string
  description = "Machine tier of the Cloud SQL instance, e.g. db-custom-1-3840 (1 vCPU, 3.75 GB)."
  default     = "db-custom-1-3840"

  validation {
    condition     = can(regex("^db-[a-z0-9-]+$", var.sql_tier))
    error_message = "sql_tier must be a Cloud SQL tier name such as db-custom-1-3840 or db-g1-small."
  }
}

variable "sql_availability_type" {
  type        = string
  description = "ZONAL, or REGIONAL for a standby in a second zone (twice the cost)."
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.sql_availability_type)
    error_message = "sql_availability_type must be ZONAL or REGIONAL."
  }
}

variable "sql_disk_size_gb" {
  type        = number
  description = "Initial disk size of the Cloud SQL instance in GB; the disk grows automatically."
  default     = 10

  validation {
    condition     = var.sql_disk_size_gb >= 10
    error_message = "sql_disk_size_gb must be at least 10."
  }
}

variable "sql_backup_retained_count" {
  type        = number
  description = "Number of daily automated backups kept."
  default     = 14

  validation {
    condition     = var.sql_backup_retained_count >= 1 && var.sql_backup_retained_count <= 365
    error_message = "sql_backup_retained_count must be between 1 and 365."
  }
}

variable "sql_transaction_log_retention_days" {
  type        = number
  description = "Days of write-ahead logs kept for point-in-time recovery (1-7 on the Enterprise edition)."
  default     = 7

  validation {
    condition     = var.sql_transaction_log_retention_days >= 1 && var.sql_transaction_log_retention_days <= 35
    error_message = "sql_transaction_log_retention_days must be between 1 and 35."
  }
}

# --- Secrets ------------------------------------------------------------------------------

variable "discord_webhook_url" {
  type        = string
  description = "Discord webhook URL for alerts. Null (the default) creates the secret without a version: add it out of band (gcloud secrets versions add) to keep it out of the Terraform state."
  default     = null
  sensitive   = true

  validation {
    condition     = var.discord_webhook_url == null || can(regex("^https://", var.discord_webhook_url))
    error_message = "discord_webhook_url must be an https:// URL."
  }
}
