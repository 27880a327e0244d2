"""Every Airflow Asset of the platform, declared once (lineage and visibility in the UI).

URIs follow the Google provider's ``bigquery://project/dataset/table`` scheme. DAGs 1 and 2 stay
on cron schedules (asset-triggered runs have no logical date and cannot be backfilled); the
Assets record what each task produces.
"""

from __future__ import annotations

from airflow.sdk import Asset

from velocast import contract
from velocast.settings import get_settings


def bigquery_asset(project: str, dataset: str, table: str) -> Asset:
    return Asset(uri=f"bigquery://{project}/{dataset}/{table}", name=f"{dataset}.{table}")


_settings = get_settings()
_predictions_dataset = _settings.predictions_dataset

RAW_COUNTS = bigquery_asset(_settings.gcp_project, _settings.raw_dataset, _settings.raw_table)
QUARANTINE = bigquery_asset(_settings.gcp_project, _settings.raw_dataset, _settings.quarantine_table)
INGESTION_LOG = bigquery_asset(_settings.gcp_project, _settings.raw_dataset, _settings.ingestion_log_table)
PREDICTIONS = bigquery_asset(_settings.gcp_project, _predictions_dataset, _settings.predictions_table)
PREDICTION_SCORES = bigquery_asset(_settings.gcp_project, _predictions_dataset, contract.PREDICTION_SCORES)
