"""The emergency flow in Slack: the buttons of a failed or paused run (Stop, Assess, Roll back,
Resume, Acknowledge), end to end through the in-process bot, signed clicks and LocalSlack;
and the coalescing of a message's updates (at most one chat.update per message per 3 s).

The failed run is the anonymization of tests/test_rollback.py, failing on purpose on a row the
target refuses to clear, on PostgreSQL: Assess posts what a person needs to decide, Roll back
needs a second person and puts every row back.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import create_engine

from bot.adapters import blocks
from bot.adapters.outbox import Outbox
from bot.adapters.schema_migrations import upgrade
from bot.adapters.slack import Delivery, web_client
from bot.adapters.store import Store, state_engine
from bot.domain.lifecycle import Event, State
from bot.domain.records import Migration
from bot.local.slack import LocalSlack
from tests import harness, oracle
from tests.harness import APPROVALS, MIGRATIONS, Harness
from tests.test_rollback import add_unclearable_audit_row

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB, DAVE = "U0ALICE", "U0BOB", "U0DAVE"  # BOB approves on staging; DAVE is nobody


def _emergency(slack: LocalSlack, migration_id: int) -> dict[str, Any] | None:
    """The message of ``migration_id`` that carries its emergency buttons."""
    for msg in slack.messages_in(MIGRATIONS):
        if any(b.get("block_id") == f"emergency:{migration_id}" for b in msg.get("blocks", [])):
            return msg
    return None


def _thread(slack: LocalSlack, migration_id: int, words: str) -> dict[str, Any] | None:
    """A reply in the migrations channel that says ``words`` about ``migration_id``."""
    for msg in slack.messages_in(MIGRATIONS):
        said = harness.text_of(msg)
        if msg.get("thread_ts") and words in said and f"#{migration_id}" in said:
            return msg
    return None


def _actions(h: Harness, m: Migration) -> list[str]:
    return [a.action for a in h.bot.store.audit_trail(m.id)]


@pytest.fixture
async def pg_bot(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Harness, str]]:
    """The bot with the shipped runbooks, its staging target a seeded PostgreSQL database."""
    oracle.seed((pg_url,))
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            add_unclearable_audit_row(conn, "postgresql")
    finally:
        engine.dispose()
    h = await harness.start(tmp_path, harness.policies(pg_url), ROOT / "runbooks")
    try:
        yield h, pg_url
    finally:
        await h.close()


@pytest.mark.postgres
async def test_a_failed_run_is_assessed_acknowledged_and_rolled_back_from_slack(
    pg_bot: tuple[Harness, str],
) -> None:
    h, url = pg_bot
    slack = h.slack
    before = oracle.snapshot(url)
    await h.slash(ALICE, "request data-anonymization tenant=2 on=staging")
    (m,) = h.bot.store.recent(1)
    await slack.wait_for(lambda s: any(True for _ in s.messages_in(APPROVALS)), timeout=10)
    await h.click(BOB, h.approval_message(m.id), "approve")
    await h.settle()
    m = h.bot.store.get(m.id)
    assert m.state is State.FAILED and "clear-old-audit-values" in (m.error or "")
    failure = await slack.wait_for(lambda s: _emergency(s, m.id), timeout=10)
    buttons = {b["action_id"]: b for b in slack.find_buttons(failure)}
    assert list(buttons) == ["assess", "rollback", "resume", "acknowledge"]
    assert buttons["rollback"]["confirm"]["confirm"]["text"] == "Request rollback"
    assert "confirm" in buttons["resume"] and "confirm" not in buttons["assess"]

    # a stranger is refused, told who may, and the refusal is on the record
    refused = await h.click(DAVE, failure, "assess")
    assert refused is not None and refused["response_type"] == "ephemeral"
    assert f"only the requester (<@{ALICE}>) or an approver may assess #{m.id}" in (
        harness.text_of(refused)
    )

    # Assess: the failed step and error, rows per step, the backup, blocking, the checks now
    reply = await h.click(ALICE, failure, "assess")
    assert reply is not None and "posted in its thread" in harness.text_of(reply)
    post = await slack.wait_for(lambda s: _thread(s, m.id, "Assessment of"), timeout=10)
    said = post["blocks"][0]["text"]["text"]
    backup = m.backups[-1]
    users = next(r.rows for r in h.bot.store.step_runs(m.id) if r.name == "anonymize-users")
    assert users > 0
    for words in (
        "*Failed step*: 3. clear-old-audit-values",
        "ck_keep",  # the database's own error
        f"2. anonymize-users: succeeded, {users:,} rows",
        "3. clear-old-audit-values: failed",
        f"`{backup['location']}`, {backup['size_bytes']:,} bytes, verified",
        "✓ no-clear-emails-left: 0 (expected == 0)",
    ):
        assert words in said, (words, said)
    # pg_blocking_pids ran: none here, unless another session of the shared server is blocked
    assert re.search(r"\*Blocking now\*: (none \(no session is blocked\)|\d+ blocked)", said)

    # Acknowledge: the page (no pager here) is acknowledged, in the thread
    ack = await h.click(ALICE, failure, "acknowledge")
    assert ack is not None and "acknowledged the page" in harness.text_of(ack)
    await slack.wait_for(lambda s: _thread(s, m.id, "acknowledged the page"), timeout=10)

    # Roll back: a run of its own, which the clicker may not approve; BOB does
    asked = await h.click(ALICE, failure, "rollback")
    assert asked is not None and "waiting for approval" in harness.text_of(asked)
    (r,) = h.bot.store.rollbacks_of(m.id)
    await slack.wait_for(lambda s: _said(s, APPROVALS, f"ROLLBACK of #{m.id}"), timeout=10)
    approval = h.approval_message(r.id)
    mine = await h.click(ALICE, approval, "approve")
    assert mine is not None and "you requested this migration" in harness.text_of(mine)
    await h.click(BOB, approval, "approve")
    await h.settle()
    assert h.bot.store.get(r.id).state is State.SUCCEEDED
    oracle.assert_same_data(oracle.snapshot(url), before)

    trail = h.bot.store.audit_trail(m.id)
    clicks = [(a.actor, a.action) for a in trail if a.actor != "bot"]
    assert (DAVE, "refused-click") in clicks
    assert (ALICE, "assess") in clicks and (ALICE, "acknowledge") in clicks
    assert (ALICE, "rollback-request") in clicks
    await slack.wait_for(lambda s: _thread(s, m.id, "refused"), timeout=10)


def _said(slack: Any, channel: str, words: str) -> bool:
    return any(words in harness.text_of(msg) for msg in slack.messages_in(channel))


# -- a paused run: Stop, on SQLite --------------------------------------------------------------


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path, "staging") as h:
        yield h


async def _paused(h: Harness) -> Migration:
    """A consolidation requested by ALICE, moved to paused in the store (as a guard pauses
    it), with its progress message posted."""
    m, _ = await h.bot.service.request(
        ALICE, "tenant-consolidation", {"source_tenant": "2", "target_tenant": "4"}, "staging"
    )
    now = harness.now()
    m = h.bot.store.transition(m.id, Event.APPROVE, actor="bot", now=now)
    m = h.bot.store.transition(m.id, Event.START, actor="bot", now=now, started_at=now)
    m = h.bot.store.transition(m.id, Event.PAUSE, actor="bot", now=now)
    h.bot.service.notifier.progress(m, [], now, None)
    await h.bot.delivery.drain()
    return m


async def test_a_stranger_may_not_stop_a_paused_run_and_its_requester_may(demo: Harness) -> None:
    m = await _paused(demo)
    paused = _emergency(demo.slack, m.id)
    assert paused is not None and "paused" in harness.text_of(paused)
    buttons = {b["action_id"]: b for b in demo.slack.find_buttons(paused)}
    assert list(buttons) == ["stop", "assess", "resume", "acknowledge"]
    assert buttons["stop"]["style"] == "danger" and buttons["stop"]["confirm"]["style"] == "danger"

    refused = await demo.click(DAVE, paused, "stop")
    assert refused is not None and refused["response_type"] == "ephemeral"
    said = harness.text_of(refused)
    assert "Not stopped" in said
    assert f"only the requester (<@{ALICE}>) or an approver may stop #{m.id}" in said
    assert demo.bot.store.get(m.id).state is State.PAUSED

    stopped = await demo.click(ALICE, paused, "stop")
    assert stopped is not None and "cancelled" in harness.text_of(stopped)
    assert demo.bot.store.get(m.id).state is State.CANCELLED
    await demo.slack.wait_for(lambda s: _thread(s, m.id, "cancelled by <@U0ALICE>"), timeout=10)
    clicks = [(a.actor, a.action) for a in demo.bot.store.audit_trail(m.id)]
    assert (DAVE, "refused-click") in clicks and (ALICE, "cancel") in clicks
    # the progress message no longer offers the buttons
    await demo.slack.wait_for(lambda s: _emergency(s, m.id) is None, timeout=10)


async def test_an_approver_assesses_a_paused_run_on_sqlite(demo: Harness) -> None:
    m = await _paused(demo)
    paused = _emergency(demo.slack, m.id)
    assert paused is not None
    reply = await demo.click(BOB, paused, "assess")
    assert reply is not None and "posted in its thread" in harness.text_of(reply)
    post = await demo.slack.wait_for(lambda s: _thread(s, m.id, "Assessment of"), timeout=10)
    said = post["blocks"][0]["text"]["text"]
    assert "*Paused* at step" in said
    assert "*Backup*: none taken by this run" in said
    assert "*Blocking now*: none (sqlite has no blocking query)" in said


def test_only_failed_and_paused_runs_carry_emergency_buttons() -> None:
    for state in State:
        fake = _fake(state)
        block = blocks.emergency_actions(fake)
        assert (block is not None) == (state in (State.FAILED, State.PAUSED)), state


def _fake(state: State) -> Migration:
    from bot.domain.plan import Plan

    plan = Plan(
        runbook="r",
        description="d",
        runbook_digest="x",
        target="staging",
        dialect="sqlite",
        params={},
        steps=(),
        rollback=(),
        hash="a" * 64,
    )
    now = harness.now()
    return Migration(
        id=1,
        run_key="m-1",
        plan=plan,
        state=state,
        requester=ALICE,
        counts={},
        requested_at=now,
        updated_at=now,
        started_at=now,
        finished_at=None,
        current_step=0,
        error=None,
        cancel_requested=False,
        pause_requested=False,
        backups=[],
    )


# -- coalescing -----------------------------------------------------------------------------------


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture
async def wire(tmp_path: Path) -> AsyncIterator[tuple[Outbox, Delivery, LocalSlack, FakeClock]]:
    engine = state_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(engine)
    outbox = Outbox(Store(engine))
    clock = FakeClock(T0)
    async with LocalSlack(channels={"C1": "migrations"}) as slack:
        client = web_client("xoxb-local", slack.api_url)
        yield outbox, Delivery(outbox, client, clock, update_every=3.0), slack, clock
    engine.dispose()


def _progress(i: int) -> dict[str, Any]:
    return {"text": f"step {i}", "blocks": [blocks.section(f"step {i}")]}


async def test_updates_of_one_message_are_coalesced_to_one_per_three_seconds(
    wire: tuple[Outbox, Delivery, LocalSlack, FakeClock],
) -> None:
    outbox, delivery, slack, clock = wire
    outbox.put("progress:1", "C1", _progress(0), clock())
    outbox.put("progress:2", "C1", _progress(0), clock())
    assert await delivery.drain() == 2  # the first send of a key posts at once
    for i in range(1, 30):  # 29 updates of each message within 2.9 s
        clock.advance(0.1)
        outbox.put("progress:1", "C1", _progress(i), clock())
        outbox.put("progress:2", "C1", _progress(i), clock())
        assert await delivery.drain() == 0
    assert not [c for c in slack.calls if c["method"] == "chat.update"]
    assert delivery.held_until("progress:1") == T0 + timedelta(seconds=3)
    assert delivery._idle(5.0) <= 0.1 + 1e-6  # the loop wakes when the held update is due

    clock.advance(0.1)  # 3 s after the post: one update per message, the newest content
    assert await delivery.drain() == 2
    updates = [c for c in slack.calls if c["method"] == "chat.update"]
    assert len(updates) == 2
    assert {m["text"] for m in slack.messages} == {"step 29"}

    clock.advance(1)
    outbox.put("progress:1", "C1", _progress(30), clock())
    assert await delivery.drain() == 0
    clock.advance(1.9)
    assert await delivery.drain() == 0
    clock.advance(0.1)
    assert await delivery.drain() == 1
    texts = {m["text"] for m in slack.messages}
    assert texts == {"step 30", "step 29"}
    assert len([c for c in slack.calls if c["method"] == "chat.update"]) == 3
    assert json.dumps(slack.messages[0]["blocks"]).count("step 30") == 1

    outbox.put("progress:1", "C1", _progress(31), clock())  # then the bot stops:
    assert await delivery.drain() == 0
    assert await delivery.drain(hold=False) == 1  # its last pass sends what it held
    assert slack.messages[0]["text"] == "step 31"


async def test_a_new_message_is_never_held_back(
    wire: tuple[Outbox, Delivery, LocalSlack, FakeClock],
) -> None:
    """Coalescing holds back updates only: the thread's reply and another message go now."""
    outbox, delivery, slack, clock = wire
    outbox.put("progress:1", "C1", _progress(0), clock())
    assert await delivery.drain() == 1
    outbox.put("progress:1", "C1", _progress(1), clock())  # held back for 3 s
    outbox.put("outcome:1", "C1", _progress(99), clock(), thread_key="progress:1")
    outbox.put("progress:3", "C1", _progress(0), clock())
    assert await delivery.drain() == 2
    assert [c["method"] for c in slack.calls] == ["chat.postMessage"] * 3
    assert slack.messages[1]["thread_ts"] == slack.messages[0]["ts"]
    clock.advance(3)
    assert await delivery.drain() == 1
    assert slack.messages[0]["text"] == "step 1"


async def test_held_updates_do_not_crowd_out_other_messages(
    wire: tuple[Outbox, Delivery, LocalSlack, FakeClock],
) -> None:
    """A delivery pass takes 50 messages at most: updates held back are not among them."""
    outbox, delivery, slack, clock = wire
    for i in range(60):
        outbox.put(f"progress:{i}", "C1", _progress(0), clock())
    assert await delivery.drain() == 60
    for i in range(60):
        outbox.put(f"progress:{i}", "C1", _progress(1), clock())
    outbox.put("progress:new", "C1", _progress(0), clock())
    assert await delivery.drain() == 1
    assert slack.calls[-1]["method"] == "chat.postMessage"


# -- notices: one message per run in the notify channel, from its approval on ---------------------


def _top_level(slack: Any, migration_id: int) -> list[dict[str, Any]]:
    return [
        msg
        for msg in slack.messages_in(MIGRATIONS)
        if not msg.get("thread_ts") and f"#{migration_id} " in msg["text"]
    ]


async def test_stakeholders_see_one_message_per_run_from_its_approval(demo: Harness) -> None:
    service = demo.bot.service
    m, _ = await service.request(
        ALICE, "tenant-consolidation", {"source_tenant": "2", "target_tenant": "4"}, "staging"
    )
    await demo.bot.delivery.drain()
    assert not _top_level(demo.slack, m.id), "a request is for the approvers only"
    demo.approve_in_store(m, BOB)  # as Service.approve records it, without starting the run
    service.notifier.approval(demo.bot.store.get(m.id), [], service._policy(m))
    await demo.bot.delivery.drain()
    (notice,) = _top_level(demo.slack, m.id)
    assert "approved" in notice["text"] and "not started" in harness.text_of(notice)
    await demo.settle()
    await demo.bot.delivery.drain()
    (notice,) = _top_level(demo.slack, m.id)  # the same message, now the outcome
    assert "succeeded" in notice["text"] and [u["text"] for u in notice["updates"]]
    replies = [x for x in demo.slack.messages_in(MIGRATIONS) if x.get("thread_ts")]
    assert any(r["thread_ts"] == notice["ts"] and "succeeded" in r["text"] for r in replies)

    other, _ = await service.request(
        ALICE, "tenant-consolidation", {"source_tenant": "3", "target_tenant": "5"}, "staging"
    )
    demo.approve_in_store(other, BOB)  # approved, not started: then cancelled
    service.notifier.approval(demo.bot.store.get(other.id), [], service._policy(other))
    await service.cancel(other.id, ALICE)
    await demo.bot.delivery.drain()
    (gone,) = _top_level(demo.slack, other.id)
    assert "cancelled" in gone["text"]


# -- LocalSlack's rate limit ----------------------------------------------------------------------


async def test_local_slack_answers_429_with_retry_after_beyond_its_rate_limit() -> None:
    now = [100.0]
    async with LocalSlack(channels={"C1": "migrations"}) as slack:
        slack.rate_limit("chat.update", per_minute=30, burst=2, clock=lambda: now[0])
        async with aiohttp.ClientSession() as session:

            async def update() -> tuple[int, str | None]:
                async with session.post(
                    f"{slack.api_url}chat.update",
                    json={"channel": "C1", "ts": "1.0", "text": "x"},
                    headers={"Authorization": "Bearer xoxb-local"},
                ) as resp:
                    return resp.status, resp.headers.get("Retry-After")

            assert [(await update())[0] for _ in range(2)] == [200, 200]  # the burst
            assert await update() == (429, "2")  # 30 a minute: one every 2 s
            now[0] += 2.0
            assert (await update())[0] == 200
            assert slack.rate_limited["chat.update"] == 1


async def test_an_approver_resumes_a_paused_run_from_its_button(demo: Harness) -> None:
    m = await _paused(demo)
    paused = _emergency(demo.slack, m.id)
    assert paused is not None
    reply = await demo.click(BOB, paused, "resume")
    assert reply is not None and "resumed from its last checkpoint" in harness.text_of(reply)
    await demo.settle()
    assert demo.bot.store.get(m.id).state is State.SUCCEEDED
    await demo.slack.wait_for(lambda s: _thread(s, m.id, "resumed by <@U0BOB>"), timeout=10)
    assert (BOB, "resume") in [(a.actor, a.action) for a in demo.bot.store.audit_trail(m.id)]
