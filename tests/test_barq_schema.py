"""Tests for the BARQ demo schema, seed data and bulk loader on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlalchemy import Engine, create_engine, create_mock_engine, inspect, select, text
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

from bot.local import barq_schema
from bot.local.barq_schema import (
    count_rows,
    create_demo_database,
    create_schema,
    drop_schema,
    load_tasks_bulk,
    metadata,
    seed_demo,
)

NOW = datetime(2025, 6, 1, 12, 0, 0)
TABLES = {"Tenants", "Users", "Tasks", "AuditLogs", "Roles", "UserRoles"}
SMALL = {"tenants": 3, "users_per_tenant": 10, "tasks_per_tenant": 50}


@pytest.fixture
def engine(target_url: str) -> Iterator[Engine]:
    """Engine on an empty target database (SQLite file or fresh PostgreSQL database)."""
    eng = create_engine(target_url)
    yield eng
    eng.dispose()


def _dump(eng: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every BARQ table, ordered by primary key."""
    with eng.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in metadata.sorted_tables
        }


def test_schema_creates_unquoted_and_idempotently(engine: Engine) -> None:
    create_schema(engine)
    create_schema(engine)
    names = set(inspect(engine).get_table_names())
    if engine.dialect.name == "postgresql":
        assert names >= {name.lower() for name in TABLES}
    else:
        assert names >= TABLES
    drop_schema(engine)
    drop_schema(engine)
    assert not {n.lower() for n in inspect(engine).get_table_names()} & {t.lower() for t in TABLES}


def test_seed_counts_match_tables(engine: Engine) -> None:
    create_schema(engine)
    counts = seed_demo(engine, now=NOW)
    assert set(counts) == TABLES
    assert counts["Tenants"] == 8
    assert counts["Users"] == 8 * 25
    assert counts["Tasks"] == 8 * 400
    assert counts["Roles"] == 3
    assert counts["AuditLogs"] >= counts["Tasks"]
    assert count_rows(engine) == counts


def test_seed_is_deterministic(engine: Engine, tmp_path: Path) -> None:
    create_schema(engine)
    seed_demo(engine, now=NOW, seed=11, **SMALL)
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        create_schema(other)
        seed_demo(other, now=NOW, seed=11, **SMALL)
        assert _dump(engine) == _dump(other)
        drop_schema(other)
        create_schema(other)
        seed_demo(other, now=NOW, seed=12, **SMALL)
        assert _dump(engine)["Users"] != _dump(other)["Users"]
    finally:
        other.dispose()


def test_seed_data_is_plausible(engine: Engine) -> None:
    create_schema(engine)
    seed_demo(engine, now=NOW)
    with engine.connect() as conn:
        roles = set(conn.execute(text("SELECT LegacyRole FROM Users")).scalars())
        prefs = list(conn.execute(text("SELECT LegacyPreferences FROM Users")).scalars())
        statuses = set(conn.execute(text("SELECT Status FROM Tasks")).scalars())
        due = list(conn.execute(text("SELECT DueDate FROM Tasks")).scalars())
        orphans = conn.execute(
            text(
                "SELECT COUNT(*) FROM Tasks t LEFT JOIN Users u ON u.Id = t.AssignedUserId "
                "WHERE t.AssignedUserId IS NOT NULL AND u.Id IS NULL"
            )
        ).scalar_one()
        names = list(conn.execute(text("SELECT Name FROM Tenants ORDER BY Id")).scalars())
    assert roles == {"Admin", "User", "Manager"}
    filled = [json.loads(p) for p in prefs if p is not None]
    assert 0.55 < len(filled) / len(prefs) < 0.85
    assert all(isinstance(p["DarkMode"], bool) and "Locale" in p for p in filled)
    assert statuses == {"Open", "InProgress", "Done"}
    dated = [d if isinstance(d, datetime) else datetime.fromisoformat(d) for d in due if d]
    assert any(d < NOW for d in dated) and any(d > NOW for d in dated)
    assert orphans == 3
    assert names[0] == "Acme Logistics"


def test_unquoted_tsql_update_runs(engine: Engine) -> None:
    create_schema(engine)
    seed_demo(engine, now=NOW, **SMALL)
    with engine.begin() as conn:
        result = conn.execute(
            text("UPDATE Tasks SET TenantId = :t WHERE TenantId = :s"), {"t": 7, "s": 3}
        )
        assert result.rowcount == SMALL["tasks_per_tenant"]
        moved = conn.execute(text("SELECT COUNT(*) FROM Tasks WHERE TenantId = 7")).scalar_one()
    assert moved == SMALL["tasks_per_tenant"]


def test_identity_continues_after_seed(engine: Engine) -> None:
    create_schema(engine)
    counts = seed_demo(engine, now=NOW, **SMALL)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO AuditLogs (TenantId, EntityType, EntityId, Action, CreatedAt) "
                "VALUES (1, 'Task', 1, 'Deleted', :now)"
            ),
            {"now": NOW},
        )
        new_id = conn.execute(text("SELECT MAX(Id) FROM AuditLogs")).scalar_one()
    assert new_id == counts["AuditLogs"] + 1


def test_load_tasks_bulk_loads_exact_rows(engine: Engine) -> None:
    create_schema(engine)
    seed_demo(engine, now=NOW, **SMALL)
    load_tasks_bulk(engine, 20000, tenants=50)
    with engine.connect() as conn:
        total, low, high, tenants = conn.execute(
            text("SELECT COUNT(*), MIN(Id), MAX(Id), COUNT(DISTINCT TenantId) FROM Tasks")
        ).one()
        statuses = set(conn.execute(text("SELECT DISTINCT Status FROM Tasks")).scalars())
    assert (total, low, high, tenants) == (20000, 1, 20000, 50)
    assert statuses == {"Open", "InProgress", "Done"}
    load_tasks_bulk(engine, 0)
    assert count_rows(engine)["Tasks"] == 0


def test_load_tasks_bulk_rejects_other_dialects() -> None:
    mock = create_mock_engine("mssql+pyodbc://", executor=lambda *a, **k: None)
    with pytest.raises(ValueError, match="not implemented for the 'mssql' dialect"):
        load_tasks_bulk(mock, 10)  # type: ignore[arg-type]


def test_create_demo_database_recreates_file(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "barq.db"
    url = create_demo_database(path, now=NOW)
    eng = create_engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM AuditLogs"))
        assert count_rows(eng)["AuditLogs"] == 0
    finally:
        eng.dispose()
    assert create_demo_database(path, now=NOW) == url
    eng = create_engine(url)
    try:
        assert count_rows(eng)["AuditLogs"] > 0
    finally:
        eng.dispose()


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_ddl_compiles_for_mssql_and_parses_as_tsql(table: str) -> None:
    dialect = mssql.dialect()  # type: ignore[no-untyped-call]
    model = metadata.tables[table]
    statements: list[ExecutableDDLElement] = [CreateTable(model)]
    statements += [CreateIndex(index) for index in model.indexes]
    for statement in statements:
        sql = str(statement.compile(dialect=dialect)).strip()
        assert "[" not in sql and "NTEXT" not in sql
        parsed = sqlglot.parse_one(sql, read="tsql")
        assert parsed.key == "create"
    assert f"CREATE TABLE {table} (" in str(CreateTable(model).compile(dialect=dialect))


def test_module_exports_tables() -> None:
    assert {t.name for t in metadata.sorted_tables} == TABLES
    assert {ix.name for ix in barq_schema.tasks.indexes} == {"IX_Tasks_TenantId"}
