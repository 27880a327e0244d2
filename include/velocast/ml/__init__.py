"""Machine learning: features, model types, evaluation, decisions, the reference data, training, MLflow
tracking and the model registry. Shared by the sidecar and the DAGs, so it never imports Airflow,
``velocast.ingest``, ``velocast.local`` or ``velocast.cli`` (import contracts in pyproject.toml).
"""
