"""The logic behind DAG 2 ``predict_bike_counts``, free of Airflow: Paris local days as UTC hours
(``days``), the forecast grid of a run (``grid``), the scoring of past days against their actuals and
the same-hour-last-week baseline (``scoring``), the BigQuery SQL the DAG runs (``queries``), and the
run context and steps (``run``, ``steps``). The DAG's tasks hand the steps the warehouse, storage and
sidecar hook (``velocast.gcp``, ``velocast.orchestration``).
"""
