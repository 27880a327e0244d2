# PostgreSQL backend store of the MLflow tracking server: private IP only, TLS with client
# certificates (the Cloud SQL Auth Proxy / connectors provide them), automated backups with
# point-in-time recovery, deletion protection, and the logging flags of the CIS benchmark.

resource "google_compute_global_address" "private_service_access" {
  count = var.create_private_service_access ? 1 : 0

  project       = var.project_id
  name          = "${var.name_prefix}-private-service-access"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = var.network_self_link

  depends_on = [google_project_service.this]
}

resource "google_service_networking_connection" "private_service_access" {
  count = var.create_private_service_access ? 1 : 0

  network                 = var.network_self_link
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_service_access[0].name]
}

# Instance names cannot be reused for a week after deletion: a suffix keeps re-creation possible.
resource "random_id" "sql_suffix" {
  byte_length = 3
}

resource "google_sql_database_instance" "mlflow" {
  # checkov:skip=CKV_GCP_79:The MLflow backend is pinned to PostgreSQL 15/16 (variable sql_database_version), the versions the local stack tests MLflow's migrations on; a major upgrade is a deliberate, tested in-place operation, not a default.
  project             = var.project_id
  name                = "${var.name_prefix}-mlflow-${random_id.sql_suffix.hex}"
  region              = var.region
  database_version    = var.sql_database_version
  deletion_protection = var.deletion_protection

  settings {
    edition                     = var.sql_edition
    tier                        = var.sql_tier
    availability_type           = var.sql_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.sql_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network_self_link
      ssl_mode        = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "23:00"
      transaction_log_retention_days = var.sql_transaction_log_retention_days

      backup_retention_settings {
        retained_backups = var.sql_backup_retained_count
        retention_unit   = "COUNT"
      }
    }

    # Sunday 03:00 UTC: after the weekly monitor-and-train run (Sunday 00:00 Europe/Paris).
    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_executor_stats"
      value = "off"
    }
    database_flags {
      name  = "log_parser_stats"
      value = "off"
    }
    database_flags {
      name  = "log_planner_stats"
      value = "off"
    }
    database_flags {
      name  = "log_statement_stats"
      value = "off"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [
    google_project_service.this,
    google_service_networking_connection.private_service_access,
  ]
}

resource "google_sql_database" "mlflow" {
  project  = var.project_id
  name     = "mlflow"
  instance = google_sql_database_instance.mlflow.name
}

resource "random_password" "mlflow_db" {
  length           = 32
  special          = true
  override_special = "-_.~"
}

resource "google_sql_user" "mlflow" {
  project  = var.project_id
  name     = "mlflow"
  instance = google_sql_database_instance.mlflow.name
  password = random_password.mlflow_db.result

  # PostgreSQL refuses to drop a role that owns objects: leave it to the instance's deletion.
  deletion_policy = "ABANDON"
}
