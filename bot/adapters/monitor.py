"""The blocking monitor: while a run is active, polls its target's blocking view on a
connection of its own and acts on what bot.domain.blocking decides.

Each poll's rows become ``Wait``s; the run's own sessions are those its batch transactions
have registered on the run's Throttle (bot.domain.control.Control). What the domain decides
is carried out here: the automatic throttle level is set on the run's Throttle, each episode's
one message is posted and then updated in place in the run's thread, and at the limit the run
is asked to pause at its next boundary (the same Control a person's pause uses), the pause is
recorded and the on-call is paged. When the run stops, its open episodes are closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from bot.adapters.targets.dialect import error_message
from bot.adapters.targets.target import Target
from bot.domain import paging
from bot.domain.blocking import (
    Decision,
    Episode,
    MonitorSettings,
    MonitorState,
    Wait,
    close_all,
    episode_text,
    observe,
)
from bot.domain.control import Control
from bot.domain.ports import Clock, Notifier, Pager, Store
from bot.domain.progress import LiveProgress
from bot.domain.records import Migration
from bot.errors import StateUnavailable

logger = logging.getLogger(__name__)
# the step kinds whose single statements may report their progress (SQL Server)
STATEMENT_KINDS = frozenset({"backup", "restore", "sql"})
STATEMENT_MARK = "⏳ "  # marks the lines this monitor put in a step's live lines


@dataclass(frozen=True)
class Watched:
    """A target the monitor may watch, with its settings."""

    target: Target
    settings: MonitorSettings


def wait_from_row(row: Mapping[str, Any]) -> Wait:
    """One row of a dialect's blocking query (``blocking_sessions_sql``) as a Wait; columns a
    dialect lacks, or that are NULL, are empty."""

    def word(name: str) -> str:
        value = row.get(name)
        return "" if value is None else str(value).strip()

    return Wait(
        session=int(row["session_id"]),
        blocker=int(row["blocking_session_id"]),
        wait_type=word("wait_type"),
        wait_ms=max(0, int(row.get("wait_time") or 0)),
        command=word("command"),
        statement=word("sql_text"),
        blocker_login=word("blocker_login"),
        blocker_host=word("blocker_host"),
        blocker_program=word("blocker_program"),
        blocker_statement=word("blocker_sql_text"),
    )


def statement_progress(row: Mapping[str, Any], now: datetime) -> str:
    """One row of ``statement_progress_sql`` (SQL Server) as a line for the progress
    message: "BACKUP DATABASE: 42% done, about 3 min left (session 57)"."""
    percent = float(row.get("percent_complete") or 0)
    left_ms = int(row.get("estimated_completion_time") or 0)
    line = f"{str(row.get('command') or '').strip()}: {int(percent)}% done"
    if left_ms > 0:
        left = timedelta(milliseconds=left_ms)
        minutes = left.total_seconds() / 60
        line += f", about {minutes:.0f} min left" if minutes >= 1 else ", under a minute left"
    return f"{line} (session {row.get('session_id')})"


def show_statements(live: LiveProgress, lines: list[str]) -> None:
    """Put the long statements' progress ``lines`` in ``live``'s lines, in place of the
    previous poll's (the step's other lines are kept)."""
    kept = [line for line in live.tail if not line.startswith(STATEMENT_MARK)]
    live.tail.clear()
    live.tail.extend(
        [*kept, *(STATEMENT_MARK + line for line in lines)][-(live.tail.maxlen or 8) :]
    )


class Poller:
    """Runs the blocking query on one connection of its own, opened at the first poll and
    again after an error. Blocking; call it in a thread."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._conn: Connection | None = None

    def poll(self) -> list[Wait]:
        """The blocked sessions of the target now; raises SQLAlchemyError when it fails."""
        sql = self.target.dialect.blocking_sessions_sql()
        if sql is None:
            return []
        return [wait_from_row(r) for r in self._rows(sql)]

    def statements(self, now: datetime) -> list[str]:
        """Progress lines of long single statements (SQL Server), else none."""
        sql = self.target.dialect.statement_progress_sql()
        return [statement_progress(r, now) for r in self._rows(sql)] if sql else []

    def _rows(self, sql: str) -> list[Mapping[str, Any]]:
        if self._conn is None:
            self._conn = self.target.engine.connect()
        try:
            rows: list[Mapping[str, Any]] = [
                dict(r) for r in self._conn.execute(text(sql)).mappings()
            ]
            self._conn.rollback()  # the activity views are a snapshot per transaction
            return rows
        except SQLAlchemyError:
            self.close()
            raise

    def close(self) -> None:
        """Give the connection back."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except SQLAlchemyError:
                logger.debug("monitor connection could not be closed", exc_info=True)


class BlockingMonitor:
    """The engine's Watcher: one watch per active run, on that run's target."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Clock,
        targets: Mapping[str, Watched],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.targets = targets
        self.on_change = on_change
        self._failing: set[int] = set()  # runs whose last blocking poll failed

    async def watch(
        self,
        migration_id: int,
        control: Control,
        pager: Pager,
        live: Callable[[], LiveProgress | None] = lambda: None,
    ) -> None:
        """Poll the run's target until cancelled (when the run stops); a failed poll is
        logged and the next one tries again. On SQL Server, the progress of a long single
        statement (backup, restore, index build) is shown in ``live()``'s lines."""
        m = await asyncio.to_thread(self.store.get, migration_id)
        watched = self.targets.get(m.target)
        if watched is None or not watched.settings.enabled:
            return
        if watched.target.dialect.blocking_sessions_sql() is None:
            return  # SQLite: no session views, nothing to watch
        settings = watched.settings
        control.throttle.max_wait_seconds = settings.max_wait_seconds
        poller, state = Poller(watched.target), MonitorState()
        try:
            while True:
                state = await self._poll(m, poller, state, control, pager, settings, live())
                await self._statements(m, poller, live())
                await asyncio.sleep(settings.poll_seconds)
        finally:
            control.throttle.auto = 0.0
            ended = close_all(state, self.clock())
            try:
                if ended:
                    await asyncio.to_thread(self._post, m, ended, None, None, None)
                    self.on_change()
            finally:
                await asyncio.to_thread(poller.close)

    async def _poll(
        self,
        m: Migration,
        poller: Poller,
        state: MonitorState,
        control: Control,
        pager: Pager,
        settings: MonitorSettings,
        live: LiveProgress | None,
    ) -> MonitorState:
        try:
            waits = await asyncio.to_thread(poller.poll)
        except SQLAlchemyError as exc:  # said once per outage, not at every poll
            log = logger.debug if m.id in self._failing else logger.warning
            log("migration %s: blocking poll failed: %s", m.id, error_message(exc))
            self._failing.add(m.id)
            return state
        if m.id in self._failing:
            self._failing.discard(m.id)
            logger.info("migration %s: blocking polls work again", m.id)
        decision = observe(state, waits, control.throttle.own(), self.clock(), settings)
        control.throttle.auto = decision.throttle
        if decision.pause:
            control.pause.set()
        if decision.changed or decision.pause:
            try:
                await asyncio.to_thread(self._post, m, decision.changed, decision, pager, live)
            except StateUnavailable:  # the store logs it; the next poll decides (and pages) again
                return state
            self.on_change()
        return decision.state

    async def _statements(self, m: Migration, poller: Poller, live: LiveProgress | None) -> None:
        """Show the long statements' progress in the running step's lines (SQL Server)."""
        if live is None or live.kind not in STATEMENT_KINDS:
            return
        if poller.target.dialect.statement_progress_sql() is None:
            return
        try:
            lines = await asyncio.to_thread(poller.statements, self.clock())
        except SQLAlchemyError as exc:
            logger.warning("migration %s: progress poll failed: %s", m.id, error_message(exc))
            return
        show_statements(live, lines)

    def _post(
        self,
        m: Migration,
        episodes: tuple[Episode, ...],
        decision: Decision | None,
        pager: Pager | None,
        live: LiveProgress | None,
    ) -> None:
        """Post or update each episode's message; at the limit record the pause and page."""
        now = self.clock()
        with self.store.transaction():
            for episode in episodes:
                self.notifier.episode(m, episode.key, episode_text(m.id, episode, now), now)
            if decision is None or decision.pause is None or pager is None:
                return
            blocking = decision.state.open.get("blocking")
            waits = blocking.waits if blocking else ()
            details: dict[str, Any] = {
                **paging.details(m, self.store.step_runs(m.id)),
                "why": decision.pause,
                "blocked_sessions": [w.session for w in waits],
                "statements": [w.statement[:200] for w in waits],
            }
            if live is not None:
                details.update(step=f"{live.step_index}. {live.step_name}", rows=live.rows)
            current = self.store.set_fields(m.id, now, pause_requested=True)
            self.store.audit(m.id, "bot", "blocking-pause", details, now)
            pager.trigger(current, f"#{m.id} paused: {decision.pause}", details, now)
        logger.warning("migration %s: %s", m.id, decision.pause)
