"""The loop every outbox delivery runs: a pass whenever it is kicked (from any thread), and
every so often anyway, to retry what failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.errors import StateUnavailable

logger = logging.getLogger(__name__)


class DeliveryLoop:
    """Base of a delivery: subclasses give ``drain`` (one pass) and may shorten the wait
    between passes with ``_idle``."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # set once run_forever runs

    async def drain(self) -> int:
        """One delivery pass; returns how many messages were sent."""
        raise NotImplementedError

    def _idle(self, idle_seconds: float) -> float:
        """How long to wait for a kick before the next pass."""
        return idle_seconds

    def kick(self) -> None:
        """Ask the delivery loop to run now; safe to call from any thread."""
        loop = self._loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or loop is here:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run_forever(self, idle_seconds: float = 5.0) -> None:
        """Deliver whenever kicked, and every ``idle_seconds`` to retry failures."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await self.drain()
            except StateUnavailable:  # the store logs the outage; the next pass tries again
                pass
            except Exception:
                logger.exception("%s pass failed", type(self).__name__)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation that stops this loop when the wake-up lands at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle(idle_seconds)):
                    await self._wake.wait()
            self._wake.clear()
