"""SQL Server (mssql+pyodbc) dialect.

SQL Server cannot run in the bot's test environment: the SQL here is generated as text
and checked with sqlglot's tsql parser; the driver chain (pyodbc, unixODBC, FreeTDS's ODBC
driver) is tested as far as connecting. Backups are written by the SQL Server service to
a path on the *SQL Server host's* disk, not the bot's.

pyodbc needs unixODBC's libodbc.so.2 to load, so nothing here imports it at module level:
SQLAlchemy loads it when a SQL Server target's engine is made, after :func:`check_client`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from sqlalchemy import URL, Connection, Engine, text

from bot.adapters.commands import TargetFields, url_fields
from bot.errors import BackupError, BackupVerificationError, ConfigError

from .dialect import (
    JOURNAL_COLUMNS,
    BackupInfo,
    Dialect,
    ErrorKind,
    backup_file_name,
    error_message,
    timeout_ms,
    validate_column,
    where_clause,
)
from .tsql import split_go

# What to do where the server cannot back up to a path (Azure SQL Database, a managed instance).
_NO_DISK_BACKUP = (
    "if this server cannot write backups to a disk path (Azure SQL Database, a managed"
    " instance without disk access), back up with the platform's own tool in a `command`"
    " step instead (e.g. sqlpackage /Action:Export, or the platform's point-in-time restore)"
)

__all__ = [
    "DIALECT",
    "MssqlDialect",
    "backup_size_sql",
    "backup_sql",
    "check_client",
    "command_fields",
    "odbc_attributes",
    "odbc_driver",
    "restore_sql",
    "user_mode_sql",
    "verify_sql",
]

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$#@-]{0,127}")
_NATIVE_CODE = re.compile(r"\((\d{2,6})\)")
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")

# Native error numbers: 1205 deadlock victim, 1222 lock request timeout; snapshot update
# conflicts and In-Memory OLTP validation failures; broken links (233, 64, 121, 100xx)
# and Azure SQL's transient errors.
_SERIALIZATION_CODES = {3960, 3961, 3966, 41301, 41302, 41305, 41325}
_CONNECTION_CODES = {64, 121, 233, 4060, 4221, 10053, 10054, 10060, 10061, 10928, 10929}
_CONNECTION_CODES |= {40143, 40197, 40501, 40613, 49918, 49919, 49920}
_CONNECTION_STATES = {"08S01", "08001", "08003", "08004", "08007", "HYT01"}

_ODBC_KEY = r"(?:^|;)\s*{}\s*="
_ODBC_DRIVER = re.compile(_ODBC_KEY.format("driver") + r"\s*(\{(?:[^}]|\}\})*\}|[^;]*)", re.I)
_ODBC_PAIR = re.compile(r"\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)\s*(?:;|$)")
_DEFAULT_PORT = 1433
# ODBC keywords of a URL kept in the connection string command steps get, in SqlClient's words.
_ADO_OPTIONS = {
    "encrypt": "Encrypt",
    "trustservercertificate": "TrustServerCertificate",
    "trusted_connection": "Integrated Security",
}
_ADO_BOOLEANS = {"yes": "True", "no": "False", "true": "True", "false": "False"}
_INSTALL_DRIVER = (
    "Microsoft's ODBC Driver 18 for SQL Server (package msodbcsql18, from Microsoft's"
    " repository), or FreeTDS: apt-get install tdsodbc"
)


def check_client(target: str, url: URL) -> None:
    """Raise ConfigError saying what to install unless this machine can connect to ``url``:
    pyodbc loads (it needs unixODBC's libodbc.so.2) and unixODBC knows the ODBC driver the
    URL names. Imports pyodbc, so call it only for a SQL Server target."""
    if url.get_driver_name() != "pyodbc":
        return
    try:
        import pyodbc
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "pyodbc":
            raise ConfigError(
                f"SQL Server target {target} needs the pyodbc package, one of the bot's"
                " dependencies: reinstall the bot (`make install`, or `uv sync --frozen`)"
            ) from exc
        raise ConfigError(
            f"SQL Server target {target} needs unixODBC (pyodbc cannot load: {exc}):"
            f" apt-get install unixodbc (and {_INSTALL_DRIVER})"
        ) from exc
    driver = odbc_driver(url)
    if driver is None:
        return
    installed = [str(name) for name in pyodbc.drivers()]
    if driver.casefold() in {name.casefold() for name in installed}:
        return
    if os.path.isabs(driver) and os.path.isfile(driver):  # a driver library named by path
        return
    named = (
        f"names ODBC driver {driver!r}, which unixODBC does not know"
        if driver
        else "names no ODBC driver (add driver=... to it)"
    )
    raise ConfigError(
        f"SQL Server target {target}: its URL {named}; installed drivers:"
        f" {', '.join(installed) or 'none'} (odbcinst -q -d). Install {_INSTALL_DRIVER}"
        " (then driver=FreeTDS), or name an installed driver in the URL"
    )


def odbc_driver(url: URL) -> str | None:
    """The ODBC driver ``url`` connects with, as SQLAlchemy hands it to pyodbc: ``driver=``,
    or ``DRIVER=`` in an ``odbc_connect`` string; None for a DSN (odbc.ini names its
    driver); "" when the URL names none."""
    raw = url.query.get("odbc_connect")
    if raw is not None:
        text_ = raw if isinstance(raw, str) else raw[0]
        if (found := _ODBC_DRIVER.search(text_)) is not None:
            value = found.group(1).strip()
            if value.startswith("{") and value.endswith("}"):
                value = value[1:-1].replace("}}", "}")
            return value
        return None if re.search(_ODBC_KEY.format("dsn"), text_, re.I) else ""
    driver = url.query.get("driver")
    if driver:
        return driver if isinstance(driver, str) else driver[0]
    dsn = "dsn" in url.query or (url.host is not None and url.database is None)
    return None if dsn else ""


def odbc_attributes(text_: str) -> dict[str, str]:
    """The keywords (lower case) and values of an ODBC connection string such as
    ``DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:db,1433;UID=sa;PWD={a;b}``, each
    ``{braced}`` value unbraced."""
    found: dict[str, str] = {}
    for match in _ODBC_PAIR.finditer(text_):
        value = match.group(2).strip()
        if value.startswith("{") and value.endswith("}"):
            value = value[1:-1].replace("}}", "}")
        found[match.group(1).strip().lower()] = value
    return found


def _server(value: str) -> tuple[str | None, int | None]:
    """Host and port of an ODBC ``SERVER`` value: ``tcp:db,1433``, ``db\\SQLEXPRESS``, ``db``."""
    host = re.sub(r"^(?:tcp|np|lpc|admin):", "", value.strip(), flags=re.I)
    port = None
    if "," in host:
        host, _, number = host.rpartition(",")
        port = int(number) if number.strip().isdigit() else None
    return host.strip() or None, port


def command_fields(url: URL) -> TargetFields:
    """A SQL Server target's ``{target.*}``: from the URL's parts or its ``odbc_connect``
    string (SERVER, PORT, DATABASE, UID, PWD), and the connection string in SqlClient's
    form (``Server=host,port;Database=…;User ID=…;Password=…``, with the URL's Encrypt,
    TrustServerCertificate and Trusted_Connection). A port only the default gives is left
    out of ``Server=`` (a named instance ``host\\name`` finds its own)."""
    raw = url.query.get("odbc_connect")
    if raw is not None:
        attrs = odbc_attributes(raw if isinstance(raw, str) else raw[0])
        host, port = _server(attrs.get("server") or attrs.get("address") or "")
        if attrs.get("port", "").isdigit():
            port = int(attrs["port"])
        fields = TargetFields(
            host=host,
            port=port or _DEFAULT_PORT,
            database=attrs.get("database") or None,
            user=attrs.get("uid") or None,
            password=attrs.get("pwd"),
        )
        options = attrs
    else:
        fields, port = url_fields(url), url.port
        options = {k.lower(): v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
    server = None if fields.host is None else fields.host + (f",{port}" if port else "")
    pairs: list[tuple[str, str | None]] = [
        (key, value) for key, value in (("Server", server), ("Database", fields.database)) if value
    ]
    if fields.user:
        pairs += [("User ID", fields.user), ("Password", None)]
    for odbc, ado in _ADO_OPTIONS.items():
        if odbc in options:
            pairs.append((ado, _ADO_BOOLEANS.get(options[odbc].lower(), options[odbc])))
    return replace(fields, connection=tuple(pairs))


def _database(db: str) -> str:
    if not isinstance(db, str) or not _DB_NAME.fullmatch(db):
        raise ValueError(f"invalid SQL Server database name {db!r}")
    return f"[{db}]"


def _disk(path: str | PurePath) -> str:
    value = str(path)
    if not value or any(ch in value for ch in "\x00\r\n"):
        raise ValueError(f"invalid backup path {value!r}")
    return "N'" + value.replace("'", "''") + "'"


def backup_sql(db: str, path: str | PurePath) -> str:
    """Full backup with page checksums; COPY_ONLY keeps the DBA's differential chain intact."""
    return f"BACKUP DATABASE {_database(db)} TO DISK = {_disk(path)} WITH COPY_ONLY, CHECKSUM, INIT"


def verify_sql(path: str | PurePath) -> str:
    """Check a backup file is complete and its checksums are valid."""
    return f"RESTORE VERIFYONLY FROM DISK = {_disk(path)} WITH CHECKSUM"


def restore_sql(db: str, path: str | PurePath) -> str:
    """Restore a backup over ``db`` (run from master, with ``db`` in SINGLE_USER)."""
    return f"RESTORE DATABASE {_database(db)} FROM DISK = {_disk(path)} WITH REPLACE"


def user_mode_sql(db: str, mode: Literal["SINGLE_USER", "MULTI_USER"]) -> str:
    """Switch ``db`` to SINGLE_USER (rolling back other sessions) or back to MULTI_USER."""
    if mode == "SINGLE_USER":
        return f"ALTER DATABASE {_database(db)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE"
    if mode == "MULTI_USER":
        return f"ALTER DATABASE {_database(db)} SET MULTI_USER"
    raise ValueError(f"invalid user access mode {mode!r}")


def backup_size_sql() -> str:
    """Size in bytes of the latest backup written to ``:path`` (from msdb's history)."""
    return (
        "SELECT TOP (1) bs.backup_size FROM msdb.dbo.backupset AS bs"
        " JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id"
        " WHERE mf.physical_device_name = :path ORDER BY bs.backup_finish_date DESC"
    )


def _server_path(dest_dir: PurePath | str, name: str) -> str:
    """Join on the server's terms: keep a PurePath's flavour; read ``D:\\...`` as Windows."""
    if isinstance(dest_dir, PurePath):
        return str(dest_dir / name)
    windows = "\\" in dest_dir or re.match(r"[A-Za-z]:", dest_dir) is not None
    return str((PureWindowsPath if windows else PurePosixPath)(dest_dir) / name)


def _run(conn: Connection, sql: str) -> None:
    """Execute on the raw pyodbc cursor and drain every result set.

    BACKUP/RESTORE report progress as informational messages; pyodbc only sees the
    statement through to the end (and raises its errors) if all results are consumed.
    """
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        while cursor.nextset():
            pass
    finally:
        cursor.close()


@contextmanager
def _query_timeout(conn: Connection, seconds: float | None) -> Iterator[None]:
    """Bound each statement on ``conn`` to ``seconds`` (pyodbc counts whole seconds, 0 for
    none; a query past it fails with HYT00); the connection's own value is put back after."""
    if seconds is None:
        yield
        return
    raw: Any = conn.connection.driver_connection
    before = raw.timeout
    raw.timeout = max(1, math.ceil(timeout_ms(seconds) / 1000))
    try:
        yield
    finally:
        raw.timeout = before


def _autocommit(engine: Engine) -> Connection:
    """BACKUP and RESTORE cannot run inside a user transaction."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class MssqlDialect(Dialect):
    """SQL Server via pyodbc."""

    name = "mssql"
    checkpoint_table = "dbo.barq_checkpoints"

    def command_fields(self, url: URL) -> TargetFields:
        """See :func:`command_fields`."""
        return command_fields(url)

    def checkpoint_table_ddl(self) -> list[str]:
        """Create ``dbo.barq_checkpoints`` unless it exists (NVARCHAR keys match pyodbc's
        string parameters, so lookups seek instead of converting every row)."""
        return [
            "IF OBJECT_ID(N'dbo.barq_checkpoints', N'U') IS NULL\n"
            "CREATE TABLE dbo.barq_checkpoints (\n"
            "    migration_id NVARCHAR(64) NOT NULL,\n"
            "    step NVARCHAR(100) NOT NULL,\n"
            "    branch NVARCHAR(100) NOT NULL CONSTRAINT DF_barq_checkpoints_branch DEFAULT N'',\n"
            "    last_key BIGINT NULL,\n"
            "    rows_done BIGINT NOT NULL CONSTRAINT DF_barq_checkpoints_rows DEFAULT 0,\n"
            "    batches BIGINT NOT NULL CONSTRAINT DF_barq_checkpoints_batches DEFAULT 0,\n"
            "    done BIT NOT NULL CONSTRAINT DF_barq_checkpoints_done DEFAULT 0,\n"
            "    updated_at DATETIME2(3) NOT NULL,\n"
            "    CONSTRAINT PK_barq_checkpoints PRIMARY KEY (migration_id, step, branch)\n"
            ")"
        ]

    def checkpoint_upsert_sql(self) -> str:
        """SQL Server has no single-statement upsert the bot uses (no MERGE: it has a long
        record of concurrency caveats, and some T-SQL engines lack it)."""
        raise NotImplementedError("SQL Server writes a checkpoint in two statements")

    def checkpoint_write_sql(self) -> tuple[str, str | None]:
        """``UPDATE ... WITH (UPDLOCK, HOLDLOCK)``, then the INSERT when it updated no row.

        HOLDLOCK keeps the key range locked when the row is missing until the transaction
        ends, and UPDLOCK makes a second session's UPDATE of the same key wait there, so two
        sessions cannot both find no row and both insert: the second updates the row the
        first inserted. Keys are bound uncast: a CAST would silently truncate an over-long id
        instead of failing the insert."""
        update = (
            "UPDATE dbo.barq_checkpoints WITH (UPDLOCK, HOLDLOCK)\n"
            "SET last_key = :last_key, rows_done = rows_done + :rows, batches = batches + 1,"
            " done = :done, updated_at = :now\n"
            "WHERE migration_id = :migration_id AND step = :step AND branch = :branch"
        )
        insert = (
            "INSERT INTO dbo.barq_checkpoints"
            " (migration_id, step, branch, last_key, rows_done, batches, done, updated_at)\n"
            "VALUES (:migration_id, :step, :branch, :last_key, :rows, 1, :done, :now)"
        )
        return update, insert

    def split_script(self, sql: str) -> list[str]:
        """Split on sqlcmd's ``GO`` lines: a batch may hold several statements."""
        return split_go(sql)

    def _after_key(self, key: str) -> str:
        return f"(CAST(:last_key AS BIGINT) IS NULL OR {key} > CAST(:last_key AS BIGINT))"

    def next_key_sql(self, table: str, key: str, where: str | None = None) -> str:
        """TOP-based boundary query; OPTION (RECOMPILE) lets the optimizer drop the
        ``:last_key IS NULL`` branch and seek on the key index."""
        key = validate_column(key)
        return (
            f"SELECT MAX(b.{key}) FROM (SELECT TOP (:batch_size) {key}"
            f" FROM {self.checked_identifier(table)}"
            f" WHERE ({where_clause(where)}) AND {self._after_key(key)}"
            f" ORDER BY {key}) AS b OPTION (RECOMPILE)"
        )

    def journalled_update_sql(
        self, table: str, key: str, set_sql: str, where: str, journal: str, label: str
    ) -> tuple[str | None, str]:
        """One statement: the UPDATE's ``OUTPUT ... INTO`` journals the keys it changed (the
        journal table may have no trigger, foreign key or check constraint: the bot's
        ``barq_journal`` has none)."""
        return None, (
            f"UPDATE {table} SET\n{set_sql}\n"
            f"OUTPUT :migration_id, '{label}', INSERTED.{key}\n"
            f"INTO {journal} ({JOURNAL_COLUMNS})\nWHERE {where}"
        )

    def statement_timeout_sql(self, seconds: float) -> str | None:
        """``SET LOCK_TIMEOUT``: lock waits beyond it fail with error 1222.

        It is session-scoped (it outlives the transaction on a pooled connection). The
        query timeout itself is pyodbc's ``Connection.timeout`` (error HYT00), set on the
        DBAPI connection by :meth:`begin`, not through SQL.
        """
        return f"SET LOCK_TIMEOUT {timeout_ms(seconds)}"

    @contextmanager
    def begin(self, conn: Connection, timeout: float) -> Iterator[None]:
        """``SET LOCK_TIMEOUT``, and pyodbc's query timeout for the block's statements."""
        with super().begin(conn, timeout), _query_timeout(conn, timeout):
            yield

    def _classify_driver_error(self, exc: BaseException) -> ErrorKind:
        args = [str(a) for a in getattr(exc, "args", ())]
        state = args[0] if args and _SQLSTATE.fullmatch(args[0]) else ""
        message = " ".join(args) or str(exc)
        codes = {int(c) for c in _NATIVE_CODE.findall(message)}
        lowered = message.lower()
        if 1205 in codes or "deadlock victim" in lowered:
            return "deadlock"
        if 1222 in codes or "lock request time out" in lowered:
            return "lock_timeout"
        if codes & _SERIALIZATION_CODES or state == "40001":
            return "serialization"
        if codes & _CONNECTION_CODES or state in _CONNECTION_STATES:
            return "connection"
        link_lost = "communication link failure" in lowered or "tcp provider" in lowered
        return "connection" if link_lost else "permanent"

    def blocking_sessions_sql(self) -> str | None:
        """Requests of this database blocked by another session, with the SQL text of both
        sides (``sys.dm_exec_sql_text``: the blocker's running request, else the last batch
        of its connection, as an idle session holding a transaction has no request)."""
        return (
            "SELECT r.session_id, r.blocking_session_id, r.wait_type, r.wait_time,"
            " r.last_wait_type, r.command, wt.text AS sql_text,"
            " s.login_name AS blocker_login, s.host_name AS blocker_host,"
            " s.program_name AS blocker_program, bt.text AS blocker_sql_text"
            " FROM sys.dm_exec_requests AS r"
            " LEFT JOIN sys.dm_exec_sessions AS s ON s.session_id = r.blocking_session_id"
            " LEFT JOIN sys.dm_exec_requests AS br ON br.session_id = r.blocking_session_id"
            " LEFT JOIN sys.dm_exec_connections AS c ON c.session_id = r.blocking_session_id"
            " OUTER APPLY sys.dm_exec_sql_text(r.sql_handle) AS wt"
            " OUTER APPLY sys.dm_exec_sql_text(COALESCE(br.sql_handle,"
            " c.most_recent_sql_handle)) AS bt"
            " WHERE r.blocking_session_id > 0 AND r.database_id = DB_ID()"
        )

    def session_id_sql(self) -> str | None:
        """``@@SPID``: the session_id of ``sys.dm_exec_requests``."""
        return "SELECT @@SPID"

    def statement_progress_sql(self) -> str | None:
        """Backups, restores, DBCC checks and index builds of this database that report
        ``percent_complete`` (others report 0), with the server's estimate of the time left."""
        return (
            "SELECT r.session_id, r.command, r.percent_complete,"
            " r.estimated_completion_time, r.start_time"
            " FROM sys.dm_exec_requests AS r"
            " WHERE r.percent_complete > 0"
            " AND (r.database_id = DB_ID() OR r.command LIKE 'BACKUP%'"
            " OR r.command LIKE 'RESTORE%')"
        )

    def backup(
        self,
        engine: Engine,
        dest_dir: PurePath | str,
        *,
        label: str,
        tables: list[str] | None = None,
        timeout: float | None = None,
    ) -> BackupInfo:
        """BACKUP DATABASE to ``dest_dir`` on the SQL Server host, then RESTORE VERIFYONLY,
        each bounded by pyodbc's query timeout.

        Pass a ``PureWindowsPath`` for a Windows server. Only whole-database backups exist
        here; ``tables`` raises ValueError.
        """
        if tables:
            raise ValueError(f"SQL Server backups cover the whole database, not {tables!r}")
        path = _server_path(dest_dir, backup_file_name(label, self.backup_suffix))
        with _autocommit(engine) as conn, _query_timeout(conn, timeout):
            db = str(conn.exec_driver_sql("SELECT DB_NAME()").scalar_one())
            try:
                _run(conn, backup_sql(db, path))
            except Exception as exc:
                raise BackupError(
                    f"BACKUP DATABASE [{db}] to {path!r} failed: {error_message(exc)}; "
                    f"{_NO_DISK_BACKUP}"
                ) from exc
            _verify(conn, path)
            size = _backup_size(conn, path)
        return BackupInfo(path, self.name, label, size, None, True, None)

    def verify(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """RESTORE VERIFYONLY ... WITH CHECKSUM on the server."""
        with _autocommit(engine) as conn, _query_timeout(conn, timeout):
            _verify(conn, info.location)

    def restore(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """Verify, then restore from master with the database in SINGLE_USER meanwhile.

        Every other session on the database is rolled back and disconnected; the engine's
        pool is disposed afterwards.
        """
        try:
            with _autocommit(engine) as conn, _query_timeout(conn, timeout):
                _verify(conn, info.location)
                db = str(conn.exec_driver_sql("SELECT DB_NAME()").scalar_one())
                try:
                    _run(conn, "USE master")
                    # One batch, so no other session can grab the single connection in between.
                    single = user_mode_sql(db, "SINGLE_USER")
                    _run(conn, f"{single};\n{restore_sql(db, info.location)}")
                except Exception as exc:
                    raise BackupError(
                        f"RESTORE DATABASE [{db}] failed: {error_message(exc)}"
                    ) from exc
                finally:
                    _set_multi_user(conn, db)
        finally:
            engine.dispose()


def _verify(conn: Connection, path: str) -> None:
    try:
        _run(conn, verify_sql(path))
    except Exception as exc:
        raise BackupVerificationError(f"backup {path!r} failed verification: {exc}") from exc


def _set_multi_user(conn: Connection, db: str) -> None:
    """Reopen ``db`` to everyone, even after a failed restore; then retire the connection."""
    try:
        _run(conn, user_mode_sql(db, "MULTI_USER"))
    except Exception as exc:
        raise BackupError(
            f"database [{db}] may be left in SINGLE_USER mode: {error_message(exc)}"
        ) from exc
    finally:
        conn.invalidate()  # it sits in master now; never hand it out again


def _backup_size(conn: Connection, path: str) -> int | None:
    """Best effort: reading msdb needs extra permissions the bot may lack."""
    try:
        value: Any = conn.execute(text(backup_size_sql()), {"path": path}).scalar()
    except Exception:
        return None
    return int(value) if value is not None else None


DIALECT = MssqlDialect()
