"""The batch runner's SQL for SQL Server: every statement parses as T-SQL (sqlglot) and
compiles with SQLAlchemy's mssql+pyodbc dialect, with the expected shape. SQL Server cannot
run here, so this is the check that what the runner sends it is well formed."""

from __future__ import annotations

import pytest
import sqlglot
from sqlalchemy import text
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc
from sqlglot import exp

from bot.adapters.targets import mssql
from bot.adapters.targets.batch_sql import hook_update_sql
from bot.adapters.targets.batches import BatchSql, batch_sql
from bot.domain.plan import BatchPlan

MS = mssql.DIALECT
WHERE = "TenantId = :source_tenant OR TenantId = :other -- trailing comment"

UPDATE = BatchPlan(
    table="dbo.Tasks", key="Id", where_sql=WHERE, set_sql="TenantId = :target_tenant"
)
INSERT = BatchPlan(
    table="dbo.Tasks",
    key="Id",
    where_sql=WHERE,
    insert_into="archive.Tasks",
    insert_columns=("Id", "TenantId", "Title"),
    insert_select_sql="Id, :target_tenant, UPPER(Title)",
)
JOURNALLED = UPDATE.model_copy(update={"journal": "barq_journal"})
RESTORE = UPDATE.model_copy(update={"journalled_only": "barq_journal"})
HOOK = BatchPlan(
    table="dbo.Users",
    key="Id",
    where_sql="LegacyPreferences IS NOT NULL",
    hook="prefs.py:reshape",
    read=("LegacyPreferences", "Email"),
    write=("Preferences", "LegacyPreferences"),
)


def tsql(sql: str) -> exp.Expression:
    """Parse exactly one T-SQL statement, failing on any parse error."""
    trees = sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert len(trees) == 1 and isinstance(trees[0], exp.Expression), sql
    return trees[0]


def tables(tree: exp.Expression) -> set[str]:
    return {".".join(p for p in (t.db, t.name) if p) for t in tree.find_all(exp.Table)}


def binds(tree: exp.Expression) -> set[str]:
    return {p.name for p in tree.find_all(exp.Placeholder)}


def statements(s: BatchSql) -> list[str]:
    found = [
        s.next_key,
        s.change,
        s.remaining,
        s.checkpoint_create,
        s.checkpoint_claim,
        s.checkpoint_read,
        s.checkpoint_write,
        s.checkpoint_finish,
    ]
    found += [s.checkpoint_insert] if s.checkpoint_insert else []
    return found + ([s.row_update] if s.row_update else [])


def assert_key_range(where: exp.Expression, table_key: str = "Id") -> None:
    """``Id >= :_barq_from AND Id <= :_barq_next AND (<the runbook's condition>)``."""
    lower = [c for c in where.find_all(exp.GTE) if isinstance(c.expression, exp.Placeholder)]
    upper = [c for c in where.find_all(exp.LTE) if isinstance(c.expression, exp.Placeholder)]
    assert [(c.this.name, c.expression.name) for c in lower] == [(table_key, "_barq_from")]
    assert [(c.this.name, c.expression.name) for c in upper] == [(table_key, "_barq_next")]
    assert isinstance(where.this, exp.And) and isinstance(where.this.expression, exp.Paren)


def test_boundary_query_takes_the_top_keys_after_the_checkpoint() -> None:
    tree = tsql(batch_sql(MS, UPDATE).next_key)
    assert isinstance(tree, exp.Select) and isinstance(tree.expressions[0], exp.Max)
    inner = tree.find(exp.Subquery)
    assert inner is not None
    top = inner.this.args["limit"]
    assert isinstance(top.expression, exp.Placeholder) and top.expression.name == "_barq_size"
    assert "TOP (:_barq_size)" in batch_sql(MS, UPDATE).next_key
    assert [o.this.name for o in inner.this.args["order"].expressions] == ["Id"]
    where = inner.this.args["where"].sql("tsql")
    # The runbook's OR stays grouped and its comment cannot swallow the keyset predicate.
    assert where.startswith("WHERE (TenantId = :source_tenant OR TenantId = :other")
    assert "Id > CAST(:_barq_last AS BIGINT)" in where
    assert tables(tree) == {"dbo.Tasks"}
    assert binds(tree) == {"_barq_size", "_barq_last", "source_tenant", "other"}
    assert [o.sql("tsql") for o in tree.args["options"]] == ["RECOMPILE"]


def test_update_changes_only_the_key_range() -> None:
    tree = tsql(batch_sql(MS, UPDATE).change)
    assert isinstance(tree, exp.Update) and tables(tree) == {"dbo.Tasks"}
    assert [e.sql("tsql") for e in tree.expressions] == ["TenantId = :target_tenant"]
    assert_key_range(tree.args["where"])
    assert binds(tree) == {"target_tenant", "_barq_from", "_barq_next", "source_tenant", "other"}


def test_journalled_update_outputs_the_keys_it_changed_into_the_journal() -> None:
    """One statement: ``UPDATE ... OUTPUT :migration_id, 'dbo.Tasks', INSERTED.Id INTO
    barq_journal (migration_id, table_name, row_id) WHERE <the key range>``."""
    s = batch_sql(MS, JOURNALLED)
    assert s.journalled and s.journal is None
    tree = tsql(s.change)
    assert isinstance(tree, exp.Update) and tables(tree) == {"dbo.Tasks"}
    assert [e.sql("tsql") for e in tree.expressions] == ["TenantId = :target_tenant"]
    assert_key_range(tree.args["where"])
    output = tree.args["returning"]
    assert [e.sql("tsql") for e in output.expressions] == [
        ":migration_id",
        "'dbo.Tasks'",
        "INSERTED.Id",
    ]
    into = output.args["into"]
    assert into.name.lower() == "barq_journal"
    assert [c.name for c in into.expressions] == ["migration_id", "table_name", "row_id"]
    assert binds(tree) == {
        "migration_id",
        "target_tenant",
        "_barq_from",
        "_barq_next",
        "source_tenant",
        "other",
    }


def test_a_restore_changes_only_keys_journalled_within_the_batch_range() -> None:
    """``journalled_only``: the UPDATE also requires the key to be one the run journalled
    for the table, looked up in the journal only within the batch's key range."""
    tree = tsql(batch_sql(MS, RESTORE).change)
    assert isinstance(tree, exp.Update) and tables(tree) == {"dbo.Tasks", "barq_journal"}
    where = tree.args["where"].sql("tsql")
    assert where.startswith("WHERE Id >= :_barq_from AND Id <= :_barq_next")
    (lookup,) = (q for q in tree.find_all(exp.Select))
    assert lookup.sql("tsql") == (
        "SELECT row_id FROM barq_journal WHERE migration_id = :migration_id"
        " AND table_name = 'dbo.Tasks' AND row_id >= :_barq_from AND row_id <= :_barq_next"
    )
    assert "migration_id" in binds(tree)


def test_insert_copies_the_key_range_into_the_other_table() -> None:
    tree = tsql(batch_sql(MS, INSERT).change)
    assert isinstance(tree, exp.Insert)
    schema = tree.this
    assert isinstance(schema, exp.Schema) and schema.this.sql("tsql") == "archive.Tasks"
    assert [c.name for c in schema.expressions] == ["Id", "TenantId", "Title"]
    select = tree.expression
    assert isinstance(select, exp.Select) and len(select.expressions) == 3
    assert [t.sql("tsql") for t in select.find_all(exp.Table)] == ["dbo.Tasks"]
    assert_key_range(select.args["where"])


def test_hook_reads_the_range_in_key_order_and_updates_rows_by_key() -> None:
    s = batch_sql(MS, HOOK)
    assert s.kind == "hook"
    read = tsql(s.change)
    assert isinstance(read, exp.Select) and tables(read) == {"dbo.Users"}
    assert [c.sql("tsql") for c in read.expressions] == ["Id", "LegacyPreferences", "Email"]
    assert [o.this.name for o in read.args["order"].expressions] == ["Id"]
    assert_key_range(read.args["where"])
    assert s.row_update is not None
    write = tsql(s.row_update)
    assert isinstance(write, exp.Update) and tables(write) == {"dbo.Users"}
    assert [e.sql("tsql") for e in write.expressions] == [
        "Preferences = :_barq_w0",
        "LegacyPreferences = :_barq_w1",
    ]
    assert write.args["where"].sql("tsql") == "WHERE Id = :_barq_key"
    partial = tsql(hook_update_sql(MS, HOOK, ("LegacyPreferences",)))
    assert [e.sql("tsql") for e in partial.expressions] == ["LegacyPreferences = :_barq_w1"]


def test_checkpoint_is_updated_under_lock_or_inserted_into_barq_checkpoints() -> None:
    s = batch_sql(MS, UPDATE)
    write = tsql(s.checkpoint_write)
    assert isinstance(write, exp.Update) and tables(write) == {"dbo.barq_checkpoints"}
    assert "WITH (UPDLOCK, HOLDLOCK)" in write.sql("tsql")
    assert s.checkpoint_insert is not None
    insert = tsql(s.checkpoint_insert)
    assert isinstance(insert, exp.Insert) and tables(insert) == {"dbo.barq_checkpoints"}
    written = {"migration_id", "step", "branch", "last_key", "rows", "done", "now"}
    assert binds(write) == binds(insert) == written
    key = {"migration_id", "step", "branch"}
    create = tsql(s.checkpoint_create)
    assert isinstance(create, exp.Insert) and tables(create) == {"dbo.barq_checkpoints"}
    assert create.find(exp.Exists) is not None and binds(create) == key | {"done", "now"}
    for sql, sets in [
        (s.checkpoint_claim, {"updated_at"}),
        (s.checkpoint_finish, {"done", "updated_at"}),
    ]:
        tree = tsql(sql)
        assert isinstance(tree, exp.Update) and tables(tree) == {"dbo.barq_checkpoints"}
        assert {e.this.name for e in tree.expressions} == sets
        assert {c.this.name for c in tree.args["where"].find_all(exp.EQ)} == key
    read = tsql(s.checkpoint_read)
    assert isinstance(read, exp.Select) and binds(read) == key


def test_remaining_counts_after_the_checkpoint() -> None:
    tree = tsql(batch_sql(MS, UPDATE).remaining)
    assert isinstance(tree.expressions[0], exp.Count) and tables(tree) == {"dbo.Tasks"}
    assert binds(tree) == {"_barq_last", "source_tenant", "other"}


@pytest.mark.parametrize(
    "plan",
    [UPDATE, JOURNALLED, RESTORE, INSERT, HOOK],
    ids=["update", "journalled", "restore", "insert", "hook"],
)
def test_every_statement_parses_and_compiles_for_sql_server(plan: BatchPlan) -> None:
    """SQLAlchemy turns each ``:name`` into a pyodbc ``?``; none is left unbound."""
    dialect = mssql_pyodbc.dialect(paramstyle="qmark")  # type: ignore[no-untyped-call]  # as with pyodbc loaded
    for sql in statements(batch_sql(MS, plan)):
        names = binds(tsql(sql))
        compiled = text(sql).compile(dialect=dialect)
        assert compiled.positiontup is not None
        assert set(compiled.positiontup) == names, sql
        assert str(compiled).count("?") == len(compiled.positiontup)
        assert ":_barq" not in str(compiled) and ":source" not in str(compiled)
