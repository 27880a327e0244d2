"""Start bqemulator offline.

Runs inside the emulator's own virtual environment (it does not import velocast): bqemulator
downloads DuckDB's ``spatial`` extension at start and refuses to run without it. velocast
uses no GEOGRAPHY column, so an offline machine starts the emulator without that extension
instead of failing. Usage: ``<bqemulator-venv>/bin/python bqemulator_launcher.py start [...]``.
"""

from __future__ import annotations

import logging

from bqemulator import cli
from bqemulator.storage import engine

_original_load_spatial = engine.DuckDBEngine._load_spatial


def _load_spatial_if_available(self: engine.DuckDBEngine) -> None:
    try:
        _original_load_spatial(self)
    except Exception as exc:  # the emulator raises its own InternalError subclass
        logging.getLogger("velocast.bqemulator").warning(
            "DuckDB spatial extension unavailable (offline?); GEOGRAPHY functions disabled: %s", exc
        )


engine.DuckDBEngine._load_spatial = _load_spatial_if_available

if __name__ == "__main__":
    cli.main()
