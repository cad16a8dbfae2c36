"""Downtime windows through run_due(now): a fake clock jumps from one wake-up the bot asks
for to the next, through a week of windows on two targets; missed windows, turns, reminders,
out-of-window runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import windows
from bot.adapters import blocks
from bot.adapters.tables import outbox
from bot.domain.lifecycle import Event, State
from bot.domain.records import Migration
from bot.errors import Refused, UsageError
from bot.local.barq_schema import create_demo_database
from bot.service import Service
from tests import harness

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"


def _local(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat(timespec="minutes")


def _targets(tmp_path: Path, now0: datetime, **staging_extra: Any) -> dict[str, Any]:
    staging = create_demo_database(tmp_path / "staging.db", now=now0)
    production = create_demo_database(tmp_path / "production.db", now=now0)
    targets = harness.policies(staging, production)
    first = (now0 + timedelta(hours=1)).replace(second=0, microsecond=0)
    targets["staging"]["windows"] = {
        "timezone": "Europe/Amsterdam",
        "once": [
            {"start": _local(first, "Europe/Amsterdam"), "duration": "1h"},
            {"start": _local(first + timedelta(days=1), "Europe/Amsterdam"), "duration": "2h"},
        ],
        "max_concurrent": 1,
        **staging_extra,
    }
    targets["production"]["windows"] = {
        "timezone": "America/New_York",
        "once": [
            {"start": _local(first + timedelta(days=2), "America/New_York"), "duration": "3h"}
        ],
        "emergency": {"approvers": [DAVE], "approver_groups": ["S0DBA"], "required": 2},
    }
    return targets


class Week:
    """Drives run_due with a fake clock: each pass runs at the instant the bot asked to be
    woken (or 15 minutes later at most, the poll), and records what started when."""

    def __init__(self, h: harness.Harness, now0: datetime) -> None:
        self.h, self.now = h, now0
        self.wakes: list[datetime] = []
        self.started: dict[int, datetime] = {}
        service = h.bot.service
        service.wake = lambda at=None: self.wakes.append(at) if at else None
        start = service.engine.start

        def recording(migration_id: int) -> None:
            self.started.setdefault(migration_id, self.now)
            start(migration_id)

        service.engine.start = recording  # type: ignore[method-assign]

    async def run(self, until: datetime) -> None:
        """Passes from now until ``until``."""
        while self.now < until:
            await self.h.bot.service.run_due(self.now)
            await self.h.bot.service.wait_idle()
            later = [w for w in self.wakes if w > self.now]
            self.now = min([*later, self.now + timedelta(minutes=15)])


def _notices(h: harness.Harness, migration_id: int) -> list[str]:
    """Every text queued for the migration's threads (in the outbox: notices queued at a fake
    future moment are delivered only when the real clock gets there)."""
    with h.bot.store.transaction() as conn:
        rows = conn.execute(
            select(outbox.c.payload, outbox.c.thread_key, outbox.c.message_key)
        ).all()
    return [
        str(r.payload.get("text", ""))
        for r in rows
        if r.thread_key in (f"approval:{migration_id}", f"progress:{migration_id}")
        or r.message_key.startswith(f"announce:{migration_id}:")
    ]


async def _approved(s: Service) -> Migration:
    """Tenant 3 to 7 on staging, requested by alice and approved by bob, as it is now."""
    m, _ = await s.request(
        ALICE, "tenant-consolidation", {"source_tenant": "3", "target_tenant": "7"}, "staging"
    )
    await s.approve(m.id, BOB, m.plan.hash)
    return s.store.get(m.id)


async def test_a_week_of_windows_on_two_targets(tmp_path: Path) -> None:
    """Runs start at the instant their window opens (woken for it, not polled), one at a time
    on staging in approval order, and on production in its own zone's window; reminders go
    24 h and 1 h before (none for a window less than an hour away); nothing starts outside a
    window."""
    now0 = harness.now()
    h = await harness.start(tmp_path, _targets(tmp_path, now0), poll_seconds=3600)
    try:
        s = h.bot.service
        first, _ = await s.request(
            ALICE, "tenant-consolidation", {"source_tenant": "3", "target_tenant": "7"}, "staging"
        )
        second, _ = await s.request(
            ALICE, "tenant-consolidation", {"source_tenant": "4", "target_tenant": "5"}, "staging"
        )
        prod, _ = await s.request(
            ALICE,
            "tenant-consolidation",
            {"source_tenant": "3", "target_tenant": "7"},
            "production",
        )
        await s.approve(second.id, BOB, second.plan.hash)  # approved first: goes first
        await s.approve(first.id, BOB, first.plan.hash)
        await s.approve(prod.id, BOB, prod.plan.hash)
        await s.approve(prod.id, DAVE, prod.plan.hash)
        week = Week(h, now0)
        await week.run(now0 + timedelta(days=7))
        await h.bot.delivery.drain()

        staging_open = s.store.get(first.id).due_at
        assert staging_open is not None
        assert week.started[second.id] == staging_open, "at the instant its window opened"
        assert staging_open < week.started[first.id] < staging_open + timedelta(hours=1)
        waits = [a for a in s.store.audit_trail(first.id) if a.action == "skip"]
        assert waits and "waits its turn" in waits[0].detail["reason"]
        prod_open = datetime.fromisoformat(
            _local(now0 + timedelta(hours=1, days=2), "America/New_York")
        ).replace(tzinfo=ZoneInfo("America/New_York"), second=0, microsecond=0)
        assert week.started[prod.id] == prod_open.astimezone(UTC)
        for m in (first, second, prod):
            assert s.store.get(m.id).state is State.SUCCEEDED
        assert sum("Reminder" in t for t in _notices(h, second.id)) == 0, "less than 1h away"
        reminders = [t for t in _notices(h, prod.id) if "Reminder" in t]
        assert len(reminders) == 2, reminders
        assert any("scheduled for <!date^" in t for t in _notices(h, prod.id))
        with s.store.transaction() as conn:
            told = {
                r.channel
                for r in conn.execute(select(outbox.c.channel, outbox.c.message_key))
                if r.message_key.startswith(f"announce:{prod.id}:")
            }
        assert told == {harness.MIGRATIONS}, "stakeholders hear it on the notify channel"
    finally:
        await h.close()


async def test_a_missed_window_moves_the_run_and_says_so(tmp_path: Path) -> None:
    """Back after the bot was down through most of its window, a run that no longer fits the
    rest is moved to the next window (and said so), and starts there; a reminder whose
    moment passed meanwhile is not sent late."""
    now0 = harness.now()
    h = await harness.start(tmp_path, _targets(tmp_path, now0), poll_seconds=3600)
    try:
        s = h.bot.service
        m = await _approved(s)
        due = m.due_at
        assert due is not None
        await s.run_due(due + timedelta(minutes=55))  # 5 minutes left; it needs 7.5
        await s.wait_idle()
        moved = s.store.get(m.id)
        assert moved.state is State.APPROVED
        assert moved.due_at == due + timedelta(days=1)
        await h.bot.delivery.drain()
        assert any("was moved to the window" in t for t in _notices(h, m.id))
        await s.run_due(moved.due_at - timedelta(hours=1, minutes=-30))  # 30 min late: dropped
        await s.run_due(moved.due_at)
        await s.wait_idle()
        await h.bot.delivery.drain()
        assert s.store.get(m.id).state is State.SUCCEEDED
        assert not [t for t in _notices(h, m.id) if t.startswith("Reminder")]
    finally:
        await h.close()


async def test_when_now_needs_the_emergency_policy_and_says_outside(tmp_path: Path) -> None:
    """when=now on a target with windows asks the emergency policy (two approvers) and runs
    at once; a target without an emergency policy refuses it; a bad when= says how."""
    now0 = harness.now()
    h = await harness.start(tmp_path, _targets(tmp_path, now0), poll_seconds=3600)
    try:
        s = h.bot.service
        params = {"source_tenant": "3", "target_tenant": "7"}
        with pytest.raises(Refused, match="no emergency approval policy"):
            await s.request(ALICE, "tenant-consolidation", params, "staging", when="now")
        with pytest.raises(UsageError, match="is not a time"):
            await s.request(ALICE, "tenant-consolidation", params, "staging", when="soon")
        m, _ = await s.request(ALICE, "tenant-consolidation", params, "production", when="now")
        await s.approve(m.id, CAROL, m.plan.hash)
        assert s.store.get(m.id).state is State.REQUESTED, "the emergency policy needs two"
        await s.approve(m.id, DAVE, m.plan.hash)
        await s.run_due(now0)
        await s.wait_idle()
        assert s.store.get(m.id).state is State.SUCCEEDED
        await h.bot.delivery.drain()
        assert any("outside the maintenance window" in t for t in _notices(h, m.id))
        runs = s.store.step_runs(m.id)
        assert "outside the maintenance window" in str(blocks.outcome(s.store.get(m.id), runs))
    finally:
        await h.close()


async def test_a_target_without_windows_runs_at_once(tmp_path: Path) -> None:
    """No windows: unchanged, an approved run starts at the next pass."""
    async with harness.running(tmp_path, "staging", poll_seconds=3600) as h:
        s = h.bot.service
        m = await _approved(s)
        await h.settle()
        got = s.store.get(m.id)
        assert got.state is State.SUCCEEDED and got.due_at is None


async def test_a_freeze_added_later_moves_the_run_after_it(tmp_path: Path) -> None:
    """A blackout configured after a run was scheduled (the bot restarted with it) moves the
    run to the next window after it, and its thread says so."""
    now0 = harness.now()
    targets = _targets(tmp_path, now0)
    h = await harness.start(tmp_path, targets, poll_seconds=3600)
    try:
        m = await _approved(h.bot.service)
        due = m.due_at
    finally:
        await h.close()
    assert due is not None
    freeze = {
        "from": _local(due - timedelta(hours=1), "Europe/Amsterdam"),
        "to": _local(due + timedelta(hours=2), "Europe/Amsterdam"),
        "reason": "freeze",
    }
    targets["staging"]["windows"]["blackouts"] = [freeze]
    h = await harness.start(tmp_path, targets, poll_seconds=3600)
    try:
        await h.bot.service.run_due(now0 + timedelta(minutes=1))
        moved = h.bot.store.get(m.id)
        assert moved.state is State.APPROVED and moved.due_at == due + timedelta(days=1)
        assert any("taken away" in t for t in _notices(h, m.id))
    finally:
        await h.close()


async def test_schedule_moves_a_run_and_keeps_its_approvals(tmp_path: Path) -> None:
    """/migrate schedule: the requester moves an approved run to the next day's window (its
    approval stands, its thread says so); someone else who is no approver is refused."""
    now0 = harness.now()
    h = await harness.start(tmp_path, _targets(tmp_path, now0), poll_seconds=3600)
    try:
        s = h.bot.service
        m = await _approved(s)
        due = m.due_at
        assert due is not None
        later = _local(due + timedelta(days=1), "Europe/Amsterdam")
        with pytest.raises(Refused, match="only the requester"):
            await windows.reschedule(s, m.id, DAVE, f"{later}")
        moved = await windows.reschedule(s, m.id, ALICE, later)
        assert moved.state is State.APPROVED and moved.due_at == due + timedelta(days=1)
        assert any("moved by <@U0ALICE>" in t for t in _notices(h, m.id))
        with pytest.raises(Refused, match="cannot move there"):
            await windows.reschedule(s, m.id, ALICE, _local(due + timedelta(days=3), "UTC"))
        listing = await windows.listing(s, "staging", now0)
        assert f"#{m.id}" in listing and "Europe/Amsterdam" in listing
    finally:
        await h.close()


async def test_overrun_lets_a_run_go_on_past_the_end_then_pauses_it(tmp_path: Path) -> None:
    """overrun:30m: a run still going at its window's end is left alone for 30 minutes, then
    asked to pause at its next boundary (and the scheduler is woken for that instant)."""
    now0 = harness.now()
    h = await harness.start(
        tmp_path, _targets(tmp_path, now0, on_window_end="overrun:30m"), poll_seconds=3600
    )
    try:
        s = h.bot.service
        m = await _approved(s)
        end = m.window_end
        assert end is not None
        running = s.store.transition(m.id, Event.START, actor="bot", now=now0, started_at=now0)
        assert windows.next_wake(s, end, [running]) == end + timedelta(minutes=30)
        windows.guard(s, running, end + timedelta(minutes=29))
        assert not s.store.get(m.id).pause_requested
        windows.guard(s, running, end + timedelta(minutes=30))
        assert s.store.get(m.id).pause_requested
        assert any("plus 30m overrun" in t for t in _notices(h, m.id))
    finally:
        await h.close()


async def test_a_run_found_running_after_its_window_pauses_instead(tmp_path: Path) -> None:
    """Back after a crash with its window over, a run the bot was running is not resumed
    outside a window: it is paused and placed in the next window that holds the rest."""
    now0 = harness.now()
    targets = _targets(tmp_path, now0)
    h = await harness.start(tmp_path, targets, poll_seconds=3600)
    try:
        m = await _approved(h.bot.service)
        due = m.due_at
        assert due is not None
        h.bot.store.transition(m.id, Event.START, actor="bot", now=now0, started_at=now0)
        # as if it had started in a window that ended a minute ago
        h.bot.store.set_fields(m.id, now0, window_end=now0 - timedelta(minutes=1))
    finally:
        await h.close()  # as a crash would leave it: running, no task
    h = await harness.start(tmp_path, targets, poll_seconds=3600)
    try:
        s = h.bot.service
        await h.bot.scheduler.run_pass()  # the start-up pass, on the real clock
        assert s.store.get(m.id).state is State.PAUSED, "not resumed outside a window"
        await s.run_due(harness.now())
        placed = s.store.get(m.id)
        assert placed.state is State.PAUSED and placed.due_at == due
        await s.run_due(due)
        await s.wait_idle()
        assert s.store.get(m.id).state is State.SUCCEEDED
    finally:
        await h.close()


async def test_when_names_a_window_at_the_request(tmp_path: Path) -> None:
    """when=<local time> on the request picks the window open then (the next day's here),
    and the approval schedules the run there."""
    now0 = harness.now()
    h = await harness.start(tmp_path, _targets(tmp_path, now0), poll_seconds=3600)
    try:
        s = h.bot.service
        second = (now0 + timedelta(days=1, hours=1, minutes=30)).replace(second=0, microsecond=0)
        m, _ = await s.request(
            ALICE,
            "tenant-consolidation",
            {"source_tenant": "3", "target_tenant": "7"},
            "staging",
            when=_local(second, "Europe/Amsterdam"),
        )
        assert any("once approved it runs in the window" in t for t in _notices(h, m.id))
        await s.approve(m.id, BOB, m.plan.hash)
        assert s.store.get(m.id).due_at == second
    finally:
        await h.close()
