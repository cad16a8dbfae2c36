"""Approver groups looked up in Slack: a lookup that fails is said so, never taken for "you are
not an approver", and is not remembered; a group that does not exist is named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack import SlackDirectory
from bot.domain.lifecycle import State
from bot.errors import ConfigError, DirectoryUnavailable
from bot.local.barq_schema import create_demo_database
from tests import harness
from tests.harness import APPROVALS, Harness

ALICE, BOB = "U0ALICE", "U0BOB"
REQUEST = "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"


async def _started(tmp_path: Path, groups: list[str]) -> Harness:
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    targets = harness.policies(staging)
    targets["staging"]["approval"]["approver_groups"] = groups
    h = await harness.start(tmp_path, targets)
    directory = h.bot.service.directory
    assert isinstance(directory, SlackDirectory)
    directory.timeout = 0.5  # Slack's Retry-After below is longer: the lookup gives up
    await h.slash(ALICE, REQUEST)
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    return h


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    started = await _started(tmp_path, ["S0DBA"])
    yield started
    await started.close()


async def test_an_approver_whose_group_lookup_fails_is_told_to_try_again(h: Harness) -> None:
    """Slack rate-limits the lookup: bob (in @dba) hears to try again, not that he is no
    approver; nothing is recorded; his next click, once Slack answers, counts."""
    h.slack.limit("usergroups.users.list", times=1, retry_after=30)
    reply = await h.click(BOB, h.approval_message(1), "approve")
    assert reply is not None
    shown = harness.text_of(reply)
    assert "could not be checked" in shown and "try again in a moment" in shown, shown
    assert "not an approver" not in shown
    assert h.bot.store.get(1).state is State.REQUESTED
    assert h.bot.store.prior_approvals(1) == []
    assert [a.action for a in h.bot.store.audit_trail(1)] == ["request"]

    again = await h.click(BOB, h.approval_message(1), "approve")
    assert again is not None and "You approved #1" in harness.text_of(again)
    assert [a.user for a in h.bot.store.prior_approvals(1)] == [BOB]


async def test_cancel_and_reject_by_an_approver_wait_for_the_lookup_too(h: Harness) -> None:
    """Cancel and Reject by an approver whose groups cannot be checked change nothing."""
    h.slack.limit("usergroups.users.list", times=2, retry_after=30)
    cancel = harness.text_of(await h.slash(BOB, "cancel 1"))
    assert "try again in a moment" in cancel and "only the requester" not in cancel, cancel
    reject = await h.click(BOB, h.approval_message(1), "reject")
    assert reject is not None and "try again in a moment" in harness.text_of(reject)
    assert not h.slack.views, "no rejection modal was opened"
    assert h.bot.store.get(1).state is State.REQUESTED


async def test_a_group_that_does_not_exist_is_named(tmp_path: Path) -> None:
    """A policy naming a user group Slack does not know is a configuration problem."""
    h = await _started(tmp_path, ["S0GONE"])
    try:
        reply = await h.click(BOB, h.approval_message(1), "approve")
        assert reply is not None
        shown = harness.text_of(reply)
        assert "S0GONE does not exist" in shown and "approver_groups" in shown, shown
        assert h.bot.store.prior_approvals(1) == []
    finally:
        await h.close()


async def test_a_connection_that_fails_is_a_lookup_failure() -> None:
    """No Slack at the other end: DirectoryUnavailable, not an empty membership."""
    client = AsyncWebClient(token="xoxb-local", base_url="http://127.0.0.1:9/api/")
    directory = SlackDirectory(client, timeout=5)
    with pytest.raises(DirectoryUnavailable, match="could not be checked") as caught:
        await directory.groups_of(BOB, ["S0DBA"])
    assert isinstance(caught.value, ConnectionError)
    assert not isinstance(caught.value, ConfigError)
