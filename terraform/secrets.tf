# Secret Manager secrets, replicated only in var.region (the data stay in the EU). Generated
# values (API keys, database password) are in the Terraform state too: keep the state in a
# private, versioned bucket (README.md).

locals {
  # Logical name => secret ID.
  secrets = {
    mlflow_db_password      = "${var.name_prefix}-mlflow-db-password"
    discord_webhook         = "${var.name_prefix}-discord-webhook-url"
    serving_predict_api_key = "${var.name_prefix}-serving-predict-api-key"
    serving_admin_api_key   = "${var.name_prefix}-serving-admin-api-key"
  }
}

resource "google_secret_manager_secret" "this" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.value
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.this]
}

# The serving sidecar refuses admin keys shorter than its minimum or made of placeholders;
# 48 random alphanumerics are far above it. Predict and admin keys are distinct secrets.
resource "random_password" "serving_predict_api_key" {
  length  = 48
  special = false
}

resource "random_password" "serving_admin_api_key" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret_version" "mlflow_db_password" {
  secret      = google_secret_manager_secret.this["mlflow_db_password"].id
  secret_data = random_password.mlflow_db.result
}

resource "google_secret_manager_secret_version" "serving_predict_api_key" {
  secret      = google_secret_manager_secret.this["serving_predict_api_key"].id
  secret_data = random_password.serving_predict_api_key.result
}

resource "google_secret_manager_secret_version" "serving_admin_api_key" {
  secret      = google_secret_manager_secret.this["serving_admin_api_key"].id
  secret_data = random_password.serving_admin_api_key.result
}

# Only when the webhook is given as a (sensitive) variable; otherwise it is added out of band.
resource "google_secret_manager_secret_version" "discord_webhook" {
  # nonsensitive: whether a webhook was given is not a secret, its value is.
  count = nonsensitive(var.discord_webhook_url != null) ? 1 : 0

  secret      = google_secret_manager_secret.this["discord_webhook"].id
  secret_data = var.discord_webhook_url
}
