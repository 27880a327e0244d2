"""Google Cloud adapters: the emulator-aware clients (``clients``; no Airflow, the sidecar uses them),
the provider hooks built on them (``hooks``), GCS objects (``storage``), BigQuery tables (``warehouse``)
and the recent actuals read outside Airflow (``actuals``).
"""
