"""A Target's transactions: the dialect bounds them (statement timeout on PostgreSQL, progress
handler on SQLite, lock and query timeouts on SQL Server, checked against a stand-in pyodbc
connection) and applies the isolation level asked for; SQLite targets enforce foreign keys
without touching any other engine in the process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.adapters.targets import mssql
from bot.adapters.targets.target import Target

# A statement that runs for minutes unless interrupted (SQLite and PostgreSQL alike).
_ENDLESS = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000)"
    " SELECT COUNT(*) FROM n"
)


@pytest.fixture
def target(target_url: str) -> Iterator[Target]:
    t = Target.connect("t", target_url)
    with t.engine.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INT PRIMARY KEY, Hits INT)"))
        conn.execute(text("INSERT INTO Items VALUES (1, 0)"))
    yield t
    t.engine.dispose()


def _hits(target: Target) -> int:
    return int(target.scalar("SELECT Hits FROM Items WHERE Id = 1", {}))


def test_a_transaction_commits_at_the_end_and_rolls_back_on_error(target: Target) -> None:
    with target.transaction(timeout=5) as conn:
        conn.execute(text("UPDATE Items SET Hits = 1"))
    assert _hits(target) == 1
    with pytest.raises(RuntimeError), target.transaction(timeout=5) as conn:
        conn.execute(text("UPDATE Items SET Hits = 2"))
        raise RuntimeError("the step failed")
    assert _hits(target) == 1


def test_a_statement_past_the_timeout_is_stopped(target: Target) -> None:
    with pytest.raises(OperationalError), target.transaction(timeout=0.2) as conn:
        conn.execute(text(_ENDLESS))
    with target.transaction(timeout=5) as conn:  # the bound ends with its transaction
        assert conn.execute(text("SELECT COUNT(*) FROM Items")).scalar() == 1


@pytest.mark.postgres
def test_the_isolation_level_holds_for_that_transaction_only(pg_url: str) -> None:
    target = Target.connect("pg", pg_url)
    level = "SELECT current_setting('transaction_isolation')"
    try:
        with target.transaction(timeout=5, isolation="REPEATABLE READ") as conn:
            assert conn.execute(text(level)).scalar() == "repeatable read"
        with target.transaction(timeout=5) as conn:
            assert conn.execute(text(level)).scalar() == "read committed"
    finally:
        target.engine.dispose()


def test_sqlite_targets_enforce_foreign_keys_and_other_engines_are_left_alone(
    sqlite_url: str,
) -> None:
    """The foreign-keys setting is the target's: an engine made elsewhere (the state store's)
    keeps SQLite's default."""
    target = Target.connect("lite", sqlite_url)
    with target.engine.begin() as conn:
        conn.execute(text("CREATE TABLE Parents (Id INT PRIMARY KEY)"))
        conn.execute(text("CREATE TABLE Kids (Id INT, ParentId INT REFERENCES Parents (Id))"))
    with pytest.raises(IntegrityError), target.transaction(timeout=5) as conn:
        conn.execute(text("INSERT INTO Kids VALUES (1, 42)"))
    Target("again", target.engine)  # a second Target on the engine adds no second listener
    other = create_engine(sqlite_url)
    with other.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 0
    other.dispose()
    target.engine.dispose()


class _Pyodbc:
    """The part of a pyodbc connection the dialect touches: its query timeout."""

    timeout = 7


class _Connection:
    """Records statements like a SQLAlchemy connection; ``.connection.driver_connection``
    reaches the stand-in pyodbc connection, as through SQLAlchemy's pool."""

    def __init__(self) -> None:
        self.driver_connection = _Pyodbc()
        self.connection = self
        self.log: list[str] = []

    def execute(self, clause: Any) -> None:
        self.log.append(f"{clause} (query timeout {self.driver_connection.timeout})")


@pytest.mark.parametrize("fails", [False, True])
def test_mssql_sets_lock_and_query_timeouts_for_the_transaction(fails: bool) -> None:
    """SET LOCK_TIMEOUT in milliseconds; pyodbc's query timeout in whole seconds (rounded
    up) while the block runs, and the connection's own value afterwards, even on error."""
    conn = _Connection()
    raw = conn.driver_connection
    expected = pytest.raises(RuntimeError) if fails else nullcontext()
    with expected, mssql.DIALECT.begin(conn, 2.5):  # type: ignore[arg-type]
        assert raw.timeout == 3
        if fails:
            raise RuntimeError("deadlock victim")
    assert conn.log == ["SET LOCK_TIMEOUT 2500 (query timeout 7)"]
    assert raw.timeout == 7


@pytest.mark.postgres
def test_postgresql_statistics_are_refreshed_once_a_tenth_of_the_rows_changed(pg_url: str) -> None:
    """A keyset step starts by refreshing stale statistics: after a bulk UPDATE (as a run
    leaves them for its rollback) once, then not again until the rows change again."""
    target = Target.connect("t", pg_url)
    try:
        with target.engine.begin() as conn:
            conn.execute(text("CREATE TABLE Items (Id INT PRIMARY KEY, TenantId INT)"))
            conn.execute(text("INSERT INTO Items SELECT g, 1 FROM generate_series(1, 5000) g"))
        target.engine.dispose()  # each session's pending statistics reach the server as it ends
        with target.engine.begin() as conn:
            conn.execute(text("ANALYZE Items"))
        target.engine.dispose()
        assert not target.refresh_statistics("Items")
        with target.engine.begin() as conn:
            conn.execute(text("UPDATE Items SET TenantId = 2 WHERE Id <= 1000"))
        target.engine.dispose()
        assert target.refresh_statistics("Items")
        assert not target.refresh_statistics("Items")
        with target.engine.connect() as conn:
            common = "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'items'"
            assert conn.execute(text(f"{common} AND attname = 'tenantid'")).scalar() == "{1,2}"
    finally:
        target.engine.dispose()


def test_sqlite_keeps_no_statistics_to_refresh(sqlite_url: str) -> None:
    target = Target.connect("t", sqlite_url)
    assert not target.refresh_statistics("Items")
    target.engine.dispose()
