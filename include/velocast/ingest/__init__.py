"""DAG 1, ingestion: the Open Data API client, the run window, the typed steps, the run log, the Assets,
and the TaskFlow helpers the DAG files share (Airflow-facing: the sidecar never imports this package).
"""
