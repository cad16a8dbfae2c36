"""Conflicting runs: a request that would change data a pending or running migration on the
same target changes is refused (naming it), or, where its runbook says so, queued; a run never
starts while a conflicting one runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain.conflicts import conflict, tables_written
from bot.domain.lifecycle import Event, State
from bot.domain.plan import Plan, build_plan
from bot.domain.planned import PlannedSql
from bot.domain.runbook import Runbook
from bot.errors import Conflict
from bot.local.barq_schema import create_demo_database
from tests import harness
from tests.harness import Harness

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "U0ALICE", "U0BOB"


def _runbook(name: str, sql: str, **extra: object) -> Runbook:
    return Runbook.model_validate(
        {
            "name": name,
            "description": "d",
            "targets": ["*"],
            "parameters": {"a": {"type": "int"}, "b": {"type": "int"}},
            "steps": [{"name": "s", "kind": "sql", "sql": sql}],
            **extra,
        }
    )


def _plan(runbook: Runbook, a: int, b: int, target: str = "staging") -> Plan:
    return build_plan(runbook, {"a": a, "b": b}, target, "sqlite")


MOVE = _runbook(
    "move", "UPDATE Tasks SET TenantId = :b WHERE TenantId = :a", conflicts_on=["a", "b"]
)
ANY = _runbook("any", "UPDATE Tasks SET Title = 'x' WHERE Id = :a")
USERS = _runbook("users", "DELETE FROM dbo.[Users] WHERE Id = :a")


@pytest.mark.parametrize(
    ("plan", "other", "why"),
    [
        (_plan(MOVE, 4, 5), _plan(MOVE, 4, 6), "both change the data of 4 (a, b)"),
        (_plan(MOVE, 3, 7), _plan(MOVE, 7, 3), "both change the data of 3, 7 (a, b)"),
        (_plan(MOVE, 3, 7), _plan(MOVE, 3, 7), "both change the data of 3, 7 (a, b)"),
        (_plan(MOVE, 1, 2), _plan(MOVE, 3, 4), None),
        (_plan(MOVE, 1, 2), _plan(MOVE, 1, 2, "production"), None),
        (_plan(ANY, 1, 2), _plan(ANY, 8, 9), "both run any"),
        (_plan(MOVE, 1, 2), _plan(ANY, 8, 9), "both write tasks"),
        (_plan(MOVE, 1, 2), _plan(USERS, 8, 9), None),
    ],
)
def test_which_plans_conflict_and_why(plan: Plan, other: Plan, why: str | None) -> None:
    """Same runbook: by the values of conflicts_on (or always); different runbooks: by the
    tables they write; different targets never."""
    conflicts_on = MOVE.conflicts_on if plan.runbook == "move" else None
    assert conflict(plan, other, conflicts_on) == why


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("UPDATE Tasks SET x = 1", {"tasks"}),
        (
            "insert into dbo.AuditLogs (a) select 1; DELETE FROM [dbo].[Users]",
            {"dbo.auditlogs", "dbo.users"},
        ),
        ("SELECT COUNT(*) FROM Tasks", set()),
    ],
)
def test_the_tables_a_sql_step_writes(sql: str, tables: set[str]) -> None:
    """UPDATE, INSERT INTO and DELETE FROM name the tables a sql step writes."""
    step = PlannedSql(index=1, name="s", sql=sql)
    assert tables_written(step) == tables


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path, "staging") as bot:
        yield bot


async def test_a_request_sharing_a_tenant_with_a_pending_one_is_refused_with_its_id(
    h: Harness,
) -> None:
    """4→5 is pending: 4→6 and the reverse 5→4 are refused naming #1; 1→2 is accepted."""
    service = h.bot.service
    first, _ = await service.request(ALICE, "tenant-consolidation", _move(4, 5), "staging")
    for clash in (_move(4, 6), _move(5, 4)):
        with pytest.raises(Conflict) as info:
            await service.request(ALICE, "tenant-consolidation", clash, "staging")
        assert str(info.value).startswith(f"#{first.id} (tenant-consolidation, ")
        assert "is requested on staging and both change the data of" in str(info.value)
        assert f"/migrate cancel {first.id}" in str(info.value)
    other, created = await service.request(ALICE, "tenant-consolidation", _move(1, 2), "staging")
    assert created and other.id == first.id + 1
    assert len(h.bot.store.recent()) == 2


async def test_a_queued_request_waits_until_the_conflicting_run_has_finished(
    tmp_path: Path,
) -> None:
    """A runbook that queues is accepted beside a conflicting one; approved, it does not start
    while the other is paused mid-run (its thread says why, once), and starts once that one
    is cancelled."""
    folder = tmp_path / "runbooks"
    folder.mkdir()
    runbook = (ROOT / "runbooks" / "tenant-consolidation.yaml").read_text()
    (folder / "tenant-consolidation.yaml").write_text(runbook)
    queued = runbook.replace("name: tenant-consolidation", "name: queued-consolidation")
    (folder / "queued-consolidation.yaml").write_text(queued + "\non_conflict: queue\n")
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    h = await harness.start(tmp_path, harness.policies(staging), folder)
    try:
        service, store, now = h.bot.service, h.bot.store, harness.now()
        first, _ = await service.request(ALICE, "tenant-consolidation", _move(4, 5), "staging")
        second, _ = await service.request(ALICE, "queued-consolidation", _move(4, 6), "staging")
        h.approve_in_store(first, BOB)  # as if it ran and was paused, while the bot was down
        store.transition(first.id, Event.START, actor="bot", now=now, started_at=now)
        store.transition(first.id, Event.PAUSE, actor="bot", now=now)
        await service.approve(second.id, BOB, second.plan.hash)
        await h.settle()
        await h.bot.service.run_due(harness.now())
        assert store.get(second.id).state is State.APPROVED, "it waits"
        waits = [a.detail["reason"] for a in store.audit_trail(second.id) if a.action == "skip"]
        assert len(waits) == 1 and waits[0].startswith(f"it starts once #{first.id} has finished")
        assert "both write auditlogs, barq_journal, tasks, users" in waits[0]
        await service.cancel(first.id, ALICE)
        await h.settle()
        assert store.get(second.id).state is State.SUCCEEDED
    finally:
        await h.close()


def _move(source: int, target: int) -> dict[str, str]:
    return {"source_tenant": str(source), "target_tenant": str(target)}
