"""Stakeholder notices per target: a target's own notify channel, "outside the maintenance
window" on every message about an out-of-window run, and the estimate and window in the
requester's reply and the plan."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.adapters.slack import SlackNotices
from bot.domain.lifecycle import State
from bot.local.barq_schema import create_demo_database
from tests import harness
from tests.harness import APPROVALS, MIGRATIONS, now, text_of
from tests.test_paging import world

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
PROD_NOTICES = "C0PRODNOTICES"
OUTSIDE = "outside the maintenance window"
ZONE = "Europe/Amsterdam"
PARAMS = {"source_tenant": "3", "target_tenant": "7"}
ARGS = "tenant-consolidation source_tenant=3 target_tenant=7"


def _targets(tmp_path: Path, now0: datetime) -> dict[str, Any]:
    """Staging (no windows, the global notify channel) and production (a window in an hour,
    an emergency policy, its own notify channel)."""
    targets = harness.policies(
        create_demo_database(tmp_path / "staging.db", now=now0),
        create_demo_database(tmp_path / "production.db", now=now0),
    )
    first = (now0 + timedelta(hours=1)).astimezone(ZoneInfo(ZONE)).replace(second=0, microsecond=0)
    targets["production"]["notify_channel"] = PROD_NOTICES
    targets["production"]["windows"] = {
        "timezone": ZONE,
        "once": [{"start": first.replace(tzinfo=None).isoformat(), "duration": "1h"}],
        "emergency": {"approvers": [DAVE], "approver_groups": ["S0DBA"], "required": 2},
    }
    return targets


async def _start(tmp_path: Path) -> harness.Harness:
    h = await harness.start(tmp_path, _targets(tmp_path, now()), poll_seconds=3600)
    h.slack.channels[PROD_NOTICES] = "prod-migrations"
    return h


def _mentions(message: dict[str, Any], migration_id: int) -> bool:
    return f"#{migration_id}" in text_of(message)


async def test_a_target_with_its_own_channel_gets_its_notices_there(tmp_path: Path) -> None:
    """Production's run (its stage message, the "scheduled" announcement, a blocking episode
    in its thread) goes to production's notify channel; staging's run stays in the global
    one. A message keeps the channel it was first posted in, and replies stay in the thread
    of their message, even when the target's channel changes meanwhile."""
    h = await _start(tmp_path)
    try:
        s = h.bot.service
        staged, _ = await s.request(ALICE, "tenant-consolidation", PARAMS, "staging")
        await s.approve(staged.id, BOB, staged.plan.hash)
        await h.settle()
        prod, _ = await s.request(ALICE, "tenant-consolidation", PARAMS, "production")
        await s.approve(prod.id, BOB, prod.plan.hash)
        await s.approve(prod.id, DAVE, prod.plan.hash)
        prod = s.store.get(prod.id)
        assert prod.state is State.APPROVED and prod.due_at is not None
        s.notifier.episode(prod, "blocking-1", f"#{prod.id} is blocked by session 61", now())
        await h.bot.delivery.drain()

        in_prod = h.slack.messages_in(PROD_NOTICES)
        in_global = h.slack.messages_in(MIGRATIONS)
        assert in_prod and all(_mentions(x, prod.id) for x in in_prod), in_prod
        assert not [x for x in in_global if _mentions(x, prod.id)]
        [stage] = [x for x in in_prod if not x.get("thread_ts") and "approved" in x["text"]]
        assert any("is scheduled for" in text_of(x) for x in in_prod if not x.get("thread_ts"))
        [episode] = [x for x in in_prod if "blocked by session" in text_of(x)]
        assert episode["thread_ts"] == stage["ts"]

        assert any(_mentions(x, staged.id) and not x.get("thread_ts") for x in in_global)
        assert any(_mentions(x, staged.id) and x.get("thread_ts") for x in in_global), "report"
        assert not [x for x in in_prod if _mentions(x, staged.id)]
        assert not [x for x in h.slack.messages_in(APPROVALS) if "blocked by" in text_of(x)]

        # production's channel changes (a new configuration): what was posted stays put
        assert isinstance(s.notifier, SlackNotices)
        s.notifier.target_channels["production"] = MIGRATIONS
        before = len(h.slack.messages_in(MIGRATIONS))
        s.notifier.progress(prod, [], now(), None)
        s.notifier.episode(prod, "blocking-1", f"#{prod.id} blocking cleared after 4s", now())
        s.notifier.episode(prod, "blocking-2", f"#{prod.id} is blocked again", now())
        await h.bot.delivery.drain()
        assert len(h.slack.messages_in(MIGRATIONS)) == before
        [again] = [x for x in h.slack.messages_in(PROD_NOTICES) if "blocked again" in text_of(x)]
        assert again["thread_ts"] == stage["ts"], "a reply goes where its message is"
        assert "cleared" in text_of(episode), "updated in place"
    finally:
        await h.close()


def _versions(message: dict[str, Any]) -> list[str]:
    """Every version a message had: its earlier ones (updated in place) and its last."""
    return [text_of(v) for v in message["updates"]] + [text_of(message)]


async def test_every_message_about_an_out_of_window_run_says_so(tmp_path: Path) -> None:
    """when=now on production, run through to its end: the requester's reply, the approval
    request and its thread, the stage message in every version, the report, a blocking
    episode and an announcement each say "outside the maintenance window"."""
    h = await _start(tmp_path)
    try:
        s = h.bot.service
        reply = await h.slash(ALICE, f"request {ARGS} on=production when=now")
        assert OUTSIDE in text_of(reply), reply
        [m] = await s.recent()
        approved = await h.click(CAROL, h.approval_message(m.id), "approve")
        assert approved is not None and OUTSIDE in text_of(approved), approved
        await s.approve(m.id, DAVE, m.plan.hash)
        await h.settle()
        m = s.store.get(m.id)
        assert m.state is State.SUCCEEDED
        s.notifier.episode(m, "blocking-1", f"#{m.id} is blocked by session 61", now())
        s.notifier.announce(m, f"#{m.id} finished", now())
        await h.bot.delivery.drain()

        messages = h.slack.messages
        # the approval request, 2 notices in its thread; the stage message, the report, the
        # episode in its thread; the announcement
        assert len(messages) == 7, [text_of(x) for x in messages]
        assert {x["channel"] for x in messages} == {APPROVALS, PROD_NOTICES}
        for message in messages:
            for version in _versions(message):
                assert OUTSIDE in version, version
                assert version.count(OUTSIDE) <= 2, "said once (plus the fallback text)"
        status = await h.slash(ALICE, f"status {m.id}")
        assert OUTSIDE in text_of(status)
    finally:
        await h.close()


async def test_the_request_reply_and_the_plan_show_the_estimate_and_window(
    tmp_path: Path,
) -> None:
    """On a target with windows the requester's reply says the estimate and the window
    chosen, as its thread does, and so does the plan; on one without, neither says it."""
    h = await _start(tmp_path)
    try:
        plan = text_of(await h.slash(ALICE, f"plan {ARGS} on=production"))
        assert "Estimate " in plan and "would run in the window from <!date^" in plan, plan
        reply = text_of(await h.slash(ALICE, f"request {ARGS} on=production"))
        assert "estimate " in reply and "once approved it runs in the window from" in reply
        [m] = await h.bot.service.recent()
        await h.bot.delivery.drain()
        in_thread = [x for x in h.slack.messages_in(APPROVALS) if x.get("thread_ts")]
        [thread] = [x for x in in_thread if "estimate" in x["text"]]
        window = thread["text"].split("window from ", 1)[1].split(" (", 1)[0]
        assert window in reply, (window, reply)

        await h.bot.service.approve(m.id, BOB, m.plan.hash)
        await h.bot.service.approve(m.id, DAVE, m.plan.hash)
        again = text_of(await h.slash(ALICE, f"request {ARGS} on=production"))
        assert "requested this already" in again and "scheduled for <!date^" in again

        staging = text_of(await h.slash(ALICE, f"request {ARGS} on=staging"))
        assert "waiting for approval" in staging and "estimate" not in staging.lower()
        assert "Estimate" not in text_of(await h.slash(ALICE, f"plan {ARGS} on=staging"))
    finally:
        await h.close()


async def test_the_loud_pager_outage_goes_to_the_channel_of_the_pages_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pager down for two minutes while a run of a target with its own notify channel
    waits to be paged: the loud message goes to that channel (not the global one), and says
    there when paging works again."""
    async with world(tmp_path, monkeypatch) as w:
        w.h.slack.channels[PROD_NOTICES] = "prod-migrations"
        assert isinstance(w.h.bot.service.notifier, SlackNotices)
        w.h.bot.service.notifier.target_channels["staging"] = PROD_NOTICES
        w.pages.channel_of = w.h.bot.service.notifier.channel_of
        for server in (w.pd, w.og, w.hook):
            server.fail(503, times=1000)
        m = await w.failed_run()
        for _ in range(7):  # 140 s after the first failure
            w.clock.advance(20)
            await w.drain()

        def loud(channel: str) -> list[dict[str, Any]]:
            return [x for x in w.h.slack.messages_in(channel) if "Paging is failing" in x["text"]]

        [message] = loud(PROD_NOTICES)
        assert f"#{m.id}" in message["text"] and not message.get("thread_ts")
        assert loud(MIGRATIONS) == []
        for server in (w.pd, w.og, w.hook):
            server.heal()
        w.clock.advance(400)
        assert await w.drain() == 3
        [back] = [x for x in w.h.slack.messages if x["ts"] == message["ts"]]
        assert back["channel"] == PROD_NOTICES and "Paging works again" in back["text"]
