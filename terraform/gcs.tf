# The project bucket: ingestion staging files (staging/), the model registry
# (registry/summary.json, updated under generation preconditions), MLflow artifacts (mlflow/)
# and Evidently drift reports (drift_reports/).

resource "google_storage_bucket" "velocast" {
  # checkov:skip=CKV_GCP_62:Usage/storage logs (a legacy feature) are not used: object access is audited through Cloud Audit Logs (Data Access logs for storage.googleapis.com), which need no second log bucket that would itself fail this check.
  name                        = local.bucket_name
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # The registry file is rewritten in place: versioning keeps its previous generations.
  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = 7 * 24 * 3600
  }

  lifecycle_rule {
    condition {
      age            = var.staging_retention_days
      matches_prefix = ["staging/"]
      with_state     = "ANY"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = var.drift_report_retention_days
      matches_prefix = ["drift_reports/"]
      with_state     = "ANY"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.this]
}
