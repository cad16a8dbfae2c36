"""Which table each step writes, and the rows a plan touches per table: rows that several
steps go over are not counted twice, and a table with no count says unknown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.adapters import blocks
from bot.adapters.runbook_files import load_runbook
from bot.domain.plan import build_plan
from bot.domain.planned import BatchPlan, PlannedBatch, PlannedCheck, PlannedSql, PlannedStep
from bot.domain.touched import UNKNOWN, TableRows, Write, rows_by_table, writes

ROOT = Path(__file__).resolve().parent.parent


def _sql(name: str, sql: str) -> PlannedSql:
    return PlannedSql(index=1, name=name, sql=sql)


def _batch(name: str, table: str, into: str | None = None) -> PlannedBatch:
    batch = BatchPlan(table=table, key="Id", set_sql=None if into else "X = 1", insert_into=into)
    return PlannedBatch(index=1, name=name, batch=batch)


@pytest.mark.parametrize(
    ("step", "write"),
    [
        (_sql("a", "UPDATE Tasks SET TenantId = 7 WHERE TenantId = 3"), Write("Tasks", False)),
        (_sql("a", "update [dbo].[Tasks] set X = 1"), Write("dbo.Tasks", False)),
        (_sql("a", "-- UPDATE Old\nDELETE FROM Users WHERE Id = 1"), Write("Users", False)),
        (_sql("a", "DELETE Users WHERE Id = 1"), Write("Users", False)),
        (
            _sql("a", 'INSERT INTO "barq_journal"(row_id) SELECT Id FROM Tasks'),
            Write("barq_journal", True),
        ),
        (_sql("a", "WITH t AS (SELECT 1) UPDATE Tasks SET X = 1"), Write("Tasks", False)),
        (_sql("a", "SELECT pg_sleep(1)"), Write(UNKNOWN, False)),
        (_batch("a", "Tasks"), Write("Tasks", False)),
        (_batch("a", "Tasks", into="barq_journal"), Write("barq_journal", True)),
        (PlannedCheck(index=1, name="a", sql="SELECT 1"), None),
    ],
)
def test_the_table_a_step_writes(step: PlannedStep, write: Write | None) -> None:
    assert writes(step) == write


@pytest.mark.parametrize(
    ("steps", "counts", "expected"),
    [
        (  # journal then move: the journal gains rows, Tasks changes them, once each
            [_batch("journal", "Tasks", into="barq_journal"), _batch("move", "Tasks")],
            {"journal": 1254, "move": 1254},
            [TableRows("barq_journal", 1254, 1, False), TableRows("Tasks", 1254, 1, False)],
        ),
        (  # three journals add up: each inserts its own rows
            [_batch(n, n, into="barq_journal") for n in ("T", "U", "A")],
            {"T": 3, "U": 4, "A": 5},
            [TableRows("barq_journal", 12, 3, False)],
        ),
        (  # two steps changing one table may go over the same rows: an upper bound
            [_batch("a", "Tasks"), _sql("b", "UPDATE Tasks SET X = 2")],
            {"a": 10, "b": 10},
            [TableRows("Tasks", 20, 2, True)],
        ),
        (  # no count query: unknown, not 0
            [_sql("a", "UPDATE Tasks SET X = 1"), PlannedCheck(index=2, name="c", sql="SELECT 1")],
            {},
            [TableRows("Tasks", None, 1, False)],
        ),
    ],
)
def test_rows_by_table(
    steps: list[PlannedStep], counts: dict[str, int], expected: list[TableRows]
) -> None:
    assert rows_by_table(steps, counts) == expected


def test_the_dry_run_counts_each_tables_rows_once() -> None:
    """tenant-consolidation moves 1,254 tasks, journalling each: not "About 2,508 rows"; the
    journal gets a row per row moved, in its three journalled steps."""
    runbook = load_runbook(ROOT / "runbooks" / "tenant-consolidation.yaml")
    plan = build_plan(runbook, {"source_tenant": 3, "target_tenant": 7}, "staging", "sqlite")
    counts = {s.name: 1254 if "tasks" in s.name else 10 for s in plan.steps if s.count_sql}
    footer = blocks.plan_message(plan, counts)["blocks"][-1]["elements"][0]["text"]
    assert "2,508" not in footer and "About" not in footer
    assert "`Tasks`: about 1,254 rows" in footer
    assert "`barq_journal`: about 1,274 rows (3 steps)" in footer


def test_a_dry_run_without_count_queries_says_unknown() -> None:
    """A runbook with no count query does not claim it touches 0 rows."""
    runbook = load_runbook(ROOT / "runbooks" / "tenant-consolidation.yaml")
    plan = build_plan(runbook, {"source_tenant": 3, "target_tenant": 7}, "staging", "sqlite")
    footer = blocks.plan_message(plan, {})["blocks"][-1]["elements"][0]["text"]
    assert "0 rows" not in footer and "`Tasks`: unknown rows" in footer
