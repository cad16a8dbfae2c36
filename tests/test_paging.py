"""Paging the emergency contacts, end to end through the in-process bot, against loopback
stand-ins of PagerDuty's Events API v2, Opsgenie's Alert API and a signed webhook.

Page delivery is driven by hand (``drain``) on an injected clock: no sleeping, no background
loop racing the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from bot.adapters.pager import PageDelivery
from bot.adapters.tables import outbox
from bot.domain.lifecycle import Event, State
from bot.domain.records import Migration
from bot.errors import ConfigError
from bot.local.barq_schema import create_demo_database
from bot.local.pagers import LocalOpsgenie, LocalPagerDuty, LocalWebhook
from bot.settings import load_settings
from tests import harness
from tests.harness import MIGRATIONS, Harness

ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
PD_KEY, OG_KEY, HOOK_SECRET = "R0UTINGKEYSECRET42", "0PSGENIE-KEY-SECRET", "h00k-s1gning-secret"
STATUS_SECRET = "st4tus-p4ge-secret"
MOVE = {"source_tenant": "3", "target_tenant": "7"}
BROKEN = """
name: broken-move
description: moves tasks, then fails on a column that does not exist
targets: [staging]
parameters:
  source_tenant: {type: int, min: 1}
  target_tenant: {type: int, min: 1}
steps:
  - name: move-tasks
    kind: sql
    sql: UPDATE Tasks SET TenantId = :target_tenant WHERE TenantId = :source_tenant
  - name: move-ghosts
    kind: sql
    sql: UPDATE Tasks SET NoSuchColumn = 1 WHERE TenantId = :source_tenant
rollback:
  - name: move-back
    kind: sql
    sql: UPDATE Tasks SET TenantId = :source_tenant WHERE TenantId = :target_tenant
"""
GOOD = """
name: good-move
description: moves tasks
targets: [staging]
parameters:
  source_tenant: {type: int, min: 1}
  target_tenant: {type: int, min: 1}
steps:
  - name: move-tasks
    kind: sql
    sql: UPDATE Tasks SET TenantId = :target_tenant WHERE TenantId = :source_tenant
"""
CHECKED = """
name: checked-move
description: a check that fails
targets: [staging]
parameters:
  source_tenant: {type: int, min: 1}
  target_tenant: {type: int, min: 1}
steps:
  - name: tenant-is-empty
    kind: check
    sql: SELECT COUNT(*) FROM Tasks WHERE TenantId = :source_tenant
    expect: "== 0"
"""
HANGS = """
name: hanging-move
description: a program that outlives its timeout
targets: [staging]
parameters:
  source_tenant: {type: int, min: 1}
  target_tenant: {type: int, min: 1}
steps:
  - name: export
    kind: command
    timeout: 0.3
    argv: [{python}, -c, "import time; time.sleep(30)"]
"""


class Clock:
    """A clock the test moves; it starts a minute ahead of the bot's real clock, so that
    what the bot queues now is due at once."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    """The bot, the pager stand-ins, and the clock of the page delivery."""

    h: Harness
    pd: LocalPagerDuty
    og: LocalOpsgenie
    hook: LocalWebhook
    clock: Clock
    status: LocalWebhook
    start: dict[str, Any]  # harness.start's arguments

    async def restart(self) -> None:
        """Stop the bot (as a deploy does) and start it again on the same state database."""
        await self.h.close()
        self.h = await _bot(self.clock, **self.start)

    @property
    def pages(self) -> PageDelivery:
        assert self.h.bot.pages is not None
        return self.h.bot.pages

    async def drain(self) -> int:
        """A page delivery pass at the test's clock, then a Slack delivery pass."""
        sent = await self.pages.drain()
        await self.h.bot.delivery.drain()
        return sent

    async def failed_run(self, runbook: str = "broken-move") -> Migration:
        """Request, approve and run ``runbook``; return it as it ended."""
        service = self.h.bot.service
        m, _ = await service.request(ALICE, runbook, MOVE, "staging")
        await service.approve(m.id, BOB, m.plan.hash)
        await self.h.settle()
        await self.h.bot.delivery.drain()  # the progress message, which pages link to
        return self.h.bot.store.get(m.id)


def _contacts(pd: str, og: str, hook: str) -> dict[str, Any]:
    return {
        "pagerduty": {"routing_key_env": "TEST_PD_KEY", "url": pd},
        "opsgenie": {
            "api_key_env": "TEST_OG_KEY",
            "url": og,
            "responders": [{"type": "team", "name": "dba"}],
        },
        "webhook": {"url": f"{hook}/hooks/barq", "secret_env": "TEST_HOOK_SECRET"},
        "slack": ["S0DBA", "U0DAVE"],
    }


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    production: bool = False,
    status_page: bool = False,
    **extra: Any,
) -> AsyncIterator[World]:
    """The bot paging the stand-ins for its staging target (and telling a status page)."""
    monkeypatch.setenv("TEST_PD_KEY", PD_KEY)
    monkeypatch.setenv("TEST_OG_KEY", OG_KEY)
    monkeypatch.setenv("TEST_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("TEST_STATUS_SECRET", STATUS_SECRET)
    pd, og, hook = LocalPagerDuty(PD_KEY), LocalOpsgenie(OG_KEY), LocalWebhook(HOOK_SECRET)
    status = LocalWebhook(STATUS_SECRET)
    servers = (pd, og, hook, status)
    for server in servers:
        await server.start()
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "broken-move.yaml").write_text(BROKEN)
    (folder / "good-move.yaml").write_text(GOOD)
    (folder / "checked-move.yaml").write_text(CHECKED)
    (folder / "hanging-move.yaml").write_text(HANGS.replace("{python}", sys.executable))
    targets = harness.policies(create_demo_database(tmp_path / "staging.db", now=harness.now()))
    targets["staging"]["production"] = production
    start = {
        "tmp_path": tmp_path,
        "targets": targets,
        "runbooks_dir": folder,
        "contacts": _contacts(pd.url, og.url, hook.url),
        "slack_workspace_url": "https://acme.slack.com",
        **(
            {"status_page": {"url": f"{status.url}/status", "secret_env": "TEST_STATUS_SECRET"}}
            if status_page
            else {}
        ),
        **extra,
    }
    clock = Clock()
    w = World(await _bot(clock, **start), pd, og, hook, clock, status, start)
    try:
        yield w
    finally:
        await w.h.close()
        for server in servers:
            await server.stop()


async def _bot(clock: Clock, **start: Any) -> Harness:
    """The bot served on loopback, its page delivery driven by the test on ``clock``."""
    h = await harness.start(**start)
    for task in [t for t in h.bot._tasks if t.get_name() == "pages"]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert h.bot.pages is not None
    h.bot.pages.clock = clock
    h.bot.delivery.clock = clock  # the outage message is queued at the pages' clock
    return h


def _events(pd: LocalPagerDuty) -> list[dict[str, Any]]:
    return [r["body"] for r in pd.requests if r["path"] == "/v2/enqueue" and "body" in r]


async def test_a_failed_run_is_paged_acknowledged_and_resolved_by_its_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trigger → acknowledge → resolve-on-rollback, on all three services: one incident
    (PagerDuty dedup_key, Opsgenie alias: the migration's key) with the step, the error, the
    rows committed and a link to the Slack thread; the Slack contacts are mentioned."""
    async with world(tmp_path, monkeypatch) as w:
        m = await w.failed_run()
        assert m.state is State.FAILED
        assert await w.drain() == 3

        incident = w.pd.incidents[m.run_key]
        assert incident.status == "triggered"
        trigger = incident.events[0]
        payload = trigger["payload"]
        assert payload["severity"] == "error"  # not a production target
        assert "step 2 (move-ghosts) failed" in payload["summary"]
        details = payload["custom_details"]
        assert details["step"] == "2 (move-ghosts, sql)"
        assert "NoSuchColumn" in details["error"]
        assert details["rows_committed"]["1. move-tasks"] > 0
        assert details["backup"] == "none taken"
        progress = next(x for x in w.h.slack.messages_in(MIGRATIONS) if not x.get("thread_ts"))
        link = f"https://acme.slack.com/archives/{MIGRATIONS}/p{progress['ts'].replace('.', '')}"
        assert trigger["links"] == [{"href": link, "text": f"Slack thread of #{m.id}"}]
        assert w.og.incidents[m.run_key].status == "open"
        assert w.og.incidents[m.run_key].events[0]["responders"] == [
            {"type": "team", "name": "dba"}
        ]
        assert [e["event"] for e in w.hook.events] == ["trigger"]
        thread = [x for x in w.h.slack.messages_in(MIGRATIONS) if x.get("thread_ts")]
        assert any("<!subteam^S0DBA> <@U0DAVE>: you are paged" in x["text"] for x in thread)

        w.h.bot.service.engine.pager.acknowledge(m, BOB, harness.now())
        assert await w.drain() == 3
        assert w.pd.incidents[m.run_key].status == "acknowledged"
        assert w.og.incidents[m.run_key].status == "acked"
        assert w.og.incidents[m.run_key].events[-1]["user"] == BOB

        r, _ = await w.h.bot.service.rollback(m.id, CAROL)
        await w.h.bot.service.approve(r.id, BOB, r.plan.hash)
        await w.h.settle()
        assert w.h.bot.store.get(r.id).state is State.SUCCEEDED
        assert await w.drain() == 3
        assert w.pd.incidents[m.run_key].status == "resolved"
        assert w.og.incidents[m.run_key].status == "closed"
        assert [e["event"] for e in w.hook.events] == ["trigger", "acknowledge", "resolve"]
        assert len(w.pd.incidents) == 1, "the rollback's own success opens nothing"
        assert w.pd.changes == [], "change events are for production targets only"


async def test_a_failed_check_and_a_step_over_its_timeout_are_paged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's one line says which: a check that failed, a step that exceeded its
    timeout; each run is its own incident."""
    async with world(tmp_path, monkeypatch) as w:
        checked = await w.failed_run("checked-move")
        hung = await w.failed_run("hanging-move")
        assert checked.state is hung.state is State.FAILED
        await w.drain()
        summaries = {k: i.summary for k, i in w.pd.incidents.items()}
        assert "check 1 (tenant-is-empty) failed" in summaries[checked.run_key]
        assert "step 1 (export) exceeded its timeout" in summaries[hung.run_key]


async def test_a_run_resumed_to_success_resolves_its_incident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check fails and pages; the cause is fixed and the run resumed: it succeeds, and
    its incident is resolved (on every service)."""
    async with world(tmp_path, monkeypatch) as w:
        m = await w.failed_run("checked-move")
        await w.drain()
        assert w.pd.incidents[m.run_key].status == "triggered"
        with w.h.bot.service.targets["staging"].target.engine.begin() as conn:
            conn.execute(text("DELETE FROM Tasks WHERE TenantId = 3"))  # the fix
        await w.h.bot.service.resume(m.id, ALICE)
        await w.h.settle()
        assert w.h.bot.store.get(m.id).state is State.SUCCEEDED
        await w.drain()
        assert w.pd.incidents[m.run_key].status == "resolved"
        assert w.og.incidents[m.run_key].status == "closed"
        assert [e["event"] for e in w.hook.events] == ["trigger", "resolve"]


async def test_a_paused_run_cancelled_resolves_its_incident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run paused by a guard that paged (the blocking limit, say) and then cancelled:
    its incident is resolved."""
    async with world(tmp_path, monkeypatch) as w:
        service, store = w.h.bot.service, w.h.bot.store
        m, _ = await service.request(ALICE, "good-move", MOVE, "staging")
        now = harness.now()
        with store.transaction():  # started and paused at its first boundary, as a guard does
            w.h.approve_in_store(m, BOB)
            store.transition(m.id, Event.START, actor="bot", now=now, started_at=now)
            m = store.transition(m.id, Event.PAUSE, actor="bot", now=now)
            service.engine.pager.trigger(m, "blocking limit reached", {}, now)
        await w.drain()
        assert w.pd.incidents[m.run_key].status == "triggered"
        await service.cancel(m.id, ALICE)
        await w.drain()
        assert store.get(m.id).state is State.CANCELLED
        assert w.pd.incidents[m.run_key].status == "resolved"
        resolved = w.hook.events[-1]
        assert resolved["event"] == "resolve"
        assert resolved["summary"] == f"#{m.id} was cancelled by {ALICE} while paused"


async def test_the_same_failure_twice_makes_one_incident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed run resumed and failing the same way again is paged once; a different
    failure of the same run adds to its one incident (same dedup key)."""
    async with world(tmp_path, monkeypatch) as w:
        m = await w.failed_run()
        await w.drain()
        await w.h.bot.service.resume(m.id, ALICE)
        await w.h.settle()
        assert w.h.bot.store.get(m.id).state is State.FAILED
        await w.drain()
        assert [e["event_action"] for e in _events(w.pd)] == ["trigger"]
        assert len(w.hook.events) == 1

        w.h.bot.service.engine.pager.trigger(m, "something else went wrong", {}, harness.now())
        await w.drain()
        assert [e["event_action"] for e in _events(w.pd)] == ["trigger", "trigger"]
        assert list(w.pd.incidents) == [m.run_key] and list(w.og.incidents) == [m.run_key]


async def test_pages_on_a_postgresql_state_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    """The bot's state (and so its outbox) on PostgreSQL: paged once, acknowledged once."""
    async with world(tmp_path, monkeypatch, database_url=pg_url) as w:
        m = await w.failed_run()
        pager = w.h.bot.service.engine.pager
        pager.trigger(m, "another reason", {}, harness.now())
        pager.acknowledge(m, BOB, harness.now())
        pager.acknowledge(m, BOB, harness.now())  # a second click
        await w.drain()
        actions = [e["event_action"] for e in _events(w.pd)]
        assert actions == ["trigger", "trigger", "acknowledge"]
        assert w.pd.incidents[m.run_key].status == "acknowledged"


async def test_a_pager_outage_delivers_the_page_after_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PagerDuty answers 500, then 429 with Retry-After, while the run fails: the page waits
    (the others go out), is not retried before Retry-After, and goes out once after."""
    async with world(tmp_path, monkeypatch) as w:
        w.pd.fail(500)
        w.pd.fail(429, retry_after="30")
        m = await w.failed_run()
        assert await w.drain() == 2  # Opsgenie and the webhook
        assert w.pd.incidents == {}
        w.clock.advance(1.5)  # the first backoff (1 s) has passed
        assert await w.drain() == 0  # 429
        w.clock.advance(20)
        assert await w.drain() == 0, "retried before Retry-After"
        assert len(w.pd.requests) == 2
        w.clock.advance(11)
        assert await w.drain() == 1
        w.clock.advance(600)
        assert await w.drain() == 0
        assert [e["event_action"] for e in _events(w.pd)] == ["trigger"]
        assert w.pd.incidents[m.run_key].status == "triggered"
        assert len(w.og.incidents[m.run_key].events) == 1 and len(w.hook.events) == 1


async def test_a_page_queued_before_a_restart_goes_out_after_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PagerDuty is down when the run fails and the bot restarts: the page waits in the
    state database and goes out, once, from the restarted bot."""
    async with world(tmp_path, monkeypatch) as w:
        port = int(w.pd.url.rsplit(":", 1)[1])
        await w.pd.stop()
        m = await w.failed_run()
        assert await w.drain() == 2
        await w.restart()
        await w.pd.start(port)
        w.clock.advance(600)
        assert await w.drain() == 1
        w.clock.advance(600)
        assert await w.drain() == 0
        assert [e["event_action"] for e in _events(w.pd)] == ["trigger"]
        assert w.pd.incidents[m.run_key].status == "triggered"
        assert len(w.hook.events) == 1


async def test_pages_wait_out_a_pager_that_is_down_and_keep_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PagerDuty is down (nothing listens) when the run fails. It is back when the page is
    acknowledged, before the trigger's retry is due: the acknowledgement waits for the
    trigger, then both go out, in order, once each."""
    async with world(tmp_path, monkeypatch) as w:
        port = int(w.pd.url.rsplit(":", 1)[1])
        await w.pd.stop()
        m = await w.failed_run()
        assert await w.drain() == 2
        await w.pd.start(port)
        w.h.bot.service.engine.pager.acknowledge(m, BOB, harness.now())
        assert await w.drain() == 2  # Opsgenie and the webhook; PagerDuty's ack waits
        assert w.og.incidents[m.run_key].status == "acked"
        assert w.pd.requests == []
        w.clock.advance(5)
        assert await w.drain() == 2
        assert [e["event_action"] for e in _events(w.pd)] == ["trigger", "acknowledge"]
        assert w.pd.incidents[m.run_key].status == "acknowledged"


async def test_every_pager_down_for_two_minutes_is_said_loudly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All three services answer 503: after 2 minutes (of the injected clock) the notify
    channel hears it once, mentioning the contacts; when pages go out again, that message
    says so."""
    async with world(tmp_path, monkeypatch) as w:
        for server in (w.pd, w.og, w.hook):
            server.fail(503, times=1000)
        m = await w.failed_run()
        await w.drain()

        def loud() -> list[dict[str, Any]]:
            return [
                x
                for x in w.h.slack.messages_in(MIGRATIONS)
                if "Paging is failing" in x.get("text", "")
            ]

        for _ in range(5):  # 100 s after the first failure
            w.clock.advance(20)
            await w.drain()
        assert loud() == []
        w.clock.advance(25)
        await w.drain()
        [message] = loud()
        text = message["text"]
        assert "<!here>" in text and "<!subteam^S0DBA> <@U0DAVE>" in text
        assert f"#{m.id}" in text and "PagerDuty (HTTP 503" in text and "Opsgenie" in text
        assert not message.get("thread_ts"), "said in the channel, not in a thread"
        for _ in range(10):
            w.clock.advance(60)
            await w.drain()
        assert len(loud()) == 1, "once per outage"

        for server in (w.pd, w.og, w.hook):
            server.heal()
        w.clock.advance(400)
        assert await w.drain() == 3
        [back] = [x for x in w.h.slack.messages if x["ts"] == message["ts"]]
        assert "Paging works again" in back["text"]
        assert w.pd.incidents[m.run_key].status == "triggered"


async def test_one_pager_down_is_not_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only PagerDuty fails; Opsgenie took the page: no loud message."""
    async with world(tmp_path, monkeypatch) as w:
        w.pd.fail(500, times=1000)
        await w.failed_run()
        for _ in range(10):
            await w.drain()
            w.clock.advance(60)
        assert not any("Paging is failing" in x["text"] for x in w.h.slack.messages)


async def test_production_runs_record_change_events_and_page_critical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a production target, a run sends PagerDuty change events at its start and finish,
    and its failure is critical."""
    async with world(tmp_path, monkeypatch, production=True) as w:
        m, _ = await w.h.bot.service.request(ALICE, "good-move", MOVE, "staging")
        await w.h.bot.service.approve(m.id, BOB, m.plan.hash)
        await w.h.settle()
        await w.drain()
        summaries = [c["payload"]["summary"] for c in w.pd.changes]
        assert summaries == [
            f"#{m.id} good-move started on staging",
            f"#{m.id} good-move on staging: succeeded",
        ]
        assert w.pd.incidents == {}, "a run that was never paged resolves nothing"
        failed = await w.failed_run()
        await w.drain()
        assert w.pd.incidents[failed.run_key].events[0]["payload"]["severity"] == "critical"
        assert w.og.incidents[failed.run_key].events[0]["priority"] == "P1"


async def test_the_status_page_shows_maintenance_and_an_incident_for_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A production run opens "maintenance in progress" and completes it; a failure opens
    an incident, resolved by its rollback. Every call is signed (the receiver checks)."""
    async with world(tmp_path, monkeypatch, production=True, status_page=True) as w:
        m, _ = await w.h.bot.service.request(ALICE, "good-move", MOVE, "staging")
        await w.h.bot.service.approve(m.id, BOB, m.plan.hash)
        await w.h.settle()
        failed = await w.failed_run()
        r, _ = await w.h.bot.service.rollback(failed.id, CAROL)
        await w.h.bot.service.approve(r.id, BOB, r.plan.hash)
        await w.h.settle()
        await w.drain()
        seen = [(e["kind"], e[e["kind"]]["status"], e["id"]) for e in w.status.events]
        assert len(w.status.requests) == len(w.status.events), "every call was signed"
        maintenance, incident = f"{m.run_key}-maintenance", f"{failed.run_key}-incident"
        assert ("maintenance", "in_progress", maintenance) in seen
        assert ("maintenance", "completed", maintenance) in seen
        assert ("incident", "investigating", incident) in seen
        assert ("incident", "resolved", incident) in seen
        assert seen.index(("incident", "investigating", incident)) < seen.index(
            ("incident", "resolved", incident)
        )


async def test_the_webhook_is_signed_and_a_bad_signature_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver checks X-Barq-Signature over the exact body; with another secret it
    refuses (401), and the bot drops that page with an error rather than retrying."""
    async with world(tmp_path, monkeypatch) as w:
        w.hook.secret = "not-the-secret"
        await w.failed_run()
        await w.drain()
        assert w.hook.events == [] and len(w.hook.requests) == 1
        thread = [x for x in w.h.slack.messages_in(MIGRATIONS) if x.get("thread_ts")]
        assert any(
            "to the webhook was refused (HTTP 401" in x["text"] and "nobody was paged" in x["text"]
            for x in thread
        ), "a refused page is said in the run's thread"
        signature = w.hook.requests[0]["headers"]["X-Barq-Signature"]
        assert signature.startswith("sha256=") and len(signature) == 7 + 64
        w.clock.advance(600)
        await w.drain()
        assert len(w.hook.requests) == 1, "a refusal is not retried"


async def test_secrets_are_never_logged_queued_or_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through failures, retries, refusals and the outage message, no secret appears in the
    log, the outbox, Slack, or the settings' repr."""
    caplog.set_level(logging.DEBUG)
    async with world(tmp_path, monkeypatch) as w:
        w.pd.routing_key = "another-key"  # every PagerDuty event is refused (400)
        w.og.fail(500, times=1000)
        w.hook.fail(429, times=1000)
        await w.failed_run()
        for _ in range(8):
            await w.drain()
            w.clock.advance(30)
        assert any("routing_key" in r.getMessage() for r in caplog.records), "400 was logged"
        with w.h.bot.store.engine.connect() as conn:
            queued = json.dumps(
                [dict(r._mapping) for r in conn.execute(select(outbox))], default=str
            )
        shown = json.dumps(w.h.slack.messages) + json.dumps(w.h.slack.calls, default=str)
        for secret in (PD_KEY, OG_KEY, HOOK_SECRET):
            assert secret not in caplog.text
            assert secret not in queued
            assert secret not in shown
            assert secret not in repr(w.h.bot.settings)


async def test_the_pagerduty_stand_in_validates_events(tmp_path: Path) -> None:
    """The loopback PagerDuty answers as PagerDuty does: 400 with errors for a bad event,
    202 with the dedup key for a good one, 429 when told to."""
    import aiohttp

    pd = LocalPagerDuty(PD_KEY)
    await pd.start()
    try:
        async with aiohttp.ClientSession() as session:
            bad = {"routing_key": PD_KEY, "event_action": "trigger", "payload": {"summary": "x"}}
            async with session.post(f"{pd.url}/v2/enqueue", json=bad) as r:
                assert r.status == 400
                errors = (await r.json())["errors"]
            assert any("source" in e for e in errors) and any("severity" in e for e in errors)
            good = {
                "routing_key": PD_KEY,
                "event_action": "trigger",
                "dedup_key": "k1",
                "payload": {"summary": "x", "source": "y", "severity": "error"},
            }
            async with session.post(f"{pd.url}/v2/enqueue", json=good) as r:
                assert r.status == 202
                assert await r.json() == {
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": "k1",
                }
            pd.fail(429)
            async with session.post(f"{pd.url}/v2/enqueue", json=good) as r:
                assert r.status == 429
    finally:
        await pd.stop()


def test_a_contact_naming_a_missing_variable_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Secrets come from the environment only: a contact naming an unset variable is a
    start-up error that names it."""
    monkeypatch.delenv("NO_SUCH_PD_KEY", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_PD_KEY, which is not set"):
        load_settings(contacts={"pagerduty": {"routing_key_env": "NO_SUCH_PD_KEY"}})
    with pytest.raises(ConfigError, match="not a Slack user id"):
        load_settings(contacts={"slack": ["@dba-team"]})


def test_serve_refuses_to_start_when_a_contact_names_a_missing_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`barq-bot serve` with a contact whose secret is not in the environment: one line that
    names the setting and the variable, exit code 2."""
    from bot import cli

    config = tmp_path / "barq.yaml"
    config.write_text("contacts:\n  opsgenie:\n    api_key_env: MISSING_OG_KEY\n")
    monkeypatch.setenv("BARQ_CONFIG", str(config))
    monkeypatch.delenv("MISSING_OG_KEY", raising=False)
    assert cli.main(["serve"]) == 2
    error = capsys.readouterr().err
    assert "contacts.opsgenie" in error and "MISSING_OG_KEY, which is not set" in error
