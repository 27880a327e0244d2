"""The one place that builds Google Cloud clients: emulator-aware, without Airflow.

With ``settings.storage_emulator_host`` / ``settings.bigquery_emulator_host`` set (the local stack),
the clients target the emulator with anonymous credentials; otherwise they use Application Default
Credentials against Google Cloud. The endpoint is passed explicitly (the libraries would read
``STORAGE_EMULATOR_HOST`` from the environment) so the settings object stays the single source.
The Airflow hooks in ``velocast.gcp.hooks`` build their clients through these functions too.
"""

from __future__ import annotations

from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import bigquery
from google.cloud import storage as gcs

from velocast.settings import VelocastSettings


def storage_client(settings: VelocastSettings, credentials: Credentials | None = None) -> gcs.Client:
    """A storage client for ``settings``: the emulator (anonymous unless ``credentials``) when set."""
    if settings.storage_emulator_host:
        return gcs.Client(
            project=settings.gcp_project,
            credentials=credentials or AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": settings.storage_emulator_host},
        )
    return gcs.Client(project=settings.gcp_project, credentials=credentials)


def bigquery_client(
    settings: VelocastSettings,
    credentials: Credentials | None = None,
    *,
    project: str | None = None,
    location: str | None = None,
) -> bigquery.Client:
    """A BigQuery client for ``settings``: the emulator (anonymous unless ``credentials``) when set."""
    project = project or settings.gcp_project
    location = location or settings.gcp_location
    if settings.bigquery_emulator_host:
        return bigquery.Client(
            project=project,
            location=location,
            credentials=credentials or AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": settings.bigquery_emulator_host},
        )
    return bigquery.Client(project=project, location=location, credentials=credentials)


__all__ = ["bigquery_client", "storage_client"]
