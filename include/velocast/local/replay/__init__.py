"""A local replay of the Paris Open Data Explore API v2.1 for ``comptage-velo-donnees-compteurs``.

It serves the packaged real counts (see ``velocast/local/data/NOTICE.md``) with their dates moved
forward by whole weeks, so that "yesterday" exists and weekday patterns are kept, plus admin endpoints
that inject the faults a client must survive (rate limits, 5xx, truncated bodies, malformed rows)::

    python -m velocast.local.replay --host 127.0.0.1 --port 8089 [--shift-weeks N] [--data PATH]

Modules: ``app`` (the FastAPI app and its routes), ``query`` (the request parameters, ODSQL subset),
``data`` (the shipped parquet, shifted, and the rows a query selects), ``render`` (JSON/CSV bodies),
``faults`` (fault injection and the ``/__admin`` endpoints), ``__main__`` (the command line).
"""
