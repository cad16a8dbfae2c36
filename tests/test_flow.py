"""The Slack flow over real HTTP on loopback: signed slash commands, button clicks and modal
submissions into the bot; a LocalSlack stand-in receiving what it posts; SQLite targets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.adapters.slack import Delivery
from bot.domain.lifecycle import State
from bot.local.barq_schema import create_demo_database
from tests import harness
from tests.harness import APPROVALS, MIGRATIONS, Harness

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
REQUEST = "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    production = create_demo_database(tmp_path / "production.db", now=harness.now())
    bot = await harness.start(tmp_path, harness.policies(staging, production))
    yield bot
    await bot.close()


async def test_request_approve_and_run_to_success(h: Harness) -> None:
    """Requested, approved by a group member, run in place, reported with row counts."""
    before = h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId IN (3, 7)")
    moved = h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")
    reply = harness.text_of(await h.slash(ALICE, REQUEST))
    assert "#1" in reply and "waiting for approval" in reply
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    request = h.approval_message(1)
    body = harness.text_of(request)
    assert "<@U0ALICE>" in body and h.bot.store.get(1).plan.short_hash in body

    confirmation = await h.click(BOB, request, "approve")
    assert confirmation is not None and "You approved #1" in harness.text_of(confirmation)
    await h.settle()
    await h.bot.delivery.drain()

    m = h.bot.store.get(1)
    assert m.state is State.SUCCEEDED, m.error
    assert h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == 0
    assert h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 7") == before
    outcome = [m for m in h.slack.messages_in(MIGRATIONS) if m.get("thread_ts")]
    assert outcome and f"move-tasks: succeeded, {moved:,} rows" in harness.text_of(outcome[-1])
    progress = h.slack.messages_in(MIGRATIONS)[0]
    assert progress["updates"], "the progress message is updated in place"
    steps = len(m.plan.steps)
    assert "succeeded" in progress["text"] and f"{steps} of {steps} steps done" in harness.text_of(
        progress
    )
    assert len(h.slack.messages_in(MIGRATIONS)) == 2, "one progress message and one outcome"
    assert outcome[-1]["thread_ts"] == progress["ts"]
    assert not h.slack.find_buttons(h.approval_message(1))
    actions = [(a.actor, a.action) for a in h.bot.store.audit_trail(1)]
    assert actions[:2] == [(ALICE, "request"), (BOB, "approve")]
    assert ("bot", "start") in actions and ("bot", "succeed") in actions
    assert sum(1 for _, act in actions if act == "step-succeeded") == steps


async def test_self_approval_and_outsiders_are_refused(h: Harness) -> None:
    """The requester and non-approvers get an ephemeral refusal; nothing changes."""
    await h.slash(ALICE, REQUEST)
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    own = await h.click(ALICE, h.approval_message(1), "approve")
    assert own is not None and "someone else must approve" in harness.text_of(own)
    outsider = await h.click(DAVE, h.approval_message(1), "approve")  # dave approves prod only
    assert outsider is not None and "not an approver" in harness.text_of(outsider)
    assert h.bot.store.get(1).state is State.REQUESTED
    assert h.bot.store.prior_approvals(1) == []


async def test_production_needs_two_distinct_approvers_and_ignores_a_double_click(
    h: Harness,
) -> None:
    """A second click by the same approver changes nothing; a second approver completes it."""
    await h.slash(ALICE, REQUEST.replace("staging", "production"))
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    await h.click(BOB, h.approval_message(1), "approve")
    again = await h.click(BOB, h.approval_message(1), "approve")
    assert again is not None and "already" in harness.text_of(again)
    assert h.bot.store.get(1).state is State.REQUESTED
    assert len(h.bot.store.prior_approvals(1)) == 1
    await h.click(DAVE, h.approval_message(1), "approve")
    await h.settle()
    assert h.bot.store.get(1).state is State.SUCCEEDED


async def test_reject_asks_for_a_reason_then_approval_is_refused(h: Harness) -> None:
    """Reject opens a modal; after rejecting, an approval click is refused."""
    await h.slash(ALICE, REQUEST)
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    await h.click(CAROL, h.approval_message(1), "reject")
    assert h.slack.views and h.slack.views[-1]["callback_id"] == "reject_reason"
    response = await h.submit_reason(CAROL, "wrong target tenant")
    assert response.status == 200
    m = h.bot.store.get(1)
    assert m.state is State.REJECTED
    await h.bot.delivery.drain()
    assert not h.slack.find_buttons(h.approval_message(1)), "a decided request has no buttons"
    with pytest.raises(PermissionError, match="was already rejected"):
        await h.bot.service.approve(1, BOB, m.plan.hash)
    trail = [(a.actor, a.action, a.detail.get("reason")) for a in h.bot.store.audit_trail(1)]
    assert (CAROL, "reject", "wrong target tenant") in trail


async def test_a_stale_approve_button_after_rejection_is_refused(h: Harness) -> None:
    """Clicking Approve on the old message (before it was refreshed) is refused, not counted."""
    await h.slash(ALICE, REQUEST)
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    stale = dict(h.approval_message(1))
    await h.click(CAROL, stale, "reject")
    await h.submit_reason(CAROL, "not this week")
    reply = await h.click(BOB, stale, "approve")
    assert reply is not None and "rejected" in harness.text_of(reply)
    assert h.bot.store.prior_approvals(1) == []


async def test_cancel_before_the_run_stops_it_from_starting(h: Harness) -> None:
    """A cancelled request never runs, and its buttons are gone."""
    await h.slash(ALICE, REQUEST)
    reply = harness.text_of(await h.slash(ALICE, "cancel 1"))
    assert "cancelled" in reply
    assert h.bot.store.get(1).state is State.CANCELLED
    await h.bot.delivery.drain()
    assert not h.slack.find_buttons(h.approval_message(1))


async def test_slack_rate_limit_is_waited_out(h: Harness) -> None:
    """A 429 from Slack is retried after Retry-After; the message still arrives."""
    h.slack.limit("chat.postMessage", times=1, retry_after=1)
    await h.slash(ALICE, REQUEST)
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS), timeout=10)
    assert h.slack.rate_limited["chat.postMessage"] == 1


def test_sqlite_target_is_untouched_by_values_that_look_like_sql(tmp_path: Path) -> None:
    """Parameter values are bound: a quote-laden string is stored verbatim."""
    from bot.adapters.targets.target import Target

    url = create_demo_database(tmp_path / "t.db", now=harness.now())
    target = Target.connect("t", url)
    evil = "x'; DROP TABLE Tasks; --"
    rows = target.run_sql(
        "UPDATE Tenants SET Name = :name WHERE Id = :id",
        {"name": evil, "id": 1, "unused": 5},
        run_key="k",
        step="rename",
        timeout=5,
        now=harness.now(),
    )
    assert rows == 1
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT Name FROM Tenants WHERE Id = 1")).scalar() == evil
        assert conn.execute(text("SELECT COUNT(*) FROM Tasks")).scalar() > 0


async def test_delivery_stops_when_cancelled_just_as_it_is_woken(h: Harness) -> None:
    """Shutdown cancels the outbox loop; a wake-up landing at the same moment must not
    swallow that cancellation (asyncio.wait_for on Python 3.11 did, and shutdown hung)."""
    delivery = Delivery(h.bot.outbox, h.bot.delivery.client, h.bot.service.clock)
    task = asyncio.create_task(delivery.run_forever())
    await h.bot.delivery.drain()
    for _ in range(50):  # let its first pass finish, so that it waits to be woken
        await asyncio.sleep(0.01)
    delivery.kick()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(3):
            await task


async def test_shutdown_leaves_what_slack_does_not_take_in_time_in_the_outbox(h: Harness) -> None:
    """Slack answers 429 with a long Retry-After: the last delivery pass gives up after its
    time budget instead of holding the shutdown, and the message stays queued."""
    h.slack.limit("chat.postMessage", times=2, retry_after=60)
    params = {"source_tenant": "3", "target_tenant": "7"}
    await h.bot.service.request(ALICE, "tenant-consolidation", params, "staging")
    await h.slack.wait_for(lambda s: s.rate_limited["chat.postMessage"] == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await h.bot.stop_background(drain_seconds=0.5)
    assert loop.time() - started < 30, "the shutdown waited out Slack's Retry-After"
    assert h.slack.rate_limited["chat.postMessage"] == 2
    assert h.bot.outbox.undelivered() == 1
