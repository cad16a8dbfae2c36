"""SQLite dialect; backups use the sqlite3 online backup API.

A target engine enforces foreign keys (SQLite does only when asked, per connection); a
transaction's statements are interrupted by a progress handler past their deadline.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from sqlalchemy import URL, Connection, Engine, event, text

from bot.adapters.commands import TargetFields
from bot.errors import BackupError, BackupVerificationError

from .dialect import (
    BackupInfo,
    Dialect,
    ErrorKind,
    backup_file_name,
    file_sha256,
    validate_identifier,
)

__all__ = ["DIALECT", "SqliteDialect"]

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_BUSY_SNAPSHOT = 5, 6, 517
_BACKUP_SCHEMA = "barq_backup"


def _raw(conn: Any) -> sqlite3.Connection:
    raw: sqlite3.Connection = conn.connection.driver_connection
    return raw


def _open_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)


def _bare(table: str) -> str:
    """SQLite knows no schemas besides attached databases: ``main.t`` is ``t``."""
    return table.rsplit(".", 1)[-1]


_JOURNAL_BATCHES = "barq_journal_batches"


class SqliteDialect(Dialect):
    """SQLite via the standard library's sqlite3 (pysqlite)."""

    name = "sqlite"

    def command_fields(self, url: URL) -> TargetFields:
        """Only ``{target.database}`` (the file); the rest needs a server."""
        lacking = "SQLite, which has no server (no host, port, user, password or connection string)"
        return TargetFields(database=url.database, lacking=lacking)

    backup_suffix = ".sqlite3"

    def _after_key(self, key: str) -> str:
        # SQLite cannot drop an "IS NULL OR" branch at plan time; this form stays an index
        # range scan. For integers, k >= last_key + 1 is k > last_key.
        return f"{key} >= COALESCE(:last_key + 1, -9223372036854775808)"

    def configure(self, engine: Engine) -> None:
        """Turn foreign keys on for every connection the engine opens."""
        if not event.contains(engine, "connect", _foreign_keys_on):
            event.listen(engine, "connect", _foreign_keys_on)

    #: The journal's keys live in ``barq_journal_batches``, one row per batch (its keys as
    #: a JSON array: a fraction of a row per key's B-tree upkeep); ``barq_journal`` is a
    #: view with one row per key, for reading.
    journal_counts_in_journal = True

    def prepare_journal(self, conn: Connection) -> bool:
        """``barq_journal_batches``, its index and the ``barq_journal`` view; a
        ``barq_journal`` table of an earlier version (one row per key) is folded into
        batches first, in the same transaction, so no journalled key is lost."""
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {_JOURNAL_BATCHES} (\n"
                "    migration_id VARCHAR(64) NOT NULL,\n"
                "    table_name VARCHAR(100) NOT NULL,\n"
                "    first_id BIGINT NOT NULL,\n"
                "    last_id BIGINT NOT NULL,\n"
                "    row_ids TEXT NOT NULL\n"
                ")"
            )
        )
        conn.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {_JOURNAL_BATCHES}_run"
                f" ON {_JOURNAL_BATCHES} (migration_id, table_name, first_id)"
            )
        )
        kind = "SELECT type FROM sqlite_master WHERE name = 'barq_journal'"
        found = conn.execute(text(kind)).scalar()
        if found == "table":
            conn.execute(
                text(
                    f"INSERT INTO {_JOURNAL_BATCHES}"
                    " (migration_id, table_name, first_id, last_id, row_ids)"
                    " SELECT migration_id, table_name, MIN(row_id), MAX(row_id),"
                    " json_group_array(row_id) FROM (SELECT * FROM barq_journal"
                    " ORDER BY migration_id, table_name, row_id)"
                    " GROUP BY migration_id, table_name, row_id / 50000"
                )
            )
            conn.execute(text("DROP TABLE barq_journal"))
        if found != "view":
            conn.execute(
                text(
                    "CREATE VIEW barq_journal AS SELECT b.migration_id, b.table_name,"
                    f" j.value AS row_id FROM {_JOURNAL_BATCHES} AS b, json_each(b.row_ids) AS j"
                )
            )
        return True

    def journalled_update_sql(
        self, table: str, key: str, set_sql: str, where: str, journal: str, label: str
    ) -> tuple[str | None, str]:
        """The journal's INSERT of the batch's keys (one row, returning how many keys it
        holds), then the UPDATE of the same rows. SQLite has one writer at a time, and a
        batch writes its checkpoint row first: from then on no other connection can commit,
        so both statements see the same rows (and the runner checks that their counts
        agree)."""
        journalled = (
            f"INSERT INTO {journal}_batches"
            " (migration_id, table_name, first_id, last_id, row_ids)\n"
            f"SELECT :migration_id, '{label}', MIN({key}), MAX({key}), json_group_array({key})\n"
            f"FROM {table} WHERE {where}\nHAVING COUNT(*) > 0\n"
            "RETURNING json_array_length(row_ids)"
        )
        return journalled, f"UPDATE {table} SET\n{set_sql}\nWHERE {where}"

    def journalled_keys_sql(
        self, key: str, journal: str, label: str, lower: str, upper: str
    ) -> str:
        """Only the journal rows whose key range meets the batch's are unpacked."""
        return (
            f"{key} IN (SELECT j.value FROM {journal}_batches AS b, json_each(b.row_ids) AS j"
            f" WHERE b.migration_id = :migration_id AND b.table_name = '{label}'"
            f" AND b.first_id <= {upper} AND b.last_id >= {lower}"
            f" AND j.value >= {lower} AND j.value <= {upper})"
        )

    def statement_timeout_sql(self, seconds: float) -> str | None:
        """None: SQLite has no such setting; :meth:`begin` sets a progress handler."""
        return None

    @contextmanager
    def begin(self, conn: Connection, timeout: float) -> Iterator[None]:
        """Interrupt a statement that runs past ``timeout`` seconds from now."""
        raw = _raw(conn)
        deadline = time.monotonic() + timeout
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            yield
        finally:
            raw.set_progress_handler(None, 0)

    def _classify_driver_error(self, exc: BaseException) -> ErrorKind:
        code = getattr(exc, "sqlite_errorcode", None)
        message = str(exc).lower()
        if code == _SQLITE_BUSY_SNAPSHOT:
            return "serialization"  # WAL snapshot went stale: retry the whole transaction
        if isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return "lock_timeout"
        if "is locked" in message or "is busy" in message:  # "database [table] is locked"
            return "lock_timeout"
        return "permanent"

    def blocking_sessions_sql(self) -> str | None:
        """None: SQLite has no session views."""
        return None

    def backup(
        self,
        engine: Engine,
        dest_dir: PurePath | str,
        *,
        label: str,
        tables: list[str] | None = None,
        timeout: float | None = None,
    ) -> BackupInfo:
        """Copy the whole database to a file with the online backup API, then verify it.

        With ``tables``, restore() later puts back only those tables. ``timeout`` is not
        applied: the copy is a local file's.
        """
        names = tuple(validate_identifier(t) for t in tables) if tables else None
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / backup_file_name(label, self.backup_suffix)
        with engine.connect() as conn, closing(sqlite3.connect(path)) as copy:
            _raw(conn).backup(copy)
        info = BackupInfo(
            str(path), self.name, label, path.stat().st_size, file_sha256(path), False, names
        )
        self.verify(engine, info)
        return replace(info, verified=True)

    def verify(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """Check size and sha256, run ``PRAGMA integrity_check`` on the copy and make sure
        every recorded table is in it."""
        path = Path(info.location)
        if not path.is_file():
            raise BackupVerificationError(f"backup file {info.location!r} is missing")
        size = path.stat().st_size
        if info.size_bytes is not None and size != info.size_bytes:
            raise BackupVerificationError(
                f"backup {info.location!r} is {size} bytes, expected {info.size_bytes}"
            )
        if info.sha256 is not None and file_sha256(path) != info.sha256:
            raise BackupVerificationError(f"backup {info.location!r} fails its sha256 check")
        try:
            with closing(_open_read_only(path)) as copy:
                result = [row[0] for row in copy.execute("PRAGMA integrity_check")]
                present = {
                    str(row[0]).lower()
                    for row in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
        except sqlite3.DatabaseError as exc:
            raise BackupVerificationError(f"backup {info.location!r} is unreadable: {exc}") from exc
        if result != ["ok"]:
            raise BackupVerificationError(f"backup {info.location!r} is corrupt: {result[:5]}")
        missing = [t for t in info.tables or () if _bare(t).lower() not in present]
        if missing:
            raise BackupVerificationError(f"backup {info.location!r} lacks tables {missing}")

    def restore(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """Verify, then copy the backup back into the target (only its tables, if any);
        ``timeout`` is not applied, as in :meth:`backup`."""
        self.verify(engine, info)
        with engine.connect() as conn:
            raw = _raw(conn)
            if raw.in_transaction:
                raw.rollback()
            if info.tables:
                _restore_tables(raw, Path(info.location), info.tables)
            else:
                with closing(sqlite3.connect(info.location)) as copy:
                    copy.backup(raw)


def _foreign_keys_on(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def _restore_tables(raw: sqlite3.Connection, path: Path, tables: tuple[str, ...]) -> None:
    """Replace the rows of ``tables`` with the backup's in one transaction.

    Foreign keys are switched off meanwhile (so ON DELETE actions do not touch other
    tables) and checked before committing; the tables must still exist in the target.
    """
    foreign_keys = raw.execute("PRAGMA foreign_keys").fetchone()[0]
    raw.execute(f"ATTACH DATABASE ? AS {_BACKUP_SCHEMA}", (str(path),))
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        raw.execute("BEGIN IMMEDIATE")
        try:
            for table in tables:
                raw.execute(f"DELETE FROM main.{_bare(table)}")
                raw.execute(
                    f"INSERT INTO main.{_bare(table)} SELECT * FROM {_BACKUP_SCHEMA}.{_bare(table)}"
                )
            problems = raw.execute("PRAGMA main.foreign_key_check").fetchall()
            if foreign_keys and problems:
                raise BackupError(f"restoring {list(tables)} breaks foreign keys: {problems[:5]}")
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
    finally:
        raw.execute(f"PRAGMA foreign_keys = {int(foreign_keys)}")
        raw.execute(f"DETACH DATABASE {_BACKUP_SCHEMA}")


DIALECT = SqliteDialect()
