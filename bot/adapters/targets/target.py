"""A named target database: runs plan steps in transactions, with a checkpoint row per step
committed in the same transaction, so a step is applied exactly once even across restarts.

Every method blocks: callers run them in a thread, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    make_url,
    text,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.adapters.commands import TargetFields, show_target
from bot.adapters.targets.dialect import BackupInfo, Dialect, unwrap_dbapi_error
from bot.adapters.targets.dialect import error_message as error_message  # its old home
from bot.adapters.targets.dialects import check_client, dialect_for
from bot.adapters.targets.retries import retry_transient
from bot.domain.blocking import Throttle
from bot.domain.plan import Plan
from bot.domain.runbook import bound_names, compare
from bot.errors import QueryFailed, TargetUnavailable

logger = logging.getLogger(__name__)

_journal_md = MetaData()
journal = Table(
    "barq_journal",
    _journal_md,
    Column("migration_id", String(64), primary_key=True, quote=False),
    Column("table_name", String(100), primary_key=True, quote=False),
    Column("row_id", BigInteger, primary_key=True, autoincrement=False, quote=False),
    quote=False,
)


@dataclass(frozen=True)
class CheckResult:
    """A check's verdict, with the value it saw and what it expected."""

    passed: bool
    value: Any
    expected: str


class Target:
    """One configured target database."""

    def __init__(self, name: str, engine: Engine, *, production: bool = False) -> None:
        self.name = name
        self.engine = engine
        self.production = production
        self.dialect: Dialect = dialect_for(engine)
        self.dialect.configure(engine)
        self._prepared = False

    @classmethod
    def connect(cls, name: str, url: str, *, production: bool = False) -> Target:
        """Create the engine for ``url`` (no connection is opened yet). Raises ConfigError,
        saying what to install, when this machine lacks the database's driver."""
        parsed = make_url(url)
        check_client(name, parsed)
        return cls(name, create_engine(parsed, pool_pre_ping=True), production=production)

    def describe(self) -> str:
        """The target without secrets: dialect, host and database only."""
        url = self.engine.url
        return f"{self.name} ({url.get_backend_name()} {url.host or ''}/{url.database or ''})"

    # -- reading ----------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection to read with. When none can be opened (the server cannot be reached,
        as the dialect classifies the driver's error, or it refuses the login), raises
        TargetUnavailable with the driver's own message."""
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            how = "reach" if self.dialect.classify(exc) == "connection" else "connect to"
            raise TargetUnavailable(
                f"cannot {how} {self.describe()}: {error_message(exc)}"
            ) from exc
        with conn:
            yield conn

    def scalar(self, sql: str, params: dict[str, Any]) -> Any:
        """The first column of the first row of ``sql`` (None when there is no row); raise
        TargetUnavailable when the target cannot be reached, and QueryFailed with the
        database's own message when the query fails."""
        with self._reading() as conn:
            try:
                return conn.execute(text(sql), _bind(sql, params)).scalar()
            except SQLAlchemyError as exc:
                raise QueryFailed(self.name, error_message(exc)) from exc

    def count(self, sql: str, params: dict[str, Any]) -> int:
        """A count query's value."""
        return int(self.scalar(sql, params) or 0)

    def blocking_sessions(self) -> list[dict[str, Any]] | None:
        """The sessions blocked on the target now and who blocks them, one dict per row of
        the dialect's blocking query; None when the dialect has none (SQLite)."""
        sql = self.dialect.blocking_sessions_sql()
        if sql is None:
            return None
        with self._reading() as conn:
            try:
                return [dict(row) for row in conn.execute(text(sql)).mappings()]
            except SQLAlchemyError as exc:
                raise QueryFailed(self.name, error_message(exc)) from exc

    def command_fields(self) -> TargetFields:
        """What command steps' ``{target.*}`` is filled with on this target, as its dialect
        reads them from its URL."""
        return self.dialect.command_fields(self.engine.url)

    def show_command_fields(self, plan: Plan) -> Plan:
        """``plan`` with each command step shown as it will run here (``{target.*}`` filled,
        secrets masked); raises TargetFieldError, naming the step and the runbook, if a
        field cannot be filled (so the plan is refused, not the run)."""
        fields, runbook = self.command_fields(), plan.runbook
        steps = show_target(plan.steps, fields, self.name, runbook)
        rollback = show_target(plan.rollback, fields, self.name, runbook)
        return plan.model_copy(update={"steps": tuple(steps), "rollback": tuple(rollback)})

    def check(
        self, sql: str, params: dict[str, Any], *, expect: str | None, equals_sql: str | None
    ) -> CheckResult:
        """Run a check step's query and judge it."""
        with self._reading() as conn:
            value = conn.execute(text(sql), _bind(sql, params)).scalar()
            if equals_sql is not None:
                other = conn.execute(text(equals_sql), _bind(equals_sql, params)).scalar()
                return CheckResult(value == other, value, f"== {other} (from the equals query)")
        assert expect is not None
        number = 0 if value is None else value
        return CheckResult(compare(number, expect), value, expect)

    # -- writing ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the bot's small bookkeeping tables in the target if they are missing."""
        if self._prepared:
            return
        with self.engine.connect() as conn, committing(conn):
            for ddl in self.dialect.checkpoint_table_ddl():
                conn.execute(text(ddl))
            if not self.dialect.prepare_journal(conn):
                journal.create(conn, checkfirst=True)
        self._prepared = True

    def completed_steps(self, run_key: str) -> set[str]:
        """The steps of run ``run_key`` whose transaction committed (from checkpoints)."""
        self.prepare()
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT step FROM barq_checkpoints"
                    " WHERE migration_id = :m AND branch = '' AND done = :d"
                ),
                {"m": run_key, "d": True},
            )
            return {r[0] for r in rows}

    def keys(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """The first column of every row of ``sql`` (the branch keys of a parallel step)."""
        with self._reading() as conn:
            return [row[0] for row in conn.execute(text(sql), _bind(sql, params))]

    def mark_done(self, run_key: str, step: str, now: datetime, rows: int = 0) -> None:
        """Checkpoint a step that is not a transaction on the target (command, backup)."""
        self.prepare()
        with self.engine.connect() as conn, committing(conn):
            self.dialect.write_checkpoint(conn, _checkpoint(run_key, step, rows, now))

    def run_sql(
        self,
        sql: str,
        params: dict[str, Any],
        *,
        run_key: str,
        step: str,
        timeout: float,
        now: datetime,
        retries: int = 0,
        throttle: Throttle | None = None,
    ) -> int:
        """Run a step's statements and its checkpoint in one transaction; return rows touched.

        Exactly once: a step whose checkpoint is committed already is not run again, so a
        retry after a commit whose answer was lost finds it. Transient errors (deadlock,
        serialization failure, lock timeout, lost connection) retry the whole transaction
        up to ``retries`` times; any other error propagates at once. With a ``throttle``, the
        transaction's session is the run's own while it is open (for the blocking monitor).
        """
        self.prepare()
        key = {"migration_id": run_key, "step": step, "branch": ""}

        def once() -> int:
            rows = 0
            with self.transaction(timeout=timeout) as conn, self._owned(conn, throttle):
                done = conn.execute(text(self.dialect.checkpoint_select_sql()), key).mappings()
                checkpoint = done.first()
                if checkpoint is not None and checkpoint["done"]:
                    return int(checkpoint["rows_done"])
                for statement in self.dialect.split_script(sql):
                    result = conn.execute(text(statement), _bind(statement, params))
                    rows += max(result.rowcount or 0, 0)
                checkpoint_row = _checkpoint(run_key, step, rows, now)
                self.dialect.write_checkpoint(conn, checkpoint_row)
            return rows

        where = f"migration {run_key} step {step}"
        rows, _retries = retry_transient(
            once, self.dialect, retries=retries, where=where, log=logger
        )
        return rows

    def _owned(self, conn: Connection, throttle: Throttle | None) -> AbstractContextManager[None]:
        if throttle is None:
            return nullcontext()
        return throttle.owning(self.dialect.session_id(conn))

    @contextmanager
    def transaction(self, *, timeout: float, isolation: str | None = None) -> Iterator[Connection]:
        """A transaction on the target: committed when the block ends, rolled back if it
        raises. Its statements are bounded by ``timeout`` seconds the dialect's way;
        ``isolation`` is e.g. "REPEATABLE READ" (None: the engine's default)."""
        with self.engine.connect() as conn:
            if isolation is not None:
                conn.execution_options(isolation_level=isolation)
            with committing(conn), self.dialect.begin(conn, timeout):
                yield conn

    def refresh_statistics(self, table: str, *, timeout: float = 30.0) -> bool:
        """Refresh the planner's statistics of ``table`` if the dialect finds them stale;
        whether it did. Best effort: a lock that does not come within ``timeout`` seconds or
        a refusal is logged, and the step runs on the statistics it has."""
        statements = self.dialect.stale_statistics_sql(self.dialect.checked_identifier(table))
        if statements is None:
            return False
        stale_sql, refresh_sql = statements
        try:
            with self.transaction(timeout=timeout) as conn:
                if not conn.execute(text(stale_sql), {"table": table}).scalar():
                    return False
                conn.execute(text(refresh_sql))
        except DBAPIError as exc:
            logger.warning("could not refresh the statistics of %s: %s", table, exc.orig)
            return False
        logger.info("refreshed the planner's statistics of %s (stale)", table)
        return True

    # -- backups ----------------------------------------------------------------------------

    def backup(
        self,
        directory: PurePath | str,
        *,
        label: str,
        tables: list[str] | None = None,
        timeout: float,
    ) -> BackupInfo:
        """Back up the target (or only ``tables``) into ``directory`` and verify it, within
        ``timeout`` seconds where the dialect can bound it; raises BackupError."""
        return self.dialect.backup(
            self.engine, directory, label=label, tables=tables, timeout=timeout
        )

    def restore(self, info: BackupInfo, *, timeout: float) -> None:
        """Verify the backup ``info``, then restore it over the target; raises BackupError."""
        self.dialect.restore(self.engine, info, timeout=timeout)


@contextmanager
def committing(conn: Connection) -> Iterator[Connection]:
    """A transaction on ``conn``: committed when the block ends, rolled back if it raises.

    The block's own error always propagates. SQL Server may have ended the transaction by
    itself already (a deadlock victim, XACT_ABORT ON, a batch-aborting error, a lost
    connection), and then the rollback fails too (3903, "no corresponding BEGIN
    TRANSACTION"): that failure is expected, logged at debug, and the connection, in a state
    nobody knows, is invalidated rather than pooled. SQLAlchemy's ``with conn.begin()``
    would raise the rollback's error instead, hiding the one to classify and report.
    """
    transaction = conn.begin()
    try:
        yield conn
    except BaseException as exc:
        try:
            transaction.rollback()
        except Exception as failed:
            said = unwrap_dbapi_error(failed)[0]  # the rollback's own words, not the first error
            logger.debug("rollback after %s failed, as expected: %s", type(exc).__name__, said)
            conn.invalidate()
        raise
    transaction.commit()


def _checkpoint(run_key: str, step: str, rows: int, now: datetime) -> dict[str, Any]:
    return {
        "migration_id": run_key,
        "step": step,
        "branch": "",
        "last_key": None,
        "rows": rows,
        "done": True,
        "now": now.astimezone(UTC).replace(tzinfo=None),
    }


def _bind(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """Only the parameters the statement uses: SQLAlchemy binds them, never interpolates."""
    names = bound_names(sql)
    return {k: v for k, v in params.items() if k in names}
