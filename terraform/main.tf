provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  labels = merge({ app = "velocast", env = var.environment, managed-by = "terraform" }, var.labels)

  bucket_name = coalesce(var.bucket_name, "${var.project_id}-${var.name_prefix}")

  # APIs the resources below need. Never disabled on destroy: other workloads may use them.
  services = toset([
    "bigquery.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "this" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
