"""A checkpoint write records one more batch exactly once, even when two sessions create the
same checkpoint at once. PostgreSQL and SQLite upsert in one statement (INSERT ... ON
CONFLICT), raced here for real; SQL Server, which cannot run here, uses no MERGE: an
UPDATE ... WITH (UPDLOCK, HOLDLOCK), then an INSERT when it updated no row, checked as
T-SQL and, for its control flow, against a stand-in pyodbc connection."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlglot
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from sqlglot import exp

from bot.adapters.targets import mssql
from bot.adapters.targets.batches import batch_sql
from bot.adapters.targets.target import Target
from tests.test_batches_tsql import HOOK, INSERT, UPDATE, statements

if TYPE_CHECKING:
    from tests.fake_pyodbc import Server

pytest_plugins = ["tests.fake_pyodbc"]  # its fixtures: server, ms

MS = mssql.DIALECT
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = {"migration_id": "m-7", "step": "move", "branch": ""}


def _mssql_sql() -> list[str]:
    """Every statement the SQL Server dialect writes for the checkpoint and batch steps."""
    found = [*MS.checkpoint_table_ddl(), MS.checkpoint_select_sql()]
    found += [s for s in MS.checkpoint_write_sql() if s is not None]
    found += [MS.next_key_sql("dbo.Tasks", "Id"), MS.remaining_count_sql("dbo.Tasks", "Id")]
    for plan in (UPDATE, INSERT, HOOK):
        found += statements(batch_sql(MS, plan))
    return found


def test_no_merge_anywhere_in_the_sql_server_dialects_sql() -> None:
    for sql in _mssql_sql():
        assert not re.search(r"\bMERGE\b", sql, re.I), sql
        for tree in sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE):
            assert tree is not None and tree.find(exp.Merge) is None, sql


def _written(server: Server) -> list[str]:
    """The checkpoint writes sent, in order: the first word of each."""
    return [s.split()[0] for s in server.log if "INTO dbo.barq_checkpoints" in s or "UPDLOCK" in s]


def _after_update(server: Server) -> list[str]:
    first = next(i for i, s in enumerate(server.log) if "UPDLOCK" in s)
    return server.log[first:]


@pytest.mark.parametrize(("updated", "sent"), [(0, ["UPDATE", "INSERT"]), (1, ["UPDATE"])])
def test_sql_server_inserts_the_checkpoint_only_when_the_update_found_no_row(
    ms: Target, server: Server, updated: int, sent: list[str]
) -> None:
    server.rowcounts["UPDLOCK"] = [updated]
    ms.mark_done("m-7", "move", NOW, rows=3)
    assert _written(server) == sent
    assert _after_update(server).count("COMMIT") == 1  # one transaction, committed once


def test_sql_server_refuses_a_checkpoint_update_without_a_row_count(
    ms: Target, server: Server
) -> None:
    """SET NOCOUNT ON hides the row count: inserting blindly could fail or double the row, so
    the write fails (and its transaction rolls back) instead."""
    server.rowcounts["UPDLOCK"] = [-1]
    with pytest.raises(RuntimeError, match="row count"):
        ms.mark_done("m-7", "move", NOW)
    assert _written(server) == ["UPDATE"] and "COMMIT" not in _after_update(server)


def _row(target: Target) -> Any:
    with target.engine.connect() as conn:
        sql = text(target.dialect.checkpoint_select_sql())
        return conn.execute(sql, KEY).mappings().all()


def test_two_sessions_creating_one_checkpoint_leave_one_row(target_url: str) -> None:
    """The first session inserts the row and holds its transaction open; the second one's
    write waits for it, then adds its batch to that row: one row, both batches, no error."""
    target = Target("t", create_engine(target_url, poolclass=NullPool))
    target.prepare()
    params = {**KEY, "last_key": None, "done": False, "now": NOW.replace(tzinfo=None)}
    second_done = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with target.engine.begin() as conn:
                target.dialect.write_checkpoint(conn, {**params, "rows": 5})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            second_done.set()

    try:
        with target.engine.begin() as conn:
            target.dialect.write_checkpoint(conn, {**params, "rows": 2})
            racer = threading.Thread(target=second)
            racer.start()
            assert not second_done.wait(0.5)  # it waits for the first session's row
        racer.join(timeout=30)
        assert not errors
        rows = _row(target)
        assert [(r["rows_done"], r["batches"]) for r in rows] == [(7, 2)]
    finally:
        target.engine.dispose()
