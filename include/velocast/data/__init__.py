"""Data in: reading every variant of the Paris counts, normalizing to the contract, validating it, SQL pieces.

Pure pandas / Great Expectations: no Airflow, no Google Cloud client (import contracts in pyproject.toml).
"""
