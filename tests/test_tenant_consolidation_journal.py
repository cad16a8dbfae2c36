"""The tenant-consolidation runbook's journal, step by step on demo BARQ data (SQLite and
PostgreSQL): rows that join the source tenant while the tasks move are moved and journalled,
the "arrived" checks pass for every table, and the rollback steps move back exactly the
journalled rows (the target tenant's own rows stay where they were).

Steps run as the engine runs them (``run_batches`` per batch step, ``Target.check`` per check),
so a test can act between batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlalchemy import create_engine, text

from bot.adapters.runbook_files import load_runbook
from bot.adapters.targets.batch_sql import batch_sql
from bot.adapters.targets.batches import BatchJob, BatchReport, run_batches
from bot.adapters.targets.dialects import dialect_for
from bot.adapters.targets.target import Target
from bot.domain.batching import BatchSettings
from bot.domain.plan import build_plan
from bot.domain.planned import PlannedBatch, PlannedCheck, PlannedStep
from bot.local.barq_schema import create_schema, seed_demo
from tests import oracle

ROOT = Path(__file__).resolve().parent.parent
SOURCE, TARGET = 2, 4
RUN = "tc-1"
SMALL = BatchSettings(size=50, min=50, max=50)  # several batches per table
OnBatch = Callable[[str, BatchReport], None]


@pytest.fixture
def target(target_url: str) -> Iterator[Target]:
    engine = create_engine(target_url)
    create_schema(engine)
    seed_demo(engine, now=datetime(2025, 3, 1, tzinfo=UTC), tenants=5, tasks_per_tenant=120)
    engine.dispose()
    t = Target.connect("staging", target_url)
    yield t
    t.engine.dispose()


def run_steps(target: Target, steps: tuple[PlannedStep, ...], on_batch: OnBatch) -> list[str]:
    """Run ``steps`` in order; return the names of the checks that failed."""
    params: dict[str, Any] = {"source_tenant": SOURCE, "target_tenant": TARGET, "migration_id": RUN}
    failed = []
    for step in steps:
        if isinstance(step, PlannedBatch):
            plan = step.batch.model_copy(update={"settings": SMALL})
            job = BatchJob(RUN, step.name, "", plan, params, timeout=30)
            result = run_batches(
                target,
                job,
                should_stop=lambda: False,
                on_batch=lambda report, name=step.name: on_batch(name, report),
                now=lambda: datetime.now(UTC),
            )
            assert result.finished
        elif isinstance(step, PlannedCheck):
            check = target.check(step.sql, params, expect=step.expect, equals_sql=step.equals_sql)
            if not check.passed:
                failed.append(step.name)
        else:
            raise AssertionError(f"unexpected {step.kind} step {step.name}")
    return failed


def journal(target: Target, table: str) -> set[int]:
    with target.engine.connect() as conn:
        found = conn.execute(
            text("SELECT row_id FROM barq_journal WHERE migration_id = :m AND table_name = :t"),
            {"m": RUN, "t": table},
        )
        return {int(r) for (r,) in found}


def tenant_ids(target: Target, table: str, tenant: int) -> set[int]:
    with target.engine.connect() as conn:
        found = conn.execute(text(f"SELECT Id FROM {table} WHERE TenantId = :t"), {"t": tenant})
        return {int(r) for (r,) in found}


def add_task(target: Target, tenant: int) -> int:
    """A new task of ``tenant``, with an id above every other (as the application adds them)."""
    with target.engine.begin() as conn:
        key = int(conn.execute(text("SELECT MAX(Id) FROM Tasks")).scalar_one()) + 1
        conn.execute(
            text(
                "INSERT INTO Tasks (Id, TenantId, Title, Status, CreatedAt)"
                " VALUES (:id, :tenant, 'arrived mid-run', 'Open', :now)"
            ),
            {"id": key, "tenant": tenant, "now": datetime(2025, 3, 1)},
        )
    return key


def send_a_task_away_and_delete_a_user(target: Target) -> None:
    """The first journalled task to tenant 1; the first journalled user deleted."""
    task, user = min(journal(target, "Tasks")), min(journal(target, "Users"))
    with target.engine.begin() as conn:
        conn.execute(text("UPDATE Tasks SET TenantId = 1 WHERE Id = :id"), {"id": task})
        conn.execute(text("DELETE FROM UserRoles WHERE UserId = :id"), {"id": user})
        conn.execute(
            text("UPDATE Tasks SET AssignedUserId = NULL WHERE AssignedUserId = :id"), {"id": user}
        )
        conn.execute(text("DELETE FROM Users WHERE Id = :id"), {"id": user})


def test_the_runbook_journals_what_it_moves_and_the_rollback_moves_back_exactly_that(
    target: Target, target_url: str
) -> None:
    runbook = load_runbook(ROOT / "runbooks" / "tenant-consolidation.yaml")
    params = {"source_tenant": SOURCE, "target_tenant": TARGET}
    plan = build_plan(runbook, dict(params), "staging", target.dialect.name)
    assert not [s.name for s in plan.steps if s.name.startswith("journal")]
    before = oracle.snapshot(target_url)
    moving = {t: tenant_ids(target, t, SOURCE) for t in ("Tasks", "Users", "AuditLogs")}
    own = {t: tenant_ids(target, t, TARGET) for t in ("Tasks", "Users", "AuditLogs")}
    assert all(moving.values()) and all(own.values())
    arrived: list[int] = []

    def on_batch(step: str, report: BatchReport) -> None:
        if step == "move-tasks" and not arrived:  # after the first batch: ahead of it
            arrived.append(add_task(target, SOURCE))

    assert run_steps(target, plan.steps, on_batch) == []
    assert arrived
    for table in moving:
        moved = tenant_ids(target, table, TARGET) - own[table]
        assert journal(target, table) == moved
    assert journal(target, "Tasks") == moving["Tasks"] | set(arrived)
    assert tenant_ids(target, "Tasks", SOURCE) == set()

    assert run_steps(target, plan.rollback, lambda *_: None) == []
    for table in moving:
        assert tenant_ids(target, table, TARGET) == own[table]
    assert tenant_ids(target, "Tasks", SOURCE) == moving["Tasks"] | set(arrived)
    with target.engine.begin() as conn:
        conn.execute(text("DELETE FROM Tasks WHERE Id = :id"), {"id": arrived[0]})
    oracle.assert_same_data(oracle.snapshot(target_url), before)


def test_a_row_that_joins_the_source_between_two_steps_is_neither_moved_nor_journalled(
    target: Target,
) -> None:
    """Once move-tasks is done, a new source task stays put and unjournalled: the source-empty
    check says so, and the "arrived" checks still pass."""
    runbook = load_runbook(ROOT / "runbooks" / "tenant-consolidation.yaml")
    params = {"source_tenant": SOURCE, "target_tenant": TARGET}
    plan = build_plan(runbook, dict(params), "staging", target.dialect.name)
    late: list[int] = []

    def on_batch(step: str, report: BatchReport) -> None:
        if step == "move-users" and not late:
            late.append(add_task(target, SOURCE))

    assert run_steps(target, plan.steps, on_batch) == ["source-tenant-empty"]
    assert tenant_ids(target, "Tasks", SOURCE) == set(late)
    assert not journal(target, "Tasks") & set(late)


def test_the_arrived_checks_fail_for_a_journalled_row_that_left_the_target_tenant(
    target: Target,
) -> None:
    """A moved task sent elsewhere and a moved user deleted after the moves: the checks of
    those two tables fail, the audit logs' passes."""
    runbook = load_runbook(ROOT / "runbooks" / "tenant-consolidation.yaml")
    params = {"source_tenant": SOURCE, "target_tenant": TARGET}
    plan = build_plan(runbook, dict(params), "staging", target.dialect.name)
    moves = tuple(s for s in plan.steps if isinstance(s, PlannedBatch))
    checks = tuple(s for s in plan.steps if s.name.endswith("-arrived"))
    assert [s.name for s in checks] == [
        "moved-tasks-arrived",
        "moved-users-arrived",
        "moved-audit-logs-arrived",
    ]
    assert run_steps(target, moves + checks, lambda *_: None) == []
    send_a_task_away_and_delete_a_user(target)
    assert run_steps(target, checks, lambda *_: None) == [
        "moved-tasks-arrived",
        "moved-users-arrived",
    ]


def test_the_data_is_not_back_when_a_journalled_row_is_elsewhere_or_gone(
    target: Target,
) -> None:
    """After the run and its rollback the after_rollback check passes; with a journalled task
    in another tenant and a journalled user deleted it counts both."""
    runbook = load_runbook(ROOT / "runbooks" / "tenant-consolidation.yaml")
    params = {"source_tenant": SOURCE, "target_tenant": TARGET}
    plan = build_plan(runbook, dict(params), "staging", target.dialect.name)
    (home, *_) = (s.planned(0, target.dialect.name, params) for s in runbook.after_rollback)
    assert home.name == "journalled-rows-home" and isinstance(home, PlannedCheck)
    assert run_steps(target, plan.steps + plan.rollback + (home,), lambda *_: None) == []
    send_a_task_away_and_delete_a_user(target)
    bound = {**params, "migration_id": RUN}
    assert target.check(home.sql, bound, expect=home.expect, equals_sql=None).value == 2


def test_the_runbooks_checks_and_journalled_moves_parse_as_t_sql() -> None:
    """SQL Server cannot run here: its statements of the runbook at least parse as T-SQL."""
    runbook = load_runbook(ROOT / "runbooks" / "tenant-consolidation.yaml")
    plan = build_plan(runbook, {"source_tenant": 2, "target_tenant": 4}, "production", "mssql")
    found = []
    for step in plan.steps:
        if isinstance(step, PlannedCheck):
            found.append(step.sql)
        elif isinstance(step, PlannedBatch):
            assert step.batch.journal == "barq_journal"
            found.append(batch_sql(dialect_for("mssql"), step.batch).change)
    assert len(found) == 8
    for sql in found:
        trees = sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
        assert len(trees) == 1, sql
