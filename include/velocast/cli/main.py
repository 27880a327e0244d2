"""``velocast`` command line: the local stack and the demo of the platform's main job."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from datetime import UTC, datetime, timedelta

from velocast.cli.ml import add_ml_commands
from velocast.settings import get_settings


def _stack_command(args: argparse.Namespace) -> int:
    from velocast.local.airflow_env import airflow_environment
    from velocast.local.mlflow_server import MlflowServer
    from velocast.local.stack import LocalStack

    settings = get_settings()
    stack = LocalStack(settings)
    groups = [stack, MlflowServer(settings)]
    if args.action == "up":
        started = [name for group in groups for name in group.up()]
        print(f"stack up (started: {', '.join(started) or 'none, all were running'})")
    if args.action in ("up", "status"):
        status = {name: ok for group in groups for name, ok in group.status().items()}
        for name, healthy in status.items():
            print(f"{name:9s} {'healthy' if healthy else 'down'}")
        return 0 if all(status.values()) else 1
    if args.action == "down":
        stopped = [name for group in reversed(groups) for name in group.down()]
        print(f"stopped: {', '.join(stopped) or 'nothing'}")
    elif args.action == "env":
        env = airflow_environment(settings) if args.airflow else stack.env()
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


def _airflow_command(args: argparse.Namespace) -> int:
    from velocast.local.airflow_env import AirflowServices
    from velocast.local.stack import LocalStack

    settings = get_settings()
    services = AirflowServices(settings)
    if args.action == "up":
        LocalStack(settings).up()
        started = services.up()
        print(f"airflow up (started: {', '.join(started) or 'none, all were running'})")
        print(f"  UI and REST API: http://{settings.local_host}:{settings.airflow_api_port}")
    elif args.action == "down":
        print(f"stopped: {', '.join(services.down()) or 'nothing'}")
    else:
        status = services.status()
        for name, healthy in status.items():
            print(f"{name:22s} {'healthy' if healthy else 'down'}")
        return 0 if all(status.values()) else 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Start the stack, run DAG 1 for the last ``--days`` logical dates, print what landed."""
    from velocast.local.airflow_env import airflow_environment, migrate_airflow_db, run_airflow
    from velocast.local.stack import LocalStack

    settings = get_settings()
    stack = LocalStack(settings)
    print("▶ starting the local stack (GCS + BigQuery emulators, Paris API replay)")
    stack.up()
    # This process drives Airflow: its environment is the local stack's.
    os.environ.update(airflow_environment(settings))
    # Imported only now: importing Airflow reads (and first writes) its configuration.
    from velocast import contract
    from velocast.gcp.warehouse import Warehouse
    from velocast.ingest.steps import plan_window

    print("▶ preparing the Airflow metadata database (PostgreSQL)")
    migrate_airflow_db(settings)
    today = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
    for offset in range(args.days - 1, -1, -1):
        logical = today - timedelta(days=offset)
        print(f"▶ airflow dags test ingest_bike_counts {logical.isoformat()}")
        run_airflow(
            settings, "dags", "test", "ingest_bike_counts", logical.isoformat(), quiet=not args.verbose
        )

    warehouse = Warehouse(settings)
    raw = warehouse.table_id(contract.load_contract(contract.RAW_COUNTS))
    log_table = warehouse.table_id(contract.load_contract(contract.INGESTION_LOG))
    first = plan_window(today - timedelta(days=args.days - 1), settings.ingest_trailing_days)
    per_day = warehouse.query_frame(
        f"SELECT DATE(counted_at) AS day, COUNT(*) AS rows, COUNT(DISTINCT counter_id) AS counters, "
        f"SUM(hourly_count) AS bikes FROM `{raw}` WHERE counted_at >= TIMESTAMP '{first.start.isoformat()}' "
        "GROUP BY day ORDER BY day"
    )
    runs = warehouse.query_frame(
        f"SELECT logical_date, status, rows_fetched, rows_loaded, rows_quarantined, duplicates_dropped, "
        f"ROUND(duration_seconds, 1) AS seconds FROM `{log_table}` ORDER BY logged_at DESC LIMIT {args.days}"
    )
    print(f"\n{raw} — rows per UTC day:\n{per_day.to_string(index=False)}")
    print(f"\n{log_table} — latest runs:\n{runs.to_string(index=False)}")
    print("\nThe stack keeps running: `velocast stack down` (or `make stack-down`) stops it.")
    return 0


def _exporter(args: argparse.Namespace) -> int:
    """Serve the MLOps exporter's /metrics until interrupted."""
    from velocast.exporter.server import serve_forever

    if args.window_days < 1:
        print("--window-days must be at least 1", file=sys.stderr)
        return 2
    settings = get_settings()
    port = settings.exporter_port if args.port is None else args.port
    serve_forever(settings, host=args.host, port=port, window_days=args.window_days)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # health probes are not news
    parser = argparse.ArgumentParser(prog="velocast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser(
        "stack", help="start, stop or inspect the local GCP-compatible stack (emulators, API replay, MLflow)"
    )
    stack.add_argument("action", choices=["up", "down", "status", "env"])
    stack.add_argument("--airflow", action="store_true", help="with env: include the local Airflow settings")
    stack.set_defaults(handler=_stack_command)

    airflow = commands.add_parser(
        "airflow", help="run Airflow (api-server :8081, scheduler, dag-processor) on the local stack"
    )
    airflow.add_argument("action", choices=["up", "down", "status"])
    airflow.set_defaults(handler=_airflow_command)

    demo = commands.add_parser("demo", help="run the ingestion DAG on the local stack and show the result")
    demo.add_argument("--days", type=int, default=2, help="daily runs to execute, ending today")
    demo.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    demo.set_defaults(handler=_demo)

    exporter = commands.add_parser(
        "exporter", help="serve the MLOps exporter (registry, audit and warehouse metrics) for Prometheus"
    )
    exporter.add_argument("--host", default="0.0.0.0", help="address to bind (default: all interfaces)")
    exporter.add_argument("--port", type=int, default=None, help="port (default: settings.exporter_port)")
    exporter.add_argument(
        "--window-days", type=int, default=28, help="window of the decision and promotion counts, in days"
    )
    exporter.set_defaults(handler=_exporter)

    add_ml_commands(commands)

    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
