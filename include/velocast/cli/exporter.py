"""``velocast exporter``: serve the MLOps exporter's ``/metrics`` for Prometheus until interrupted."""

from __future__ import annotations

import argparse

from velocast.errors import RequestError
from velocast.exporter.catalog import DECISION_WINDOW_DAYS  # the catalog alone: no prometheus_client
from velocast.settings import VelocastSettings


def cmd_exporter(args: argparse.Namespace, settings: VelocastSettings) -> int:
    # Imported here: prometheus_client and the BigQuery client are not needed to build the parser.
    from velocast.exporter.server import serve_forever

    if args.window_days < 1:
        raise RequestError("--window-days must be at least 1")
    port = settings.exporter_port if args.port is None else args.port
    serve_forever(settings, host=args.host, port=port, window_days=args.window_days)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``exporter`` (sets ``handler``)."""
    exporter = subparsers.add_parser(
        "exporter", help="serve the MLOps exporter (registry, audit and warehouse metrics) for Prometheus"
    )
    exporter.add_argument("--host", default="0.0.0.0", help="address to bind (default: all interfaces)")
    exporter.add_argument("--port", type=int, default=None, help="port (default: settings.exporter_port)")
    exporter.add_argument(
        "--window-days",
        type=int,
        default=DECISION_WINDOW_DAYS,
        help=f"window of the decision and promotion counts, in days (default {DECISION_WINDOW_DAYS})",
    )
    exporter.set_defaults(handler=cmd_exporter)


__all__ = ["cmd_exporter", "register"]
