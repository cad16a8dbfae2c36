"""The monitor's SQL Server queries compile (SQLAlchemy mssql) and parse (sqlglot tsql), and
their result shapes (as pyodbc returns them) map to what the monitor shows; the session hooks
of each dialect."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import sqlglot
from sqlalchemy import create_engine, text
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc
from sqlglot import exp

from bot.adapters.monitor import (
    BlockingMonitor,
    Poller,
    Watched,
    show_statements,
    statement_progress,
    wait_from_row,
)
from bot.adapters.targets import mssql, postgresql, sqlite
from bot.adapters.targets.target import Target
from bot.domain.blocking import MonitorSettings, MonitorState, episode_text, observe
from bot.domain.control import Control
from bot.domain.ports import NoPager
from bot.domain.progress import LiveProgress

MS = mssql.DIALECT
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def tsql(sql: str) -> exp.Expression:
    trees = sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert len(trees) == 1 and trees[0] is not None, sql
    return trees[0]


@pytest.mark.parametrize(
    "sql", [MS.blocking_sessions_sql(), MS.statement_progress_sql(), MS.session_id_sql()]
)
def test_mssql_monitor_queries_compile_and_parse(sql: str | None) -> None:
    assert sql is not None
    compiled = str(text(sql).compile(dialect=mssql_pyodbc.dialect()))  # type: ignore[no-untyped-call]
    assert compiled == sql, "no bind parameters: the text goes to the server as it is"
    tsql(sql)


def test_mssql_statement_progress_query_shape() -> None:
    tree = tsql(MS.statement_progress_sql() or "")
    columns = [e.alias_or_name for e in tree.expressions]
    assert columns == [
        "session_id",
        "command",
        "percent_complete",
        "estimated_completion_time",
        "start_time",
    ]
    assert "percent_complete > 0" in tree.args["where"].sql("tsql")


def test_mssql_blocking_row_maps_to_a_wait_and_its_alert() -> None:
    """A row as pyodbc returns it (padded nchar command, NULL text of an ended batch)."""
    row = {
        "session_id": 57,
        "blocking_session_id": 61,
        "wait_type": "LCK_M_U",
        "wait_time": 12_400,
        "last_wait_type": "LCK_M_U",
        "command": "UPDATE          ",
        "sql_text": "UPDATE dbo.Tasks SET TenantId = @P1 WHERE Id >= @P2",
        "blocker_login": "CORP\\reporting",
        "blocker_host": "BI-01",
        "blocker_program": "Microsoft SQL Server Management Studio - Query",
        "blocker_sql_text": None,
    }
    wait = wait_from_row(row)
    assert (wait.session, wait.blocker, wait.wait_ms, wait.command) == (57, 61, 12_400, "UPDATE")
    assert wait.blocker_statement == ""
    decision = observe(MonitorState(), [wait], frozenset({57}), NOW, MonitorSettings())
    shown = episode_text(9, decision.changed[0], NOW)
    assert "#9 is blocked, waiting for 12 s" in shown
    assert "session 61 (login CORP\\reporting, host BI-01, program Microsoft SQL" in shown


def test_postgresql_row_without_blocker_details_still_maps() -> None:
    wait = wait_from_row({"session_id": 5, "blocking_session_id": 6, "wait_time": None})
    assert (wait.session, wait.blocker, wait.wait_ms, wait.blocker_login) == (5, 6, 0, "")


@pytest.mark.parametrize(
    ("row", "line"),
    [
        (
            {
                "session_id": 58,
                "command": "BACKUP DATABASE ",
                "percent_complete": 42.137,
                "estimated_completion_time": Decimal(185_000),
            },
            "BACKUP DATABASE: 42% done, about 3 min left (session 58)",
        ),
        (
            {
                "session_id": 58,
                "command": "RESTORE DATABASE",
                "percent_complete": 99.5,
                "estimated_completion_time": 2000,
            },
            "RESTORE DATABASE: 99% done, under a minute left (session 58)",
        ),
        (
            {"session_id": 3, "command": "CREATE INDEX", "percent_complete": 10.0},
            "CREATE INDEX: 10% done (session 3)",
        ),
    ],
)
def test_statement_progress_rows(row: dict[str, object], line: str) -> None:
    assert statement_progress(row, NOW) == line


def test_session_hooks() -> None:
    assert postgresql.DIALECT.session_id_sql() == "SELECT pg_backend_pid()"
    assert MS.session_id_sql() == "SELECT @@SPID"
    assert sqlite.DIALECT.session_id_sql() is None
    assert sqlite.DIALECT.statement_progress_sql() is None
    assert postgresql.DIALECT.statement_progress_sql() is None
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        assert sqlite.DIALECT.session_id(conn) is None
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_session_id_is_asked_once_per_connection(pg_url: str) -> None:
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert postgresql.DIALECT.session_id(conn) == pid
        conn.info["barq_session_id"] = -1  # remembered with the connection, not asked again
        assert postgresql.DIALECT.session_id(conn) == -1
    engine.dispose()


class _ProgressDialect:
    """SQL Server's progress columns, served by SQLite (no SQL Server runs here)."""

    def statement_progress_sql(self) -> str:
        return (
            "SELECT 58 AS session_id, 'BACKUP DATABASE' AS command, 42.1 AS percent_complete,"
            " 185000 AS estimated_completion_time, NULL AS start_time"
        )


def test_long_statement_progress_reaches_the_step_lines() -> None:
    """The poller reads the progress rows on its own connection; they replace the previous
    poll's lines in the running step's live lines, and the step's own lines stay."""
    engine = create_engine("sqlite://")
    target = SimpleNamespace(engine=engine, dialect=_ProgressDialect())
    poller = Poller(target)  # type: ignore[arg-type]
    live = LiveProgress(1, "backup", "backup", started_at=NOW)
    live.tail.append("step output")
    show_statements(live, ["old: 10% done"])
    show_statements(live, poller.statements(NOW))
    poller.close()
    engine.dispose()
    assert list(live.tail) == [
        "step output",
        "⏳ BACKUP DATABASE: 42% done, about 3 min left (session 58)",
    ]


class _Store:
    """Just enough of the Store for a watch to read its migration."""

    def __init__(self, m: Any) -> None:
        self.m = m

    def get(self, migration_id: int) -> Any:
        return self.m


async def test_a_failing_poll_is_logged_once_and_the_watch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A target the monitor cannot reach: one warning, then quiet retries at each poll; a
    SQLite target is not watched at all (no session views)."""
    unreachable = Target("staging", create_engine("postgresql+psycopg://x@127.0.0.1:1/x"))
    lite = Target("lite", create_engine("sqlite://"))
    fast = MonitorSettings(poll_seconds=0.01, throttle_after_seconds=0, pause_after_seconds=1)
    targets = {"staging": Watched(unreachable, fast), "lite": Watched(lite, fast)}
    m = SimpleNamespace(id=4, target="staging")
    monitor = BlockingMonitor(_Store(m), None, lambda: NOW, targets)  # type: ignore[arg-type]
    control = Control()
    caplog.set_level(logging.DEBUG, logger="bot.adapters.monitor")
    three = asyncio.Event()

    class Counted(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if len(caplog.records) >= 3:
                three.set()

    counted = Counted()
    logging.getLogger("bot.adapters.monitor").addHandler(counted)
    watch = asyncio.create_task(monitor.watch(4, control, NoPager()))
    try:
        await asyncio.wait_for(three.wait(), timeout=10)
    finally:
        logging.getLogger("bot.adapters.monitor").removeHandler(counted)
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    levels = [r.levelname for r in caplog.records]
    assert levels[0] == "WARNING" and set(levels[1:]) == {"DEBUG"} and len(levels) >= 3
    assert "migration 4: blocking poll failed" in caplog.records[0].getMessage()
    m.target = "lite"
    await asyncio.wait_for(monitor.watch(4, control, NoPager()), timeout=5)
    unreachable.engine.dispose()
    lite.engine.dispose()
