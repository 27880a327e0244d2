"""The MLOps exporter (``velocast exporter``, ``:9101``): registry, audit and warehouse state as metrics.

A service of its own, without Airflow. ``catalog`` defines every metric once; ``sources`` reads the
registry and the BigQuery tables; ``families`` turns what was read into metric families; ``server``
holds the caching collector and the HTTP server.
"""
