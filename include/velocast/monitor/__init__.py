"""The logic behind DAG 3 ``monitor_and_train``, free of Airflow: the run and what its tasks hand each
other (``run``), the WAIT/RETRAIN rule (``branching``), the champion scored on the recent actuals
(``health``), the drift of the recent days against the champion's reference data (``drift_check``),
the retraining request and the REJECT/SKIP/DEPLOY branch (``retraining``), the audit row
(``audit``) and the Discord message (``messages``). The DAG's tasks hand the steps the warehouse,
storage and sidecar hook (``velocast.gcp``, ``velocast.orchestration``).
"""
