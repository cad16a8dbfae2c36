"""When SQL Server has ended the transaction by itself (a deadlock victim, a lock timeout
under XACT_ABORT ON, a lost connection), the bot's own ROLLBACK fails with 3903. That
failure is expected: the statement's own error is the one classified (so a transient one is
retried) and the one reported, never the rollback's. Against a stand-in pyodbc connection
(tests/fake_pyodbc.py) on SQLAlchemy's real mssql+pyodbc dialect."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyodbc
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.adapters.targets.dialect import error_message
from bot.adapters.targets.retries import retry_transient
from bot.adapters.targets.target import Target

if TYPE_CHECKING:
    from tests.fake_pyodbc import Server

pytest_plugins = ["tests.fake_pyodbc"]  # its fixtures: server, ms

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
STEP = "UPDATE dbo.Tasks SET TenantId = 2 WHERE TenantId = 1"

DEADLOCK = pyodbc.OperationalError(
    "40001",
    "[40001] [FreeTDS][SQL Server]Transaction (Process ID 57) was deadlocked on lock"
    " resources with another process and has been chosen as the deadlock victim. Rerun the"
    " transaction. (1205) (SQLExecDirectW)",
)
LOCK_TIMEOUT = pyodbc.OperationalError(
    "HY000", "[HY000] [FreeTDS][SQL Server]Lock request time out period exceeded. (1222)"
)
LINK_LOST = pyodbc.OperationalError(
    "08S01", "[08S01] [FreeTDS][SQL Server]Communication link failure (0) (SQLExecDirectW)"
)
TRUNCATED = pyodbc.ProgrammingError(
    "22001",
    "[22001] [FreeTDS][SQL Server]String or binary data would be truncated in table"
    " 'dbo.Tasks', column 'Title'. (2628) (SQLExecDirectW)",
)


def _run(ms: Target, retries: int) -> int:
    return ms.run_sql(STEP, {}, run_key="m-7", step="move", timeout=5, now=NOW, retries=retries)


@pytest.mark.parametrize(
    "error", [DEADLOCK, LOCK_TIMEOUT, LINK_LOST], ids=["deadlock", "lock-timeout", "link-lost"]
)
def test_a_transient_error_is_retried_though_the_rollback_fails(
    ms: Target, server: Server, error: Exception
) -> None:
    server.failures[STEP] = [error]
    assert _run(ms, retries=2) == 1
    assert len(server.statements(STEP)) == 2
    last = len(server.log) - server.log[::-1].index(STEP)
    assert "COMMIT" in server.log[last:]  # the retry committed


def test_the_last_transient_error_is_raised_not_the_rollbacks(ms: Target, server: Server) -> None:
    server.failures[STEP] = [DEADLOCK, DEADLOCK]
    with pytest.raises(DBAPIError) as raised:
        _run(ms, retries=1)
    assert "(1205)" in error_message(raised.value)
    assert ms.dialect.classify(raised.value) == "deadlock"


def test_a_permanent_error_is_reported_with_its_own_number_and_text(
    ms: Target, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.failures[STEP] = [TRUNCATED]
    debug = caplog.at_level(logging.DEBUG, logger="bot.adapters.targets.target")
    with debug, pytest.raises(DBAPIError) as raised:
        _run(ms, retries=3)
    said = error_message(raised.value)
    assert "would be truncated" in said and "(2628)" in said
    assert "3903" not in said and "ROLLBACK" not in said
    assert len(server.statements(STEP)) == 1  # not retried
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "3903" in r.getMessage()]
    assert len(debug) == 1  # the rollback's failure, logged as expected
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_batch_transaction_is_retried_though_the_rollback_fails(
    ms: Target, server: Server
) -> None:
    """The batch runner's attempt: a transaction at the job's isolation, under
    retry_transient."""
    server.failures[STEP] = [DEADLOCK]

    def attempt() -> int:
        with ms.transaction(timeout=5, isolation="REPEATABLE READ") as conn:
            return int(conn.execute(text(STEP)).rowcount)

    assert retry_transient(attempt, ms.dialect, retries=1, where="batch") == (1, 1)


@pytest.mark.parametrize(
    ("error", "kind", "number"),
    [(DEADLOCK, "deadlock", "(1205)"), (LOCK_TIMEOUT, "lock_timeout", "(1222)")],
    ids=["deadlock", "lock-timeout"],
)
def test_a_failed_rollback_outside_the_bots_transactions_is_classified_by_the_first_error(
    ms: Target, server: Server, error: Exception, kind: str, number: str
) -> None:
    """SQLAlchemy's own ``engine.begin()`` raises the rollback's 3903 with the statement's
    error in its ``__context__`` chain: classification and the message use that one."""
    server.failures[STEP] = [error]
    with pytest.raises(DBAPIError) as raised, ms.engine.begin() as conn:
        conn.execute(text(STEP))
    assert "3903" in str(raised.value)  # what SQLAlchemy raises
    assert ms.dialect.classify(raised.value) == kind
    said = error_message(raised.value)
    assert number in said and "3903" not in said
