"""The scheduler's one entry point, run_due(now): the clock is passed in, each migration is
handled on its own, stored data never stops the bot, and an approval wakes the scheduler."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.domain.lifecycle import State
from bot.local.barq_schema import create_demo_database
from tests import harness
from tests.harness import APPROVALS, MIGRATIONS

ALICE, BOB, DAVE = "U0ALICE", "U0BOB", "U0DAVE"
MOVE = {"source_tenant": "3", "target_tenant": "7"}


async def test_a_pass_skips_a_migration_whose_target_is_gone_and_runs_the_rest(
    tmp_path: Path,
) -> None:
    """Restarted without the production target, the bot still starts; the production request
    is skipped with its reason in the audit trail and its thread (once, not every pass), and
    the approved staging run starts and succeeds."""
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    production = create_demo_database(tmp_path / "production.db", now=harness.now())
    before = await harness.start(tmp_path, harness.policies(staging, production))
    try:
        stale, _ = await before.bot.service.request(
            ALICE, "tenant-consolidation", MOVE, "production"
        )
        fresh, _ = await before.bot.service.request(ALICE, "tenant-consolidation", MOVE, "staging")
        await before.bot.delivery.drain()
        request_ts = before.approval_message(stale.id)["ts"]
    finally:
        await before.close()
    # approved while the bot was down, so the restart's pass is what starts it
    before.approve_in_store(fresh, BOB)

    h = await harness.start(tmp_path, harness.policies(staging))  # production removed
    try:
        await h.settle()
        assert h.bot.store.get(fresh.id).state is State.SUCCEEDED
        assert h.bot.store.get(stale.id).state is State.REQUESTED, "kept, not lost"
        reason = "target production is no longer configured"
        skips = [a for a in h.bot.store.audit_trail(stale.id) if a.action == "skip"]
        assert len(skips) == 1 and reason in skips[0].detail["reason"]

        await h.bot.service.run_due(harness.now())  # a later pass says nothing new
        await h.bot.delivery.drain()
        assert len([a for a in h.bot.store.audit_trail(stale.id) if a.action == "skip"]) == 1
        # a reply in the thread of the approval request the first bot posted
        notes = [m for m in h.slack.messages_in(APPROVALS) if reason in m["text"]]
        assert len(notes) == 1 and notes[0]["thread_ts"] == request_ts
    finally:
        await h.close()


async def test_run_due_uses_the_clock_it_is_given(tmp_path: Path) -> None:
    """A pass at a moment after the request's expiry expires it; a pass before does not."""
    async with harness.running(tmp_path, "staging") as h:
        m, _ = await h.bot.service.request(ALICE, "tenant-consolidation", MOVE, "staging")
        ttl = h.bot.service.targets["staging"].config.approval.ttl
        await h.bot.service.run_due(m.requested_at + ttl - timedelta(seconds=1))
        assert h.bot.store.get(m.id).state is State.REQUESTED
        await h.bot.service.run_due(m.requested_at + ttl)
        assert h.bot.store.get(m.id).state is State.EXPIRED


async def test_an_approval_wakes_the_scheduler_without_waiting_for_a_poll(tmp_path: Path) -> None:
    """With an hour between polls, the run still starts right after the last approval."""
    async with harness.running(tmp_path, "staging", poll_seconds=3600) as h:
        m, _ = await h.bot.service.request(ALICE, "tenant-consolidation", MOVE, "staging")
        await h.bot.service.approve(m.id, BOB, m.plan.hash)
        # the outcome report, a reply in the progress thread, is posted when the run ends
        await h.slack.wait_for(lambda s: any(x.get("thread_ts") for x in s.messages_in(MIGRATIONS)))
        assert h.bot.store.get(m.id).state is State.SUCCEEDED
