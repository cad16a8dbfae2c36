"""PostgreSQL (postgresql+psycopg) dialect; backups go through pg_dump / pg_restore.

The tools run like command steps: in a session of their own, with the minimal environment
(PATH, HOME, LANG) plus libpq's variables for the target, and stopped at their timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path, PurePath
from urllib.parse import quote

import psycopg
from sqlalchemy import URL, Connection, Engine, text

from bot.adapters.commands import (
    TargetFields,
    child_environment,
    redactor,
    signal_group,
    url_fields,
)
from bot.errors import BackupError, BackupVerificationError

from .dialect import (
    BackupInfo,
    Dialect,
    ErrorKind,
    backup_file_name,
    file_sha256,
    timeout_ms,
    validate_identifier,
)

__all__ = ["DIALECT", "PostgresqlDialect", "connection_args", "redact"]

# URL query keys forwarded to pg_dump/pg_restore through libpq's environment variables.
_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
}
# libpq's sslmode values as Npgsql's "SSL Mode" spells them.
_NPGSQL_SSL_MODES = {
    "disable": "Disable",
    "allow": "Allow",
    "prefer": "Prefer",
    "require": "Require",
    "verify-ca": "VerifyCA",
    "verify-full": "VerifyFull",
}
_CONNECTION_STATES = frozenset({"53300", "57P01", "57P02", "57P03"})
# Error context PostgreSQL adds while a statement waits for a row lock held by another
# transaction ("while updating tuple (0,1) in relation ...").
_ROW_LOCK_WAIT = re.compile(r"while [a-z ]+(tuple|updated version)")


def _query_value(value: str | tuple[str, ...]) -> str:
    return value if isinstance(value, str) else value[-1]


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def connection_args(url: URL) -> tuple[list[str], dict[str, str]]:
    """Command-line arguments and extra environment for libpq tools connecting to ``url``.

    The password is only ever placed in the ``PGPASSWORD`` environment variable, never in
    the arguments (which other local users can read from the process table).
    """
    args = ["--no-password"]
    host = url.host or (_query_value(url.query["host"]) if "host" in url.query else None)
    if host:
        args.append(f"--host={host}")
    if url.port:
        args.append(f"--port={url.port}")
    if url.username:
        args.append(f"--username={url.username}")
    args.append(f"--dbname=dbname={_conninfo_value(url.database or '')}")
    env = {var: _query_value(url.query[key]) for key, var in _QUERY_ENV.items() if key in url.query}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def redact(text: str, password: str | None) -> str:
    """Hide ``password`` (plain or URL-encoded) in ``text``, as command output is redacted."""
    forms = [password, quote(password, safe=""), quote(password)] if password else []
    return redactor(forms)(text)


def _run_tool(tool: str, args: list[str], url: URL | None, *, timeout: float | None) -> None:
    """Run a libpq tool (argument list, never a shell) for at most ``timeout`` seconds (None:
    no limit); raise BackupError when it fails or runs out of time."""
    binary = shutil.which(tool)
    if binary is None:
        raise BackupError(f"{tool} not found on PATH")
    extra_args, extra_env = connection_args(url) if url is not None else ([], {})
    with subprocess.Popen(
        [binary, *args, *extra_args],
        env=child_environment(extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise BackupError(f"{tool} did not finish within {timeout:g} s; stopped it") from None
        except BaseException:
            signal_group(proc.pid, signal.SIGKILL)
            raise
    if proc.returncode != 0:
        detail = redact(stderr.strip() or stdout.strip(), extra_env.get("PGPASSWORD"))
        raise BackupError(f"{tool} exited with status {proc.returncode}: {detail}")


_JOURNAL_BATCHES = "barq_journal_batches"


class PostgresqlDialect(Dialect):
    """PostgreSQL via psycopg 3."""

    name = "postgresql"
    backup_suffix = ".dump"

    def command_fields(self, url: URL) -> TargetFields:
        """The URL's parts, and the connection string in Npgsql's form (``Host=…;Port=…;
        Database=…;Username=…;Password=…``, with the URL's ``sslmode`` as ``SSL Mode``)."""
        fields = url_fields(url)
        pairs: list[tuple[str, str | None]] = [
            (key, value)
            for key, value in (
                ("Host", fields.host),
                ("Port", str(fields.port)),
                ("Database", fields.database),
                ("Username", fields.user),
            )
            if value
        ]
        pairs.append(("Password", None))
        if "sslmode" in url.query:
            mode = _query_value(url.query["sslmode"])
            pairs.append(("SSL Mode", _NPGSQL_SSL_MODES.get(mode, mode)))
        return replace(fields, connection=tuple(pairs))

    def _after_key(self, key: str) -> str:
        # psycopg binds server-side: a bare NULL parameter has no type, hence the casts.
        return f"(CAST(:last_key AS BIGINT) IS NULL OR {key} > CAST(:last_key AS BIGINT))"

    #: The journal's keys live in ``<journal>_batches``, one row per batch (its keys as an
    #: array, stored uncompressed: compressing them cost more than the UPDATE's
    #: own index upkeep); ``<journal>`` is a view with one row per key, for reading.
    journal_counts_in_change = True

    def prepare_journal(self, conn: Connection) -> bool:
        """``barq_journal_batches``, its index and the ``barq_journal`` view, each created
        only if missing (so no lock is taken once they exist); a ``barq_journal`` table of
        an earlier version (one row per key) is folded into batches first, in the same
        transaction, so no journalled key is lost."""
        conn.execute(
            text(
                "DO $$\nBEGIN\n"
                f"  IF to_regclass('{_JOURNAL_BATCHES}') IS NULL THEN\n"
                f"    CREATE TABLE {_JOURNAL_BATCHES} (\n"
                "      migration_id VARCHAR(64) NOT NULL,\n"
                "      table_name VARCHAR(100) NOT NULL,\n"
                "      first_id BIGINT NOT NULL,\n"
                "      last_id BIGINT NOT NULL,\n"
                "      row_ids BIGINT[] NOT NULL);\n"
                f"    ALTER TABLE {_JOURNAL_BATCHES} ALTER COLUMN row_ids SET STORAGE EXTERNAL;\n"
                f"    CREATE INDEX {_JOURNAL_BATCHES}_run"
                f" ON {_JOURNAL_BATCHES} (migration_id, table_name, first_id);\n"
                "  END IF;\n"
                "  IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('barq_journal')"
                " AND relkind = 'r') THEN\n"
                f"    INSERT INTO {_JOURNAL_BATCHES}"
                " (migration_id, table_name, first_id, last_id, row_ids)\n"
                "    SELECT migration_id, table_name, MIN(row_id), MAX(row_id),"
                " array_agg(row_id ORDER BY row_id)\n"
                "    FROM barq_journal GROUP BY migration_id, table_name, div(row_id, 50000);\n"
                "    DROP TABLE barq_journal;\n"
                "  END IF;\n"
                "  IF to_regclass('barq_journal') IS NULL THEN\n"
                "    CREATE VIEW barq_journal AS SELECT migration_id, table_name,"
                f" unnest(row_ids) AS row_id FROM {_JOURNAL_BATCHES};\n"
                "  END IF;\n"
                "END $$"
            )
        )
        return True

    def journalled_update_sql(
        self, table: str, key: str, set_sql: str, where: str, journal: str, label: str
    ) -> tuple[str | None, str]:
        """One statement: the UPDATE in a data-modifying CTE whose RETURNING keys the INSERT
        journals as one row (the batch's keys), so the keys journalled are the keys
        this UPDATE changed, whatever other sessions commit meanwhile. It returns both
        counts for the runner to compare."""
        return None, (
            f"WITH moved AS (\nUPDATE {table} SET\n{set_sql}\nWHERE {where}\nRETURNING {key}\n"
            f"), journalled AS (\nINSERT INTO {journal}_batches"
            " (migration_id, table_name, first_id, last_id, row_ids)\n"
            f"SELECT :migration_id, '{label}', MIN({key}), MAX({key}),"
            f" array_agg(CAST({key} AS BIGINT))\n"
            "FROM moved HAVING COUNT(*) > 0\nRETURNING cardinality(row_ids) AS n\n)\n"
            "SELECT (SELECT COUNT(*) FROM moved), COALESCE((SELECT SUM(n) FROM journalled), 0)"
        )

    def stale_statistics_sql(self, table: str) -> tuple[str, str] | None:
        """Stale once a tenth of the rows changed since the last ANALYZE (autovacuum's own
        threshold, which it may not have reached yet). Without them, the boundary query of a
        step over rows the statistics call rare reads them all through their index and sorts
        them at every batch (a rollback of a 1M-row move took ten times the move)."""
        return (
            "SELECT n_mod_since_analyze > 0.1 * GREATEST(n_live_tup, 1000)"
            " FROM pg_stat_user_tables WHERE relid = to_regclass(:table)",
            f"ANALYZE {table}",
        )

    def journalled_keys_sql(
        self, key: str, journal: str, label: str, lower: str, upper: str
    ) -> str:
        """Only the journal rows whose key range meets the batch's are unpacked. ``+ 0``:
        PostgreSQL cannot know how many keys an array holds and would look each one up in
        the key's index (6 s where hashing them once takes 1 s, for a million keys)."""
        return (
            f"{key} + 0 IN (SELECT u.k FROM {journal}_batches AS b"
            " CROSS JOIN LATERAL unnest(b.row_ids) AS u(k)"
            f" WHERE b.migration_id = :migration_id AND b.table_name = '{label}'"
            f" AND b.first_id <= {upper} AND b.last_id >= {lower}"
            f" AND u.k >= {lower} AND u.k <= {upper})"
        )

    def statement_timeout_sql(self, seconds: float) -> str | None:
        """``SET LOCAL statement_timeout``; only effective inside a transaction."""
        return f"SET LOCAL statement_timeout = {timeout_ms(seconds)}"

    def _classify_driver_error(self, exc: BaseException) -> ErrorKind:
        state = getattr(exc, "sqlstate", None) or ""
        if state == "40P01":
            return "deadlock"
        if state == "40001":
            return "serialization"
        if state == "55P03":
            return "lock_timeout"
        if state == "57014":
            # A statement timeout is only a lock timeout when it struck during a row-lock
            # wait; waits for table locks carry no such context and count as permanent.
            diag = getattr(exc, "diag", None)
            context = (getattr(diag, "context", None) or "") + " " + str(exc)
            if "lock timeout" in context or _ROW_LOCK_WAIT.search(context):
                return "lock_timeout"
            return "permanent"
        if state.startswith("08") or state in _CONNECTION_STATES:
            return "connection"
        if not state and isinstance(exc, psycopg.OperationalError):
            return "connection"  # lost connection: libpq reports no SQLSTATE
        return "permanent"

    def blocking_sessions_sql(self) -> str | None:
        """Blocked backends of this database and who blocks them, with SQL Server's column
        names; the wait is timed from the lock request (PostgreSQL 14+), else the query."""
        return (
            "SELECT a.pid AS session_id, b.pid AS blocking_session_id,"
            " a.wait_event_type || ':' || COALESCE(a.wait_event, '') AS wait_type,"
            " CAST(EXTRACT(EPOCH FROM clock_timestamp() - COALESCE("
            "(SELECT min(l.waitstart) FROM pg_locks AS l WHERE l.pid = a.pid AND NOT l.granted),"
            " a.state_change)) * 1000 AS BIGINT) AS wait_time,"
            " a.wait_event AS last_wait_type,"
            " upper(split_part(ltrim(a.query), ' ', 1)) AS command,"
            " a.query AS sql_text,"
            " o.usename AS blocker_login,"
            " COALESCE(o.client_hostname, host(o.client_addr), 'local') AS blocker_host,"
            " o.application_name AS blocker_program, o.query AS blocker_sql_text"
            " FROM pg_stat_activity AS a"
            " CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS b(pid)"
            " LEFT JOIN pg_stat_activity AS o ON o.pid = b.pid"
            " WHERE a.datname = current_database()"
        )

    def session_id_sql(self) -> str | None:
        """``pg_backend_pid()``: the pid ``pg_stat_activity`` and ``pg_blocking_pids`` use."""
        return "SELECT pg_backend_pid()"

    def backup(
        self,
        engine: Engine,
        dest_dir: PurePath | str,
        *,
        label: str,
        tables: list[str] | None = None,
        timeout: float | None = None,
    ) -> BackupInfo:
        """``pg_dump --format=custom`` of the database (or only ``tables``), then verify;
        each tool run is stopped after ``timeout`` seconds.

        A whole-database dump includes ``barq_checkpoints``: restoring it rewinds them too.
        """
        names = tuple(validate_identifier(t) for t in tables) if tables else None
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / backup_file_name(label, self.backup_suffix)
        table_args = ["--strict-names", *(f"--table={t}" for t in names)] if names else []
        dump = ["--format=custom", f"--file={path}", *table_args]
        _run_tool("pg_dump", dump, engine.url, timeout=timeout)
        size, digest = path.stat().st_size, file_sha256(path)
        info = BackupInfo(str(path), self.name, label, size, digest, False, names)
        self.verify(engine, info, timeout=timeout)
        return replace(info, verified=True)

    def verify(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """Check size and sha256, then read the archive's TOC and every data block."""
        path = Path(info.location)
        if not path.is_file():
            raise BackupVerificationError(f"backup file {info.location!r} is missing")
        if info.size_bytes is not None and path.stat().st_size != info.size_bytes:
            raise BackupVerificationError(
                f"backup {info.location!r} is {path.stat().st_size} bytes,"
                f" expected {info.size_bytes}"
            )
        if info.sha256 is not None and file_sha256(path) != info.sha256:
            raise BackupVerificationError(f"backup {info.location!r} fails its sha256 check")
        try:
            _run_tool("pg_restore", ["--list", str(path)], None, timeout=timeout)
            _run_tool("pg_restore", [f"--file={os.devnull}", str(path)], None, timeout=timeout)
        except BackupError as exc:
            raise BackupVerificationError(f"backup {info.location!r} is unreadable: {exc}") from exc

    def restore(self, engine: Engine, info: BackupInfo, *, timeout: float | None = None) -> None:
        """Verify, then ``pg_restore --clean --if-exists --single-transaction``.

        Objects in the archive are dropped and recreated; objects created after the backup
        are left alone. The engine's pool is disposed before and after.
        """
        self.verify(engine, info, timeout=timeout)
        engine.dispose()
        args = ["--clean", "--if-exists", "--single-transaction", "--exit-on-error"]
        try:
            _run_tool("pg_restore", [*args, info.location], engine.url, timeout=timeout)
        finally:
            engine.dispose()


DIALECT = PostgresqlDialect()
