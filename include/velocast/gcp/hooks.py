"""The Google provider's hooks, emulator-aware: what the Airflow side uses to reach GCS and BigQuery.

In production the hooks behave as the provider's (credentials from the Airflow connection
``settings.gcp_conn_id``). With an emulator host set in the settings, their clients are built by
``velocast.gcp.clients`` with the connection's credentials and the emulator's endpoint.
"""

from __future__ import annotations

from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
from airflow.providers.google.cloud.hooks.gcs import GCSHook
from google.cloud import bigquery
from google.cloud import storage as gcs

from velocast.gcp.clients import bigquery_client, storage_client
from velocast.settings import VelocastSettings


class EmulatorAwareGCSHook(GCSHook):
    """``GCSHook`` whose client targets ``settings.storage_emulator_host`` when one is set."""

    def __init__(self, settings: VelocastSettings) -> None:
        super().__init__(gcp_conn_id=settings.gcp_conn_id)
        self._settings = settings

    def get_conn(self) -> gcs.Client:
        if not self._settings.storage_emulator_host:
            return super().get_conn()
        if self._conn is None:
            self._conn = storage_client(self._settings, self.get_credentials())
        return self._conn


class EmulatorAwareBigQueryHook(BigQueryHook):
    """``BigQueryHook`` whose client targets ``settings.bigquery_emulator_host`` when one is set."""

    def __init__(self, settings: VelocastSettings) -> None:
        super().__init__(
            gcp_conn_id=settings.gcp_conn_id, location=settings.gcp_location, use_legacy_sql=False
        )
        self._settings = settings

    def get_client(self, project_id: str | None = None, location: str | None = None) -> bigquery.Client:
        if not self._settings.bigquery_emulator_host:
            return super().get_client(project_id=project_id or self.project_id, location=location)
        return bigquery_client(
            self._settings,
            self.get_credentials(),
            project=project_id or self.project_id,
            location=location or self.location,
        )


__all__ = ["EmulatorAwareBigQueryHook", "EmulatorAwareGCSHook"]
