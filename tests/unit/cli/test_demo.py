from __future__ import annotations

from datetime import UTC, datetime

import pytest

from velocast.cli.demo import latest_runs_sql, rows_per_day_sql


def test_rows_per_day_query_quotes_the_table_and_the_start() -> None:
    sql = rows_per_day_sql("p.raw.hourly_counts", datetime(2024, 1, 2, tzinfo=UTC))
    assert "FROM `p.raw.hourly_counts` " in sql
    assert "WHERE counted_at >= TIMESTAMP '2024-01-02T00:00:00+00:00' " in sql
    assert sql.endswith("GROUP BY day ORDER BY day")


def test_latest_runs_query_is_limited_to_the_runs_of_the_demo() -> None:
    sql = latest_runs_sql("p.audit.ingestion_log", 3)
    assert "FROM `p.audit.ingestion_log` " in sql
    assert sql.endswith("ORDER BY logged_at DESC LIMIT 3")


def test_the_demo_queries_refuse_what_cannot_be_quoted() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rows_per_day_sql("p.raw.hourly_counts", datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="backtick"):
        latest_runs_sql("p.audit.log` WHERE 1=1 --", 2)
