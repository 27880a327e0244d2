"""``velocast demo``: the platform's main job on the local stack, end to end.

Starts the local stack, prepares Airflow's metadata database, runs the ingestion DAG with
``airflow dags test`` for the last ``--days`` logical dates, then prints what landed in BigQuery:
rows per UTC day and the latest ingestion-log entries. Airflow is imported only after the process
environment points at the local stack (importing it reads, and first writes, its configuration).
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta

from velocast.data.sql import table_ref, timestamp_literal
from velocast.settings import VelocastSettings


def rows_per_day_sql(raw_table: str, since: datetime) -> str:
    """Rows, counters and bikes per UTC day of ``raw_table`` from ``since`` on."""
    return (
        "SELECT DATE(counted_at) AS day, COUNT(*) AS rows, COUNT(DISTINCT counter_id) AS counters, "
        f"SUM(hourly_count) AS bikes FROM {table_ref(raw_table)} "
        f"WHERE counted_at >= {timestamp_literal(since)} GROUP BY day ORDER BY day"
    )


def latest_runs_sql(log_table: str, runs: int) -> str:
    """The ``runs`` latest entries of the ingestion log, newest first."""
    return (
        "SELECT logical_date, status, rows_fetched, rows_loaded, rows_quarantined, duplicates_dropped, "
        f"ROUND(duration_seconds, 1) AS seconds FROM {table_ref(log_table)} "
        f"ORDER BY logged_at DESC LIMIT {int(runs)}"
    )


def cmd_demo(args: argparse.Namespace, settings: VelocastSettings) -> int:
    """Start the stack, run DAG 1 for the last ``--days`` logical dates, print what landed."""
    from velocast.local.airflow_env import airflow_environment, migrate_airflow_db, run_airflow
    from velocast.local.stack import LocalStack

    print("▶ starting the local stack (GCS + BigQuery emulators, Paris API replay)")
    LocalStack(settings).up()
    # This process drives Airflow: its environment is the local stack's.
    os.environ.update(airflow_environment(settings))
    # Imported only now: importing Airflow reads (and first writes) its configuration.
    from velocast import contract
    from velocast.gcp.warehouse import Warehouse
    from velocast.ingest.window import plan_window

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
    per_day = warehouse.query_frame(rows_per_day_sql(raw, first.start))
    runs = warehouse.query_frame(latest_runs_sql(log_table, args.days))
    print(f"\n{raw} — rows per UTC day:\n{per_day.to_string(index=False)}")
    print(f"\n{log_table} — latest runs:\n{runs.to_string(index=False)}")
    print("\nThe stack keeps running: `velocast stack down` (or `make stack-down`) stops it.")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` (sets ``handler``)."""
    demo = subparsers.add_parser("demo", help="run the ingestion DAG on the local stack and show the result")
    demo.add_argument("--days", type=int, default=2, help="daily runs to execute, ending today")
    demo.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    demo.set_defaults(handler=cmd_demo)


__all__ = ["cmd_demo", "latest_runs_sql", "register", "rows_per_day_sql"]
