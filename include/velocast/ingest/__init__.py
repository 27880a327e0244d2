"""DAG 1, ingestion: the Open Data API client, the run window, the typed steps, the run log and the Assets.

Airflow-facing: the sidecar never imports this package.
"""
