"""The scheduler wrapper: passes never overlap, no wake-up is lost, and a wake runs a pass
without waiting for the poll interval."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.adapters.scheduler import Scheduler

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Recorder:
    """A run_due that records its calls and can be held inside a pass."""

    def __init__(self) -> None:
        self.calls: list[datetime] = []
        self.inside = 0
        self.most_inside = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, now: datetime) -> None:
        self.calls.append(now)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        self.entered.set()
        await self.release.wait()
        self.inside -= 1


async def test_a_pass_asked_for_during_a_pass_runs_after_it_never_beside_it() -> None:
    """Two callers arriving while a pass runs share one more pass, which starts after the
    running one ends; each returns only once a pass begun after its call has finished."""
    run_due = Recorder()
    scheduler = Scheduler(run_due, lambda: T0, poll_seconds=3600)
    run_due.release.clear()
    first = asyncio.create_task(scheduler.run_pass())
    await run_due.entered.wait()
    second = asyncio.create_task(scheduler.run_pass())
    third = asyncio.create_task(scheduler.run_pass())
    await asyncio.sleep(0)
    assert not second.done() and len(run_due.calls) == 1
    run_due.release.set()
    await asyncio.gather(first, second, third)
    assert len(run_due.calls) == 2 and run_due.most_inside == 1


async def test_wake_runs_a_pass_at_once_and_wake_at_runs_one_then() -> None:
    """With an hour between polls, wake() and wake(at) still get their passes."""
    run_due = Recorder()
    scheduler = Scheduler(run_due, lambda: datetime.now(UTC), poll_seconds=3600)
    scheduler.start()
    try:
        scheduler.wake()
        async with asyncio.timeout(5):
            await run_due.entered.wait()
        run_due.entered.clear()
        at = datetime.now(UTC) + timedelta(milliseconds=300)
        scheduler.wake(at)
        async with asyncio.timeout(5):
            await run_due.entered.wait()
        assert run_due.calls[-1] >= at
    finally:
        scheduler.shutdown()
