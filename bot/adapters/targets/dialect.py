"""The interface every target-database dialect implements, plus shared helpers.

One module per dialect (``mssql``, ``postgresql``, ``sqlite``) subclasses :class:`Dialect`
and exposes a module-level singleton; ``dialects.dialect_for`` picks the right one.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import ClassVar, Literal, get_args

from sqlalchemy import URL, Connection, Engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError

from bot.adapters.commands import TargetFields, url_fields
from bot.adapters.targets.statements import split_statements

__all__ = [
    "ERROR_KINDS",
    "JOURNAL_COLUMNS",
    "BackupInfo",
    "Dialect",
    "ErrorKind",
    "backup_file_name",
    "error_message",
    "file_sha256",
    "first_error",
    "timeout_ms",
    "unwrap_dbapi_error",
    "validate_column",
    "validate_identifier",
    "where_clause",
]

ErrorKind = Literal["deadlock", "serialization", "lock_timeout", "connection", "permanent"]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

#: The columns of a journal row (the bot's ``barq_journal``): the run, the table, the key.
JOURNAL_COLUMNS = "migration_id, table_name, row_id"

_IDENT_PART = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
_IDENTIFIER = re.compile(rf"{_IDENT_PART}(?:\.{_IDENT_PART})?")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class BackupInfo:
    """Where a backup lives and what it holds.

    ``location`` is a local file path for PostgreSQL and SQLite, and a path on the SQL
    Server host's disk for SQL Server. ``sha256`` is only set for local files.
    ``verified`` tells whether the backup was checked right after it was taken.
    """

    location: str
    dialect: str
    label: str
    size_bytes: int | None
    sha256: str | None
    verified: bool
    tables: tuple[str, ...] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def validate_identifier(name: str) -> str:
    """Return ``name`` unchanged if it is a plain, optionally schema-qualified identifier.

    Identifiers come from runbooks and are interpolated into SQL unquoted (so PostgreSQL
    folds them to lower case like the rest of the schema); anything but
    ``[A-Za-z_][A-Za-z0-9_]*`` optionally prefixed by ``schema.`` raises ValueError.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"invalid SQL identifier {name!r}: expected name or schema.name")
    return name


def validate_column(name: str) -> str:
    """Like :func:`validate_identifier` but for a bare (unqualified) column name."""
    if "." in validate_identifier(name):
        raise ValueError(f"invalid column name {name!r}: expected an unqualified name")
    return name


def timeout_ms(seconds: float) -> int:
    """Convert a positive, finite timeout in seconds to whole milliseconds (at least 1)."""
    if not isinstance(seconds, int | float) or not 0 < seconds < float("inf"):
        raise ValueError(f"invalid timeout {seconds!r}: expected a positive number of seconds")
    return max(1, round(seconds * 1000))


def backup_file_name(label: str, suffix: str, *, now: datetime | None = None) -> str:
    """Build ``<label>-<UTC timestamp><suffix>``; the label must be file-name safe."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ValueError(f"invalid backup label {label!r}: use letters, digits, '_', '.', '-'")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{label}-{stamp}{suffix}"


def file_sha256(path: str | Path) -> str:
    """Return the hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first_error(exc: BaseException) -> BaseException:
    """The statement's error behind a failed rollback, else ``exc``.

    When a statement fails in a transaction the server has ended already (SQL Server: a
    deadlock victim, XACT_ABORT ON), SQLAlchemy's ``with conn.begin()`` rolls back, the
    rollback fails too (3903) and its error, which names no statement, replaces the first:
    that one is still in the ``__context__`` chain, as the first error naming a statement.
    """
    if not isinstance(exc, DBAPIError) or exc.statement is not None:
        return exc
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, DBAPIError) and seen.statement is not None:
            return seen
        seen = seen.__context__
    return exc


def unwrap_dbapi_error(exc: BaseException) -> tuple[BaseException, bool]:
    """Return the driver exception behind a SQLAlchemy error and whether the connection died.

    ``sqlalchemy.exc.DBAPIError`` carries the driver's exception in ``.orig`` and sets
    ``connection_invalidated`` when SQLAlchemy detected a disconnect.
    """
    invalidated = False
    while isinstance(exc, sa_exc.DBAPIError):
        invalidated = invalidated or bool(exc.connection_invalidated)
        if exc.orig is None or exc.orig is exc:
            break
        exc = exc.orig
    return exc, invalidated


def error_message(exc: BaseException) -> str:
    """The database's own message, without SQLAlchemy's SQL echo, parameters or passwords
    (the statement's, not a failed rollback's after it: :func:`first_error`)."""
    exc = first_error(exc)
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    state, said = args if len(args) == 2 else (None, None)
    if isinstance(state, str) and len(state) == 5 and isinstance(said, str):
        text = said  # pyodbc's (SQLSTATE, message): the message names the state already
    else:
        text = str(orig)
    text = text.split("\n[SQL:")[0].split("\n(Background on this error")[0]
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", text).strip()[:1500]


class Dialect(ABC):
    """Dialect-specific SQL and operations the step engine needs.

    SQL returned here uses SQLAlchemy ``:name`` bind parameters; wrap it in
    ``sqlalchemy.text``. Identifiers are validated, never quoted.
    """

    name: ClassVar[str]
    #: Table holding the bot's keyset checkpoints in the target database.
    checkpoint_table: ClassVar[str] = "barq_checkpoints"
    #: File name suffix of backups taken by this dialect.
    backup_suffix: ClassVar[str] = ".bak"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def command_fields(self, url: URL) -> TargetFields:
        """What a command step's ``{target.*}`` is filled with on a target at ``url``: here
        the URL's parts, without a connection string."""
        return url_fields(url)

    def configure(self, engine: Engine) -> None:
        """Prepare a target's new engine (e.g. per-connection settings); nothing here."""
        return

    @contextmanager
    def begin(self, conn: Connection, timeout: float) -> Iterator[None]:
        """Bound the work of the transaction just begun on ``conn`` to ``timeout`` seconds
        while the block runs. This form runs :meth:`statement_timeout_sql`."""
        setting = self.statement_timeout_sql(timeout)
        if setting:
            conn.execute(text(setting))
        yield

    def checked_identifier(self, name: str) -> str:
        """Validate a runbook identifier (``Tasks`` or ``dbo.Tasks``) and return it as is:
        unquoted, so PostgreSQL folds it to lower case like the schema it names."""
        return validate_identifier(name)

    def split_script(self, sql: str) -> list[str]:
        """The statements of a sql step, to execute one by one: split on top-level
        semicolons here; SQL Server splits on ``GO`` lines."""
        return split_statements(sql)

    def is_transient(self, exc: BaseException) -> bool:
        """True when retrying the failed transaction may succeed."""
        return self.classify(exc) != "permanent"

    def checkpoint_select_sql(self) -> str:
        """Select one checkpoint row by ``:migration_id``, ``:step`` and ``:branch``."""
        return (
            "SELECT migration_id, step, branch, last_key, rows_done, batches, done, updated_at"
            f" FROM {self.checkpoint_table}"
            " WHERE migration_id = :migration_id AND step = :step AND branch = :branch"
        )

    def remaining_count_sql(self, table: str, key: str, where: str | None = None) -> str:
        """Count rows matching ``where`` whose key lies after ``:last_key`` (all when NULL)."""
        return (
            f"SELECT COUNT(*) FROM {self.checked_identifier(table)}"
            f" WHERE ({where_clause(where)}) AND {self._after_key(validate_column(key))}"
        )

    @abstractmethod
    def _after_key(self, key: str) -> str:
        """Predicate: ``key`` lies after ``:last_key``, or true when ``:last_key`` is NULL."""

    def checkpoint_table_ddl(self) -> list[str]:
        """Statements creating ``barq_checkpoints`` if it is missing (idempotent).

        This form serves PostgreSQL and SQLite; SQL Server overrides it."""
        return [
            f"CREATE TABLE IF NOT EXISTS {self.checkpoint_table} (\n"
            "    migration_id VARCHAR(64) NOT NULL,\n"
            "    step VARCHAR(100) NOT NULL,\n"
            "    branch VARCHAR(100) NOT NULL DEFAULT '',\n"
            "    last_key BIGINT NULL,\n"
            "    rows_done BIGINT NOT NULL DEFAULT 0,\n"
            "    batches BIGINT NOT NULL DEFAULT 0,\n"
            "    done BOOLEAN NOT NULL DEFAULT FALSE,\n"
            "    updated_at TIMESTAMP NOT NULL,\n"
            "    PRIMARY KEY (migration_id, step, branch)\n"
            ")"
        ]

    def checkpoint_upsert_sql(self) -> str:
        """Insert or update one checkpoint row, recording one more batch.

        Parameters: ``:migration_id, :step, :branch, :last_key, :rows, :done, :now``.
        ``rows_done`` grows by ``:rows``, ``batches`` by one; ``last_key``, ``done`` and
        ``updated_at`` are overwritten. Pass ``:now`` as a naive UTC datetime.

        This form, ``INSERT ... ON CONFLICT DO UPDATE``, is atomic under concurrency on
        PostgreSQL and SQLite (>= 3.24); SQL Server has no such statement and writes a
        checkpoint in two (:meth:`checkpoint_write_sql`).
        """
        return (
            f"INSERT INTO {self.checkpoint_table} AS c"
            " (migration_id, step, branch, last_key, rows_done, batches, done, updated_at)\n"
            "VALUES (:migration_id, :step, :branch, :last_key, :rows, 1, :done, :now)\n"
            "ON CONFLICT (migration_id, step, branch) DO UPDATE SET"
            " last_key = EXCLUDED.last_key, rows_done = c.rows_done + EXCLUDED.rows_done,"
            " batches = c.batches + 1, done = EXCLUDED.done, updated_at = EXCLUDED.updated_at"
        )

    def checkpoint_write_sql(self) -> tuple[str, str | None]:
        """The statements recording one more batch in a checkpoint row (the parameters of
        :meth:`checkpoint_upsert_sql`): the first, and the INSERT to run when the first
        wrote no row, or None when the first is an upsert on its own (this form)."""
        return self.checkpoint_upsert_sql(), None

    def write_checkpoint(self, conn: Connection, params: dict[str, object]) -> None:
        """Record one more batch in a checkpoint row, inserting it if it is missing, in the
        transaction open on ``conn`` (:meth:`checkpoint_write_sql`'s statements)."""
        first, insert = self.checkpoint_write_sql()
        written = conn.execute(text(first), params).rowcount
        if insert is None:
            return
        if written is None or written < 0:
            raise RuntimeError(
                f"{self.name}: the checkpoint update reported no row count (SET NOCOUNT ON?)"
            )
        if written == 0:
            conn.execute(text(insert), params)

    def next_key_sql(self, table: str, key: str, where: str | None = None) -> str:
        """Upper key of the next batch: MAX(key) of the first ``:batch_size`` matching rows
        after ``:last_key`` in key order (from the start when NULL); NULL when exhausted.

        ``where`` is a trusted SQL fragment from the runbook (empty/None means all rows).
        This LIMIT form serves PostgreSQL and SQLite; SQL Server overrides it with TOP.
        """
        key = validate_column(key)
        return (
            f"SELECT MAX(b.{key}) FROM (SELECT {key} FROM {self.checked_identifier(table)}"
            f" WHERE ({where_clause(where)}) AND {self._after_key(key)}"
            f" ORDER BY {key} LIMIT :batch_size) AS b"
        )

    @abstractmethod
    def journalled_update_sql(
        self, table: str, key: str, set_sql: str, where: str, journal: str, label: str
    ) -> tuple[str | None, str]:
        """The UPDATE of a journalled batch step, and what journals its keys, so that the
        rows updated are exactly the rows journalled, in the batch's own transaction.

        ``table``, ``key`` and ``journal`` are validated identifiers; ``set_sql`` and
        ``where`` trusted runbook fragments, each on lines of their own (``where`` is the
        batch's key range and the runbook's condition); ``label`` the runbook's table name,
        a validated identifier, written as ``table_name``. Each journalled key reads as
        (``:migration_id``, ``label``, key) in ``journal``'s :data:`JOURNAL_COLUMNS`: a row
        of its own, or (PostgreSQL, SQLite) one of a batch row's keys in ``<journal>_batches``.

        Returns (an INSERT to run just before the UPDATE, or None, and the UPDATE): one
        statement where the database can journal what an UPDATE changed (PostgreSQL's data-
        modifying CTE, SQL Server's ``OUTPUT ... INTO``); else two, whose row counts the
        runner compares, rolling the batch back unless they agree (as it compares the two
        counts a :attr:`journal_counts_in_change` statement returns, and the count a
        :attr:`journal_counts_in_journal` INSERT returns)."""

    #: True when the journalled UPDATE returns one row (rows updated, rows journalled)
    #: instead of a row count (PostgreSQL, whose journal holds one row per batch).
    journal_counts_in_change = False
    #: True when the journal's INSERT returns the number of keys it journalled instead of
    #: a row count (SQLite, whose journal holds one row per batch).
    journal_counts_in_journal = False

    def prepare_journal(self, conn: Connection) -> bool:
        """Create the bot's ``barq_journal`` if it is missing (idempotent) and say so; False
        leaves it to the portable table, one row per journalled key (target.py)."""
        return False

    def stale_statistics_sql(self, table: str) -> tuple[str, str] | None:
        """(a query answering whether the planner's statistics of ``table`` are stale, the
        statement refreshing them), or None where the database keeps them itself. A keyset
        step right after a bulk change (a rollback after its run) would otherwise be planned
        on statistics from before it."""
        return None

    def journalled_keys_sql(
        self, key: str, journal: str, label: str, lower: str, upper: str
    ) -> str:
        """Predicate: ``key`` is one the run ``:migration_id`` journalled for ``label`` in
        ``journal``, looked up between the SQL expressions ``lower`` and ``upper`` (the
        batch's key range, so that each batch reads only its part of the journal). The
        identifiers are validated; this form reads the portable one-row-per-key journal."""
        return (
            f"{key} IN (SELECT row_id FROM {journal} WHERE migration_id = :migration_id"
            f" AND table_name = '{label}' AND row_id >= {lower} AND row_id <= {upper})"
        )

    @abstractmethod
    def statement_timeout_sql(self, seconds: float) -> str | None:
        """Statement bounding how long work in the current transaction may wait, or None."""

    def classify(self, exc: BaseException) -> ErrorKind:
        """Map an exception to one of :data:`ERROR_KINDS` using the driver's error codes.

        SQLAlchemy wrappers are unwrapped (``.orig``); a connection SQLAlchemy invalidated,
        a pool timeout or a builtin ConnectionError count as "connection". A failed
        rollback is classified by the statement's error before it (:func:`first_error`).
        """
        orig, invalidated = unwrap_dbapi_error(first_error(exc))
        if invalidated or isinstance(orig, ConnectionError | sa_exc.TimeoutError):
            return "connection"
        return self._classify_driver_error(orig)

    @abstractmethod
    def _classify_driver_error(self, exc: BaseException) -> ErrorKind:
        """Classify an unwrapped driver exception."""

    @abstractmethod
    def blocking_sessions_sql(self) -> str | None:
        """Query listing blocked sessions (session_id, blocking_session_id, wait_type,
        wait_time in ms, last_wait_type, command, sql_text; and of the blocker: blocker_login,
        blocker_host, blocker_program, blocker_sql_text), or None when the database has no
        such view."""

    def session_id_sql(self) -> str | None:
        """Query giving the id of the connection's session as the blocking view names it
        (PostgreSQL's backend pid, SQL Server's @@SPID); None here: no session views."""
        return None

    def session_id(self, conn: Connection) -> int | None:
        """The session id of ``conn`` (:meth:`session_id_sql`), asked once per connection
        and remembered with it; None when the database has no session views."""
        sql = self.session_id_sql()
        if sql is None:
            return None
        known = conn.info.get("barq_session_id")
        if known is None:
            known = int(conn.execute(text(sql)).scalar_one())
            conn.info["barq_session_id"] = known
        return int(known)

    def statement_progress_sql(self) -> str | None:
        """Query giving the progress of long single statements (backup, restore, index
        builds) in this database: session_id, command, percent_complete and
        estimated_completion_time (ms); None when the database does not report it."""
        return None

    @abstractmethod
    def backup(
        self,
        engine: Engine,
        dest_dir: PurePath | str,
        *,
        label: str,
        tables: list[str] | None = None,
        timeout: float | None = None,
    ) -> BackupInfo:
        """Back up the target (or only ``tables``) into ``dest_dir`` and verify it, within
        ``timeout`` seconds where the database lets that be bounded (None: no limit)."""

    @abstractmethod
    def verify(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """Raise BackupVerificationError unless the backup is intact and readable."""

    @abstractmethod
    def restore(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """Verify the backup, then restore it over the target database."""


def where_clause(where: str | None) -> str:
    """Normalise a runbook WHERE fragment; empty means every row."""
    text = (where or "").strip()
    return text or "1 = 1"
