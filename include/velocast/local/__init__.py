"""The local stack for development and tests: emulators, the Open Data API replay, MLflow and Airflow as real
processes on 127.0.0.1. Never imported by the product code (only ``velocast.cli``, tests and benches use it).
"""
