"""Decisions are never silent: who rejected and why, who cancelled, paused or resumed, show on
the approval message and in its thread (to the requester); an approval that is not yet enough
says how many there are and who may still approve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.lifecycle import Event, State
from tests import harness
from tests.harness import APPROVALS, MIGRATIONS, Harness

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
REQUEST = "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path, "staging", "production", poll_seconds=3600) as started:
        yield started


def _replies(h: Harness, channel: str, parent: dict[str, Any]) -> list[str]:
    return [
        harness.text_of(m)
        for m in h.slack.messages_in(channel)
        if m.get("thread_ts") == parent["ts"]
    ]


async def test_a_rejection_shows_who_and_why_and_tells_the_requester(h: Harness) -> None:
    """The approval message names the rejecter and the reason; a reply in its thread mentions
    the requester with the same."""
    await h.slash(ALICE, REQUEST)
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    await h.click(CAROL, h.approval_message(1), "reject")
    await h.submit_reason(CAROL, "wrong <target> tenant")
    await h.bot.delivery.drain()
    shown = harness.text_of(h.approval_message(1))
    assert "Rejected by <@U0CAROL>" in shown and "wrong &lt;target&gt; tenant" in shown
    replies = _replies(h, APPROVALS, h.approval_message(1))
    assert any(
        "<@U0ALICE>" in r and "rejected by <@U0CAROL>" in r and "wrong &lt;target&gt; tenant" in r
        for r in replies
    ), replies


async def test_the_first_of_two_approvals_says_who_may_still_approve(h: Harness) -> None:
    """Production needs two: bob's approval is answered with 1 of 2 and the approvers left,
    without the requester or bob among those who may."""
    await h.slash(ALICE, REQUEST.replace("staging", "production"))
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    reply = await h.click(BOB, h.approval_message(1), "approve")
    assert reply is not None
    text = harness.text_of(reply)
    assert "You approved #1: 1 of 2 approvals; waiting for one more from <@U0DAVE> or" in text
    assert "<!subteam^S0DBA> (other than <@U0ALICE> and <@U0BOB>)" in text
    assert "it is now requested" not in text
    done = await h.click(DAVE, h.approval_message(1), "approve")
    assert done is not None and "2 of 2 approvals; it is approved" in harness.text_of(done)


async def test_a_cancel_before_the_run_shows_who_cancelled(h: Harness) -> None:
    """An approver cancels alice's request: the approval message and its thread say who."""
    await h.slash(ALICE, REQUEST)
    await h.slash(BOB, "cancel 1")
    await h.bot.delivery.drain()
    assert "Cancelled by <@U0BOB>" in harness.text_of(h.approval_message(1))
    replies = _replies(h, APPROVALS, h.approval_message(1))
    assert any("<@U0ALICE>" in r and "cancelled by <@U0BOB>" in r for r in replies), replies


async def test_pause_and_resume_say_who_in_the_runs_thread(h: Harness) -> None:
    """Pausing and resuming a run is said in the progress message's thread, naming who did it
    and mentioning the requester, and the approval message shows the last of them."""
    service = h.bot.service
    params = {"source_tenant": "3", "target_tenant": "7"}
    m, _ = await service.request(ALICE, "tenant-consolidation", params, "staging")
    h.approve_in_store(m, BOB)
    now = harness.now()
    # running as far as the store knows, but no engine task: it pauses when told to
    h.bot.store.transition(m.id, Event.START, actor="bot", now=now, started_at=now)
    await service.pause(m.id, CAROL)
    h.bot.store.transition(m.id, Event.PAUSE, actor="bot", now=now, pause_requested=False)
    await service.resume(m.id, BOB)
    await h.settle()
    await h.bot.delivery.drain()
    assert h.bot.store.get(m.id).state is State.SUCCEEDED
    progress = h.slack.messages_in(MIGRATIONS)[0]
    replies = _replies(h, MIGRATIONS, progress)
    assert any("<@U0ALICE>" in r and "pause requested by <@U0CAROL>" in r for r in replies)
    assert any("<@U0ALICE>" in r and "resumed by <@U0BOB>" in r for r in replies), replies
    assert "Resumed by <@U0BOB>" in harness.text_of(h.approval_message(m.id))
