"""A stand-in pyodbc connection for a SQLAlchemy engine on the mssql+pyodbc dialect
(``create_engine("mssql+pyodbc://", creator=server.connect)``): it answers the queries the
dialect asks when it first connects, records every statement, and fails the statements a
test scripts, the way SQL Server does. No server, no ODBC driver: pyodbc's own exception
classes, so SQLAlchemy wraps them as it wraps the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyodbc
import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bot.adapters.targets.target import Target

ROLLBACK_WITHOUT_BEGIN = pyodbc.ProgrammingError(
    "42000",
    "[42000] [FreeTDS][SQL Server]The ROLLBACK TRANSACTION request has no corresponding"
    " BEGIN TRANSACTION. (3903) (SQLExecDirectW)",
)

# What the dialect reads when it first connects, by a fragment of its query.
_ANSWERS = {
    "serverproperty": "16.0.4003.1",
    "schema_name()": "dbo",
    "system_views": "dm_exec_sessions",
    "transaction_isolation_level": "READ COMMITTED",
    "nvarchar(max)": "test max support",
}


@dataclass
class Server:
    """What every connection of one test shares: the script of failures and the log.

    ``failures`` maps a statement fragment to the errors its next executions raise, in
    order. A failing statement ends the server's transaction (a deadlock victim, XACT_ABORT
    ON), so the ROLLBACK that follows fails with 3903. ``rowcounts`` gives the rowcount of
    the next executions of a fragment (1 when unscripted)."""

    failures: dict[str, list[Exception]] = field(default_factory=dict)
    rowcounts: dict[str, list[int]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def connect(self) -> Connection:
        return Connection(self)

    def statements(self, fragment: str) -> list[str]:
        return [s for s in self.log if fragment in s]


@pytest.fixture
def server() -> Server:
    """The stand-in SQL Server of one test (import this fixture and ``ms``)."""
    return Server()


@pytest.fixture
def ms(server: Server) -> Iterator[Target]:
    """A target on SQLAlchemy's mssql+pyodbc dialect whose connections are ``server``'s."""
    engine = create_engine("mssql+pyodbc://", creator=server.connect, poolclass=NullPool)
    yield Target("ms", engine)
    engine.dispose()


class Connection:
    timeout = 0
    autocommit = False

    def __init__(self, server: Server) -> None:
        self.server = server
        self.ended = False  # the server rolled the transaction back by itself

    def cursor(self) -> Cursor:
        return Cursor(self)

    def rollback(self) -> None:
        self.server.log.append("ROLLBACK")
        if self.ended:
            self.ended = False
            raise ROLLBACK_WITHOUT_BEGIN

    def commit(self) -> None:
        self.server.log.append("COMMIT")

    def close(self) -> None:
        return

    def getinfo(self, *_: Any) -> str:
        return "16.00.4003"

    def setdecoding(self, *_: Any, **__: Any) -> None:
        return

    def setencoding(self, *_: Any, **__: Any) -> None:
        return

    def add_output_converter(self, *_: Any) -> None:
        return


class Cursor:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, *_params: Any) -> Cursor:
        server = self.conn.server
        server.log.append(sql)
        for fragment, errors in server.failures.items():
            if fragment in sql and errors:
                self.conn.ended = True
                raise errors.pop(0)
        low = sql.lower()
        answer = next((a for key, a in _ANSWERS.items() if key in low), None)
        if answer is not None:
            self._result(["c"], [(answer,)])
        elif low.lstrip().startswith("select") and "barq_checkpoints" in low:
            columns = "migration_id step branch last_key rows_done batches done updated_at"
            self._result(columns.split(), [])
        elif low.lstrip().startswith("select"):  # any other query: the table exists, say
            self._result(["c"], [(1,)])
        else:
            counts = next((c for key, c in server.rowcounts.items() if key in sql and c), None)
            self.rowcount = counts.pop(0) if counts else 1
        return self

    def _result(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(c, str, None, None, None, None, True) for c in columns]
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, _size: int = 1) -> list[tuple[Any, ...]]:
        return self.fetchall()

    def close(self) -> None:
        return

    def setinputsizes(self, _sizes: Any) -> None:
        return

    def nextset(self) -> bool:
        return False
