"""Airflow-facing pieces the DAG files share: TaskFlow helpers (typed wiring, retries by error family),
the serving sidecar hook and the Discord notifications. Imported by DAG tasks, never by the sidecar,
``ml``, ``data`` or the exporter (import contracts in pyproject.toml).
"""
