"""The logic behind DAG 2 ``predict_bike_counts``, free of Airflow: Paris local days as UTC hours
(``days``), the forecast grid of a run (``grid``), the scoring of past days against their actuals and
the same-hour-last-week baseline (``scoring``), and the BigQuery SQL the DAG runs (``queries``).
The DAG's tasks wire these to the warehouse and the sidecar hook (``velocast.orchestration``).
"""
