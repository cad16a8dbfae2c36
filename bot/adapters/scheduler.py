"""The scheduler: APScheduler 3 wakes the bot, and its only job is ``run_due(now)``.

Passes never overlap. A wake-up that arrives while a pass runs is not lost: the running pass
is followed by one more, so an approval given in the middle of a pass starts its run at once.
What is due, and why something waits, is decided by the service from the state database;
the scheduler only decides when to ask.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.domain.ports import Clock

logger = logging.getLogger(__name__)

RunDue = Callable[[datetime], Awaitable[None]]


class Scheduler:
    """Runs ``run_due(clock())`` every ``poll_seconds`` and whenever it is woken."""

    def __init__(self, run_due: RunDue, clock: Clock, *, poll_seconds: float) -> None:
        self._run_due = run_due
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._aps = AsyncIOScheduler()
        self._lock = asyncio.Lock()
        self._again = False

    @property
    def running(self) -> bool:
        """Whether the scheduler has started and not shut down."""
        return bool(self._aps.running)

    def start(self) -> None:
        """Start polling (the first poll is one interval away; call ``run_pass`` or ``wake``
        for one now)."""
        self._aps.add_job(
            self.run_pass,
            "interval",
            seconds=self._poll_seconds,
            id="poll",
            coalesce=True,
            max_instances=1,
        )
        self._aps.start()

    def wake(self, at: datetime | None = None) -> None:
        """Ask for a pass now, or at ``at`` (an aware datetime); call on the event loop."""
        self._aps.add_job(
            self.run_pass,
            "date",
            run_date=at,
            id=f"wake-{at.isoformat()}" if at else "wake-now",
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def run_pass(self) -> None:
        """Return once a pass of ``run_due`` that began after this call has finished.

        If a pass is running, it runs once more, and callers that arrive meanwhile share
        that one; passes never overlap."""
        self._again = True
        async with self._lock:
            while self._again:
                self._again = False
                await self._run_due(self._clock())

    def shutdown(self) -> None:
        """Stop waking the bot (a pass already running finishes on its own)."""
        if self._aps.running:
            self._aps.shutdown(wait=False)
