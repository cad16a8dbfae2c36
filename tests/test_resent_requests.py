"""A request is made once: Slack resending the same /migrate request (same trigger_id, with
X-Slack-Retry-Num), or the user asking again for the same plan while it is pending, is
answered with the migration the first request made."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import harness
from tests.harness import CONSOLE, USERS, Harness

ALICE = "U0ALICE"
REQUEST = "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path, "staging") as bot:
        yield bot


async def test_a_resent_request_makes_no_second_migration(h: Harness) -> None:
    """The same signed body sent again, as Slack retries it, answers with the first
    migration's id and records nothing new."""
    body = harness.payloads.slash_command(
        "/migrate",
        REQUEST,
        user_id=ALICE,
        user_name=USERS[ALICE],
        channel_id=CONSOLE,
        response_url=h.slack.response_url("resent"),
        trigger_id=harness.payloads.new_trigger_id(),
    )
    for retry in (None, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}):
        before = len(h.slack.responses)
        assert (await h.post(body, headers=retry)).status == 200
        await h.slack.wait_for(lambda s, n=before: len(s.responses) > n)
    first, again = (harness.text_of(r) for r in h.slack.responses[-2:])
    assert "*#1*" in first and "waiting for approval" in first
    assert "*#1*" in again and "nothing new was requested" in again
    assert [m.id for m in h.bot.store.recent()] == [1]
    assert [a.action for a in h.bot.store.audit_trail(1)] == ["request"]


async def test_the_same_plan_asked_again_while_pending_answers_with_the_pending_one(
    h: Harness,
) -> None:
    """A double submission (a new trigger_id, the same plan) points at the pending request;
    once it is decided, the same plan can be requested anew."""
    await h.slash(ALICE, REQUEST)
    again = harness.text_of(await h.slash(ALICE, REQUEST))
    assert "You requested this already: migration *#1* is waiting for approval" in again
    assert len(h.bot.store.recent()) == 1
    await h.slash(ALICE, "cancel 1")
    fresh = harness.text_of(await h.slash(ALICE, REQUEST))
    assert "*#2*" in fresh and "waiting for approval" in fresh
