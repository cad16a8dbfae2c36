"""Counts are taken again at start: a count that moved by more than the target's threshold
since the request is said in the thread, and on production the run waits for a fresh
approval instead of starting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.domain.lifecycle import State
from tests import harness
from tests.harness import APPROVALS, MIGRATIONS, Harness

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
MOVE = {"source_tenant": "3", "target_tenant": "7"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    bot = await harness.start(tmp_path, harness.demo_targets(tmp_path))
    yield bot
    await bot.close()


def _double_tenant_3_tasks(h: Harness, target: str) -> int:
    """Give tenant 3 as many new tasks as it has: its count doubles. Return the new count."""
    engine = h.bot.service.targets[target].target.engine
    with engine.begin() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(Tasks)")) if r[1] != "Id"]
        names = ", ".join(columns)
        conn.execute(
            text(f"INSERT INTO Tasks ({names}) SELECT {names} FROM Tasks WHERE TenantId = 3")
        )
    return h.count(target, "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")


async def test_a_production_run_whose_counts_moved_waits_for_a_fresh_approval(
    h: Harness,
) -> None:
    """Approved for 400-odd tasks, the data changed to twice that: the run does not start;
    it is back to requested with the new counts, the old approvals no longer count, the
    thread says old and new counts, and the audit trail has the recount. Approved again,
    it runs."""
    service = h.bot.service
    m, _ = await service.request(ALICE, "tenant-consolidation", MOVE, "production")
    before = m.counts["move-tasks"]
    after = _double_tenant_3_tasks(h, "production")
    await service.approve(m.id, DAVE, m.plan.hash)
    await service.approve(m.id, BOB, m.plan.hash)
    await h.settle()
    held = h.bot.store.get(m.id)
    assert held.state is State.REQUESTED and held.started_at is None
    assert held.counts["move-tasks"] == after
    assert h.bot.store.prior_approvals(m.id) == []
    (recount,) = [a for a in h.bot.store.audit_trail(m.id) if a.action == "recount"]
    assert recount.detail["before"]["move-tasks"] == before
    assert recount.detail["after"]["move-tasks"] == after
    assert sorted(recount.detail["voided"]) == [BOB, DAVE]
    await h.bot.delivery.drain()
    request = h.approval_message(m.id)
    assert f"{after:,} rows" in harness.text_of(request) and "Approve" in harness.text_of(request)
    notes = [x for x in h.slack.messages_in(APPROVALS) if x.get("thread_ts") == request["ts"]]
    assert any(f"move-tasks: {before:,} → {after:,} rows (+100%)" in x["text"] for x in notes)
    assert h.count("production", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == after

    await service.approve(m.id, DAVE, m.plan.hash)
    await service.approve(m.id, CAROL, m.plan.hash)
    await h.settle()
    assert h.bot.store.get(m.id).state is State.SUCCEEDED
    assert h.count("production", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == 0


async def test_a_staging_run_whose_counts_moved_says_so_and_starts(h: Harness) -> None:
    """Not production: the thread says the counts moved, and the run starts with them."""
    service = h.bot.service
    m, _ = await service.request(ALICE, "tenant-consolidation", MOVE, "staging")
    before, after = m.counts["move-tasks"], _double_tenant_3_tasks(h, "staging")
    await service.approve(m.id, BOB, m.plan.hash)
    await h.settle()
    await h.bot.delivery.drain()
    done = h.bot.store.get(m.id)
    assert done.state is State.SUCCEEDED and done.counts["move-tasks"] == after
    shown = [x["text"] for x in h.slack.messages_in(MIGRATIONS) + h.slack.messages_in(APPROVALS)]
    assert any(f"move-tasks: {before:,} → {after:,} rows" in t for t in shown), shown
    assert [a.action for a in h.bot.store.audit_trail(m.id)].count("recount") == 1


async def test_a_run_whose_counts_held_starts_without_a_notice(h: Harness) -> None:
    """Within the threshold nothing is said; the recount is still in the audit trail."""
    service = h.bot.service
    m, _ = await service.request(ALICE, "tenant-consolidation", MOVE, "staging")
    await service.approve(m.id, BOB, m.plan.hash)
    await h.settle()
    await h.bot.delivery.drain()
    assert h.bot.store.get(m.id).state is State.SUCCEEDED
    shown = [x["text"] for x in h.slack.messages_in(MIGRATIONS) + h.slack.messages_in(APPROVALS)]
    assert not any("moved by more than" in t for t in shown)
    (recount,) = [a for a in h.bot.store.audit_trail(m.id) if a.action == "recount"]
    assert recount.detail["before"] == recount.detail["after"] == m.counts


async def test_the_threshold_is_the_targets_setting(tmp_path: Path) -> None:
    """With count_drift_percent 150, a doubled count is within it: no notice, no hold."""
    targets = harness.demo_targets(tmp_path)
    targets["production"]["count_drift_percent"] = 150
    h = await harness.start(tmp_path, targets)
    try:
        m, _ = await h.bot.service.request(ALICE, "tenant-consolidation", MOVE, "production")
        _double_tenant_3_tasks(h, "production")
        await h.bot.service.approve(m.id, DAVE, m.plan.hash)
        await h.bot.service.approve(m.id, BOB, m.plan.hash)
        await h.settle()
        assert h.bot.store.get(m.id).state is State.SUCCEEDED
    finally:
        await h.close()


async def test_a_run_whose_rows_cannot_be_counted_again_waits(h: Harness) -> None:
    """The recount fails (the table is gone): the run is not started; it waits, and the
    audit trail says why."""
    m, _ = await h.bot.service.request(ALICE, "tenant-consolidation", MOVE, "staging")
    h.approve_in_store(m, BOB)
    with h.bot.service.targets["staging"].target.engine.begin() as conn:
        conn.execute(text("ALTER TABLE Tasks RENAME TO TasksGone"))
    await h.bot.service.run_due(harness.now())
    await h.bot.service.wait_idle()
    assert h.bot.store.get(m.id).state is State.APPROVED
    (skip,) = [a for a in h.bot.store.audit_trail(m.id) if a.action == "skip"]
    assert skip.detail["reason"].startswith(
        "its rows could not be counted again on staging before the start: no such table"
    )
