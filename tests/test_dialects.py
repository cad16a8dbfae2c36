"""Dialect SQL and error classification.

SQL Server SQL is parsed with sqlglot's tsql dialect (SQL Server cannot run here); the
checkpoint and keyset SQL runs on real SQLite and PostgreSQL databases, and error
classification is checked against errors provoked on those real servers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlglot
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlglot import exp

from bot.adapters.targets import mssql, postgresql, sqlite
from bot.adapters.targets.dialect import Dialect
from bot.adapters.targets.dialects import dialect_for

MS = mssql.DIALECT
PG = postgresql.DIALECT
LITE = sqlite.DIALECT


def tsql(sql: str) -> exp.Expression:
    """Parse exactly one T-SQL statement, failing on any parse error."""
    trees = sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert len(trees) == 1 and trees[0] is not None, sql
    return trees[0]


def table_names(tree: exp.Expression) -> set[str]:
    return {".".join(p for p in (t.db, t.name) if p) for t in tree.find_all(exp.Table)}


def placeholders(tree: exp.Expression) -> set[str]:
    return {p.name for p in tree.find_all(exp.Placeholder)}


# -- SQL Server: generated SQL parses as T-SQL and has the expected shape -------------------


def test_mssql_checkpoint_ddl_is_guarded_create() -> None:
    [ddl] = MS.checkpoint_table_ddl()
    tree = tsql(ddl)
    assert isinstance(tree, exp.IfBlock)
    assert "OBJECT_ID(N'dbo.barq_checkpoints', N'U') IS NULL" in ddl
    create = tree.find(exp.Create)
    assert create is not None and table_names(create) == {"dbo.barq_checkpoints"}
    columns = {c.name: c.args["kind"].sql("tsql") for c in create.find_all(exp.ColumnDef)}
    assert columns == {
        "migration_id": "NVARCHAR(64)",
        "step": "NVARCHAR(100)",
        "branch": "NVARCHAR(100)",
        "last_key": "BIGINT",
        "rows_done": "BIGINT",
        "batches": "BIGINT",
        "done": "BIT",
        "updated_at": "DATETIME2(3)",
    }
    pk = create.find(exp.PrimaryKey)
    assert pk is not None and [e.name for e in pk.expressions] == ["migration_id", "step", "branch"]


def test_mssql_checkpoint_write_is_a_locking_update_then_an_insert() -> None:
    """No MERGE: UPDATE ... WITH (UPDLOCK, HOLDLOCK), and the INSERT run when it updated no
    row; each one statement, every parameter bound (positional under pyodbc)."""
    update_sql, insert_sql = MS.checkpoint_write_sql()
    assert insert_sql is not None
    update = tsql(update_sql)
    assert isinstance(update, exp.Update)
    assert table_names(update) == {"dbo.barq_checkpoints"}
    hints = [h.sql("tsql").upper() for h in update.this.args.get("hints") or []]
    assert hints == ["WITH (UPDLOCK, HOLDLOCK)"]
    sets = {e.this.name: e.expression.sql("tsql") for e in update.expressions}
    assert sets["rows_done"] == "rows_done + :rows" and sets["batches"] == "batches + 1"
    assert {c.this.name for c in update.args["where"].find_all(exp.EQ)} == {
        "migration_id",
        "step",
        "branch",
    }
    insert = tsql(insert_sql)
    assert isinstance(insert, exp.Insert) and table_names(insert) == {"dbo.barq_checkpoints"}
    names = {"migration_id", "step", "branch", "last_key", "rows", "done", "now"}
    assert placeholders(update) == placeholders(insert) == names
    for sql, count in [(update_sql, 7), (insert_sql, 7)]:
        compiled = text(sql).compile(dialect=mssql_pyodbc.dialect(paramstyle="qmark"))
        assert str(compiled).count("?") == len(compiled.positiontup or []) == count
    with pytest.raises(NotImplementedError):
        MS.checkpoint_upsert_sql()


def test_mssql_checkpoint_select() -> None:
    tree = tsql(MS.checkpoint_select_sql())
    assert isinstance(tree, exp.Select)
    assert table_names(tree) == {"dbo.barq_checkpoints"}
    assert placeholders(tree) == {"migration_id", "step", "branch"}


def test_mssql_next_key_uses_top_inside_max() -> None:
    tree = tsql(MS.next_key_sql("dbo.Tasks", "Id", "TenantId = 3 OR TenantId = 4"))
    assert isinstance(tree, exp.Select)
    assert isinstance(tree.expressions[0], exp.Max)
    inner = tree.find(exp.Subquery)
    assert inner is not None and inner.alias == "b"
    limit = inner.this.args["limit"]
    assert isinstance(limit.expression, exp.Placeholder) and limit.expression.name == "batch_size"
    assert "TOP (:batch_size)" in MS.next_key_sql("dbo.Tasks", "Id", "")
    assert table_names(tree) == {"dbo.Tasks"}
    assert [o.this.name for o in inner.this.args["order"].expressions] == ["Id"]
    # The runbook's OR stays grouped, so it cannot escape the keyset predicate.
    assert "(TenantId = 3 OR TenantId = 4) AND" in inner.this.args["where"].sql("tsql")
    assert placeholders(tree) == {"batch_size", "last_key"}
    assert [o.sql("tsql") for o in tree.args["options"]] == ["RECOMPILE"]


def test_mssql_remaining_count() -> None:
    tree = tsql(MS.remaining_count_sql("dbo.Tasks", "Id", "Done = 0"))
    assert isinstance(tree.expressions[0], exp.Count)
    assert table_names(tree) == {"dbo.Tasks"} and placeholders(tree) == {"last_key"}


def test_mssql_blocking_sessions_query() -> None:
    sql = MS.blocking_sessions_sql()
    assert sql is not None
    tree = tsql(sql)
    assert table_names(tree) >= {
        "sys.dm_exec_requests",
        "sys.dm_exec_sessions",
        "sys.dm_exec_connections",
    }
    assert [e.alias_or_name for e in tree.expressions] == [
        "session_id",
        "blocking_session_id",
        "wait_type",
        "wait_time",
        "last_wait_type",
        "command",
        "sql_text",
        "blocker_login",
        "blocker_host",
        "blocker_program",
        "blocker_sql_text",
    ]
    where = tree.args["where"].sql("tsql")
    assert where == "WHERE r.blocking_session_id > 0 AND r.database_id = DB_ID()"


def test_mssql_lock_timeout_and_backup_size() -> None:
    tree = tsql(MS.statement_timeout_sql(2.5) or "")
    assert isinstance(tree, exp.Set) and tree.sql("tsql") == "SET LOCK_TIMEOUT 2500"
    size = tsql(mssql.backup_size_sql())
    assert {t.sql("tsql") for t in size.find_all(exp.Table)} == {
        "msdb.dbo.backupset AS bs",
        "msdb.dbo.backupmediafamily AS mf",
    }
    assert placeholders(size) == {"path"}


def tokens(sql: str) -> list[tuple[str, str]]:
    """sqlglot's tsql parser has no BACKUP/RESTORE grammar; its tokenizer still proves the
    statement lexes as T-SQL (no unterminated literal) and exposes each token's value."""
    return [(t.token_type.name, t.text) for t in sqlglot.Dialect.get_or_raise("tsql").tokenize(sql)]


PATH = r"D:\backups\barq's \"night\".bak"


def test_mssql_backup_verify_restore_statements() -> None:
    backup = tokens(mssql.backup_sql("barq-prod", PATH))
    assert [t for _, t in backup[:6]] == ["BACKUP", "DATABASE", "barq-prod", "TO", "DISK", "="]
    assert backup[2][0] == "IDENTIFIER"  # the [bracketed] name
    assert backup[6] == ("NATIONAL_STRING", PATH)  # N'...' with the quote doubled
    assert [t for _, t in backup[7:]] == ["WITH", "COPY_ONLY", ",", "CHECKSUM", ",", "INIT"]
    verify = tokens(mssql.verify_sql(PATH))
    assert [t for _, t in verify] == [
        *("RESTORE", "VERIFYONLY", "FROM", "DISK", "=", PATH),
        *("WITH", "CHECKSUM"),
    ]
    assert verify[5][0] == "NATIONAL_STRING"
    restore = tokens(mssql.restore_sql("barq-prod", PATH))
    assert [t for _, t in restore] == [
        *("RESTORE", "DATABASE", "barq-prod", "FROM", "DISK", "=", PATH),
        *("WITH", "REPLACE"),
    ]
    single = tsql(mssql.user_mode_sql("barq-prod", "SINGLE_USER"))
    assert isinstance(single, exp.Command)
    assert single.sql("tsql").endswith("[barq-prod] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
    assert mssql.user_mode_sql("barq", "MULTI_USER") == "ALTER DATABASE [barq] SET MULTI_USER"


@pytest.mark.parametrize("db", ["", "a]b", "x; DROP DATABASE y", "1st", "a b", "a" * 129])
def test_mssql_rejects_bad_database_names(db: str) -> None:
    with pytest.raises(ValueError, match="invalid SQL Server database name"):
        mssql.backup_sql(db, "x.bak")


@pytest.mark.parametrize("path", ["", "a\nb", "a\x00b"])
def test_mssql_rejects_bad_paths(path: str) -> None:
    with pytest.raises(ValueError, match="invalid backup path"):
        mssql.verify_sql(path)


# -- shared interface -------------------------------------------------------------------------


def test_dialect_for_resolves_singletons() -> None:
    assert dialect_for("mssql+pyodbc://u:p@dsn") is MS
    assert dialect_for("sqlserver") is MS
    assert dialect_for("postgresql+psycopg://u@h/db") is PG
    assert dialect_for("postgres") is PG
    assert dialect_for("sqlite:///:memory:") is LITE
    engine = create_engine("sqlite://")
    assert dialect_for(engine) is LITE
    with engine.connect() as conn:
        assert dialect_for(conn) is LITE
    assert dialect_for(engine.url) is LITE
    with pytest.raises(ValueError, match="'oracle'"):
        dialect_for("oracle+oracledb://scott:tiger@h/db")


@pytest.mark.parametrize("dialect", [MS, PG, LITE], ids=lambda d: d.name)
@pytest.mark.parametrize("name", ["Tasks", "dbo.Tasks", "_x1", "a_B_9"])
def test_identifiers_pass_unquoted(dialect: Dialect, name: str) -> None:
    assert dialect.checked_identifier(name) == name


@pytest.mark.parametrize("dialect", [MS, PG, LITE], ids=lambda d: d.name)
@pytest.mark.parametrize(
    "name",
    ["", "1Tasks", "Tasks;DROP TABLE x", "a.b.c", "[Tasks]", '"Tasks"', "Ta sks", "a.", "é"],
)
def test_bad_identifiers_are_rejected(dialect: Dialect, name: str) -> None:
    with pytest.raises(ValueError, match="invalid SQL identifier") as info:
        dialect.next_key_sql(name, "Id", "")
    assert repr(name) in str(info.value)
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        dialect.checked_identifier(name)


def test_sql_steps_split_on_semicolons_except_on_sql_server() -> None:
    """SQL Server scripts split on ``GO`` lines only; the others on top-level semicolons."""
    script = "UPDATE a SET x = ';'; UPDATE b SET y = 1\nGO\nUPDATE c SET z = 2"
    assert MS.split_script(script) == ["UPDATE a SET x = ';'; UPDATE b SET y = 1", script[-18:]]
    for dialect in (PG, LITE):
        assert dialect.split_script(script) == [
            "UPDATE a SET x = ';'",
            "UPDATE b SET y = 1\nGO\nUPDATE c SET z = 2",
        ]


def test_key_must_be_an_unqualified_column() -> None:
    with pytest.raises(ValueError, match=re.escape("'t.Id'")):
        PG.next_key_sql("Tasks", "t.Id", "")


def test_timeouts() -> None:
    assert PG.statement_timeout_sql(1.5) == "SET LOCAL statement_timeout = 1500"
    assert MS.statement_timeout_sql(0.0001) == "SET LOCK_TIMEOUT 1"
    assert LITE.statement_timeout_sql(3) is None
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="invalid timeout"):
            PG.statement_timeout_sql(bad)


def test_no_blocking_view_on_sqlite() -> None:
    assert LITE.blocking_sessions_sql() is None


# -- checkpoint and keyset SQL on real SQLite and PostgreSQL ---------------------------------


@pytest.fixture
def target(target_url: str) -> Iterator[Engine]:
    engine = create_engine(target_url)
    yield engine
    engine.dispose()


def _checkpoint(engine: Engine, **params: Any) -> Any:
    d = dialect_for(engine)
    with engine.connect() as conn:
        return conn.execute(text(d.checkpoint_select_sql()), params).mappings().one_or_none()


def test_checkpoint_table_is_idempotent_and_upsert_accumulates(target: Engine) -> None:
    d = dialect_for(target)
    for _ in range(2):
        with target.begin() as conn:
            for ddl in d.checkpoint_table_ddl():
                conn.execute(text(ddl))
    key = {"migration_id": "m1", "step": "copy", "branch": "tenant-3"}
    assert _checkpoint(target, **key) is None
    t1, t2 = datetime(2024, 5, 1, 12, 0, 0), datetime(2024, 5, 1, 12, 5, 0)
    upsert = text(d.checkpoint_upsert_sql())
    with target.begin() as conn:
        conn.execute(upsert, {**key, "last_key": 100, "rows": 40, "done": False, "now": t1})
        # Another branch of the same step is an independent row.
        other = {**key, "branch": "", "last_key": None, "rows": 7, "done": True, "now": t1}
        conn.execute(upsert, other)
    with target.begin() as conn:
        conn.execute(upsert, {**key, "last_key": 250, "rows": 35, "done": True, "now": t2})
    row = _checkpoint(target, **key)
    assert row is not None
    assert (row["last_key"], row["rows_done"], row["batches"], bool(row["done"])) == (
        250,
        75,
        2,
        True,
    )
    assert str(row["updated_at"]).startswith("2024-05-01 12:05:00")
    row = _checkpoint(target, **{**key, "branch": ""})
    assert row is not None and (row["last_key"], row["rows_done"], row["batches"]) == (None, 7, 1)


def test_keyset_boundaries_and_remaining_count(target: Engine) -> None:
    d = dialect_for(target)
    ids = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144]
    with target.begin() as conn:
        conn.execute(text("CREATE TABLE items (id BIGINT PRIMARY KEY, tenant INT NOT NULL)"))
        conn.execute(
            text("INSERT INTO items (id, tenant) VALUES (:id, :tenant)"),
            [{"id": i, "tenant": 3 if i != 8 else 4} for i in ids],
        )
    wanted = [i for i in ids if i != 8]
    boundaries, last = [], None
    with target.connect() as conn:
        next_key = text(d.next_key_sql("items", "id", "tenant = 3 OR tenant = 5"))
        count = text(d.remaining_count_sql("items", "id", "tenant = 3 OR tenant = 5"))
        assert conn.execute(count, {"last_key": None}).scalar() == len(wanted)
        while True:
            upper = conn.execute(next_key, {"last_key": last, "batch_size": 3}).scalar()
            if upper is None:
                break
            boundaries.append(upper)
            remaining = conn.execute(count, {"last_key": upper}).scalar()
            assert remaining == len([i for i in wanted if i > upper])
            last = upper
            assert len(boundaries) <= len(ids), "keyset loop does not terminate"
        # Batches of three over the matching ids; the last one is partial.
        assert boundaries == [3, 21, 89, 144]  # [1 2 3] [5 13 21] [34 55 89] [144]
        assert conn.execute(next_key, {"last_key": 144, "batch_size": 3}).scalar() is None
        everything = text(d.next_key_sql("items", "id", None))
        assert conn.execute(everything, {"last_key": None, "batch_size": 100}).scalar() == 144
        assert conn.execute(everything, {"last_key": 5, "batch_size": 2}).scalar() == 13


def test_sqlite_keyset_query_uses_the_key_index(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, tenant INT)"))
        plan = conn.execute(
            text("EXPLAIN QUERY PLAN " + LITE.next_key_sql("items", "id", "tenant = 3")),
            {"last_key": 10, "batch_size": 5},
        ).all()
    engine.dispose()
    assert any("USING INTEGER PRIMARY KEY (rowid>?)" in str(row) for row in plan), plan


# -- classify(): real errors from PostgreSQL and SQLite -------------------------------------


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    yield from _accounts(pg_url)


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mssql", marks=pytest.mark.mssql),
    ]
)
def server(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The ``acct`` table on each server dialect (SQL Server given BARQ_TEST_MSSQL_URL)."""
    fixture = {"postgresql": "pg_url", "mssql": "mssql_url"}[request.param]
    yield from _accounts(str(request.getfixturevalue(fixture)))


def _accounts(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE acct (id INT PRIMARY KEY, v INT NOT NULL)"))
        conn.execute(text("INSERT INTO acct VALUES (1, 0), (2, 0)"))
    yield engine
    engine.dispose()


UPDATE = text("UPDATE acct SET v = v + 1 WHERE id = :id")


@pytest.mark.postgres
def test_pg_deadlock_is_classified(pg: Engine) -> None:
    barrier = threading.Barrier(2, timeout=20)
    errors: list[BaseException] = []

    def worker(first: int, second: int) -> None:
        try:
            with pg.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '20s'"))
                conn.execute(UPDATE, {"id": first})
                barrier.wait()
                conn.execute(UPDATE, {"id": second})
        except DBAPIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=a) for a in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 1, errors  # PostgreSQL aborts exactly one victim
    assert getattr(errors[0], "orig", None).sqlstate == "40P01"  # type: ignore[union-attr]
    assert PG.classify(errors[0]) == "deadlock"
    assert PG.is_transient(errors[0])


@pytest.mark.postgres
def test_pg_serialization_failure_is_classified(pg: Engine) -> None:
    with pg.connect() as a, pg.connect() as b:
        a = a.execution_options(isolation_level="REPEATABLE READ")
        a.execute(text("SELECT v FROM acct WHERE id = 1")).scalar()  # takes the snapshot
        with b.begin():
            b.execute(UPDATE, {"id": 1})
        with pytest.raises(OperationalError) as info:
            a.execute(UPDATE, {"id": 1})
        a.rollback()
    assert info.value.orig.sqlstate == "40001"  # type: ignore[union-attr]
    assert PG.classify(info.value) == "serialization"
    assert PG.classify(info.value.orig) == "serialization"  # unwrapped driver error too


@pytest.mark.postgres
def test_pg_lock_timeout_is_classified(pg: Engine) -> None:
    with pg.connect() as holder, pg.connect() as waiter:
        holder.execute(UPDATE, {"id": 1})  # row lock held until rollback
        waiter.execute(text("SET lock_timeout = '200ms'"))
        with pytest.raises(OperationalError) as info:
            waiter.execute(UPDATE, {"id": 1})
        waiter.rollback()
        # A statement timeout that strikes while waiting for the row lock is a lock timeout,
        waiter.execute(text("SET lock_timeout = 0"))
        waiter.execute(text(PG.statement_timeout_sql(0.2) or ""))
        with pytest.raises(OperationalError) as row_wait:
            waiter.execute(UPDATE, {"id": 1})
        waiter.rollback()
        holder.rollback()
        # ... while one that strikes a slow query is not worth retrying.
        waiter.execute(text(PG.statement_timeout_sql(0.2) or ""))
        with pytest.raises(OperationalError) as slow:
            waiter.execute(text("SELECT pg_sleep(5)"))
        waiter.rollback()
    assert info.value.orig.sqlstate == "55P03"  # type: ignore[union-attr]
    assert PG.classify(info.value) == "lock_timeout"
    assert row_wait.value.orig.sqlstate == "57014"  # type: ignore[union-attr]
    assert PG.classify(row_wait.value) == "lock_timeout"
    assert slow.value.orig.sqlstate == "57014"  # type: ignore[union-attr]
    assert PG.classify(slow.value) == "permanent"
    assert not PG.is_transient(slow.value)


# Per dialect: this session's id, and how the blocking query names a wait for a row lock.
_SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mssql": "SELECT @@SPID"}
_LOCK_WAIT = {"postgresql": "Lock:", "mssql": "LCK_M_"}


def test_blocking_sessions_lists_the_waiter(server: Engine) -> None:
    found: list[Any] = []
    dialect, name = dialect_for(server), server.dialect.name
    with server.connect() as holder, server.connect() as waiter, server.connect() as observer:
        holder_pid = holder.execute(text(_SESSION_ID[name])).scalar()
        waiter_pid = waiter.execute(text(_SESSION_ID[name])).scalar()
        holder.execute(UPDATE, {"id": 2})
        thread = threading.Thread(target=lambda: waiter.execute(UPDATE, {"id": 2}))
        thread.start()
        deadline = time.monotonic() + 10
        while not found and time.monotonic() < deadline:
            rows = observer.execute(text(dialect.blocking_sessions_sql() or "")).mappings().all()
            found = [r for r in rows if r["session_id"] == waiter_pid]
            observer.rollback()
            time.sleep(0.05)
        holder.rollback()
        thread.join(timeout=10)
        waiter.rollback()
    assert found, "the blocked session never showed up"
    row = found[0]
    assert row["blocking_session_id"] == holder_pid
    assert row["wait_type"].startswith(_LOCK_WAIT[name]) and row["command"] == "UPDATE"
    assert row["wait_time"] >= 0 and row["last_wait_type"]
    assert "UPDATE acct" in row["sql_text"] and "UPDATE acct" in row["blocker_sql_text"]
    assert row["blocker_login"] and row["blocker_host"]


@pytest.mark.postgres
def test_pg_killed_connection_is_classified(pg: Engine, pg_admin_engine: Engine) -> None:
    with pg.connect() as victim:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar()
        victim.rollback()
        with pg_admin_engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        time.sleep(0.2)
        with pytest.raises(DBAPIError) as info:
            victim.execute(text("SELECT 1"))
    assert PG.classify(info.value) == "connection"
    assert PG.classify(info.value.orig) == "connection"  # type: ignore[arg-type]


@pytest.mark.postgres
def test_pg_ordinary_errors_are_permanent(pg: Engine) -> None:
    with pg.connect() as conn, pytest.raises(DBAPIError) as info:
        conn.execute(text("INSERT INTO acct VALUES (1, 0)"))
    assert info.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    assert PG.classify(info.value) == "permanent"
    assert not PG.is_transient(info.value)


def test_sqlite_database_is_locked(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url, connect_args={"timeout": 0})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (a INT)"))
    with engine.connect() as first, engine.connect() as second:
        first.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock
        with pytest.raises(OperationalError, match="database is locked") as info:
            second.execute(text("INSERT INTO t VALUES (2)"))
        first.rollback()
    engine.dispose()
    assert LITE.classify(info.value) == "lock_timeout"
    assert LITE.classify(info.value.orig) == "lock_timeout"  # type: ignore[arg-type]
    assert LITE.is_transient(info.value)


def test_sqlite_other_errors_are_permanent(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    with engine.connect() as conn, pytest.raises(DBAPIError) as info:
        conn.execute(text("SELECT * FROM missing_table"))
    engine.dispose()
    assert LITE.classify(info.value) == "permanent"


# -- classify(): SQL Server, from pyodbc-shaped exceptions (no SQL Server runs here) ---------


class FakePyodbcError(Exception):
    """pyodbc.Error carries (sqlstate, message); the native code ends the message."""


def odbc(state: str, text_: str, code: int, fn: str = "SQLExecDirectW") -> FakePyodbcError:
    prefix = f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server]"
    return FakePyodbcError(state, f"{prefix}[SQL Server]{text_} ({code}) ({fn})")


DEADLOCK = odbc(
    "40001",
    "Transaction (Process ID 53) was deadlocked on lock resources with another process and"
    " has been chosen as the deadlock victim. Rerun the transaction.",
    1205,
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (DEADLOCK, "deadlock"),
        (odbc("HY000", "Lock request time out period exceeded.", 1222), "lock_timeout"),
        (
            odbc("42000", "Snapshot isolation transaction aborted due to update conflict.", 3960),
            "serialization",
        ),
        (
            odbc("40001", "The service has encountered an error processing your request.", 0),
            "serialization",
        ),
        (odbc("08S01", "Communication link failure", 0), "connection"),
        (
            odbc(
                "08S01",
                "TCP Provider: An existing connection was forcibly closed by the remote host.\r\n",
                10054,
            ),
            "connection",
        ),
        (odbc("08001", "Named Pipes Provider: Could not open a connection", 2), "connection"),
        (odbc("HY000", "No process is on the other end of the pipe.", 233), "connection"),
        (
            odbc("42000", "Database 'barq' on server 'x' is not currently available.", 40613),
            "connection",
        ),
        (odbc("42000", "Incorrect syntax near 'FROM'.", 102), "permanent"),
        (odbc("23000", "Violation of PRIMARY KEY constraint 'PK_Tasks'.", 2627), "permanent"),
        (odbc("HYT00", "Query timeout expired", 0, "SQLExecute"), "permanent"),
    ],
)
def test_mssql_classify_pyodbc_errors(error: FakePyodbcError, kind: str) -> None:
    assert MS.classify(error) == kind
    wrapped = DBAPIError("SELECT 1", {}, error)  # what SQLAlchemy raises around it
    assert MS.classify(wrapped) == kind
    assert MS.is_transient(wrapped) == (kind != "permanent")


def test_mssql_invalidated_connection_counts_as_connection() -> None:
    error = odbc("42000", "Something odd", 50000)
    wrapped = DBAPIError("SELECT 1", {}, error, connection_invalidated=True)
    assert MS.classify(error) == "permanent"
    assert MS.classify(wrapped) == "connection"
    assert MS.classify(ConnectionResetError(104, "reset")) == "connection"
