"""The outbox: messages for Slack, written in the same transaction as the state they report.

A message has a key (e.g. ``progress:12``). The first send of a key posts a message; later sends
of the same key update it in place. A delivery that fails transiently is retried later, so a
Slack outage delays news and loses none.

A message's channel says which delivery takes it: a Slack channel id (the ``slack`` lane), or
``<lane>:<destination>`` for another one (``page:pagerduty`` is the pagers' lane, ``page``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from bot.adapters.store import Store
from bot.adapters.tables import outbox, slack_messages


@dataclass(frozen=True)
class Pending:
    """A message waiting to be delivered."""

    id: int
    key: str
    channel: str
    thread_key: str | None
    payload: dict[str, Any]
    attempts: int


def lane_of(channel: str) -> str:
    """The delivery lane a message's channel belongs to: ``slack`` for a Slack channel id,
    else the part before the first colon (``page:pagerduty`` → ``page``)."""
    return channel.split(":", 1)[0] if ":" in channel else "slack"


class Outbox:
    """Queue of Slack messages in the state database."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(
        self,
        key: str,
        channel: str,
        payload: dict[str, Any],
        now: datetime,
        *,
        thread_key: str | None = None,
    ) -> None:
        """Queue ``payload`` (text and blocks) for ``channel`` under ``key``."""
        with self._store.transaction() as conn:
            conn.execute(
                insert(outbox).values(
                    message_key=key,
                    channel=channel,
                    thread_key=thread_key,
                    payload=payload,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                )
            )

    def put_once(
        self,
        key: str,
        channel: str,
        payload: dict[str, Any],
        now: datetime,
        *,
        thread_key: str | None = None,
    ) -> bool:
        """Queue ``payload`` under ``key`` unless that key was ever queued (an event that
        must be sent once); return whether it was queued."""
        with self._store.transaction() as conn:
            found = conn.execute(
                select(outbox.c.id).where(outbox.c.message_key == key).limit(1)
            ).first()
            if found is not None:
                return False
            self.put(key, channel, payload, now, thread_key=thread_key)
            return True

    def keys(self, prefix: str) -> list[str]:
        """The keys ever queued that start with ``prefix``, oldest first."""
        with self._store.transaction() as conn:
            rows = conn.execute(
                select(outbox.c.message_key)
                .where(outbox.c.message_key.startswith(prefix, autoescape=True))
                .order_by(outbox.c.id)
            ).all()
        return list(dict.fromkeys(r.message_key for r in rows))

    def due(
        self,
        now: datetime,
        limit: int = 50,
        *,
        lane: str = "slack",
        held: frozenset[str] = frozenset(),
    ) -> list[Pending]:
        """Unsent messages of ``lane`` due now, in order of their key's first queued version,
        but for the keys in ``held`` (updates the delivery holds back for now).

        Of several versions queued for one key only the newest is sent (the older ones are
        marked superseded): an update in place needs only the latest content. A reply waits
        while the message it threads under has not been posted yet.
        """
        with self._store.transaction() as conn:
            rows = conn.execute(
                select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id)
            ).all()
            first: dict[str, int] = {}
            newest: dict[str, Any] = {}
            for row in rows:
                first.setdefault(row.message_key, row.id)
                newest[row.message_key] = row
            stale = [r.id for r in rows if newest[r.message_key].id != r.id]
            if stale:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(stale))
                    .values(sent_at=now, last_error="superseded")
                )
            parents = {r.thread_key for r in newest.values() if r.thread_key in newest}
            posted = (
                set(
                    conn.execute(
                        select(slack_messages.c.message_key).where(
                            slack_messages.c.message_key.in_(parents)
                        )
                    ).scalars()
                )
                if parents
                else set()
            )
        ready = [
            r
            for key, r in sorted(newest.items(), key=lambda kv: first[kv[0]])
            if r.next_attempt_at <= now
            and lane_of(r.channel) == lane
            and key not in held
            and not (r.thread_key and r.thread_key in newest and r.thread_key not in posted)
        ]
        return [
            Pending(r.id, r.message_key, r.channel, r.thread_key, dict(r.payload), r.attempts)
            for r in ready[:limit]
        ]

    def sent(self, item: Pending, channel: str, ts: str, now: datetime) -> None:
        """Mark ``item`` delivered and remember where its message lives."""
        with self._store.transaction() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item.id).values(sent_at=now))
            conn.execute(delete(slack_messages).where(slack_messages.c.message_key == item.key))
            conn.execute(
                insert(slack_messages).values(message_key=item.key, channel=channel, ts=ts)
            )

    def delivered(self, item: Pending, now: datetime) -> None:
        """Mark ``item`` delivered somewhere that keeps no place for it (not a Slack message)."""
        with self._store.transaction() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item.id).values(sent_at=now))

    def failed(
        self, item: Pending, error: str, now: datetime, *, retry_in: timedelta | None
    ) -> None:
        """Record a failed delivery; retry after ``retry_in``, or give up when it is None."""
        values: dict[str, Any] = {"attempts": item.attempts + 1, "last_error": error[:2000]}
        if retry_in is None:
            values["sent_at"] = now
        else:
            values["next_attempt_at"] = now + retry_in
        with self._store.transaction() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item.id).values(**values))

    def location(self, key: str) -> tuple[str, str] | None:
        """Where the message with ``key`` was posted: (channel, ts), if it was."""
        with self._store.transaction() as conn:
            row = conn.execute(
                select(slack_messages).where(slack_messages.c.message_key == key)
            ).first()
            return None if row is None else (row.channel, row.ts)

    def unsent(self, keys: set[str]) -> set[str]:
        """Which of ``keys`` have a version queued and not sent yet."""
        with self._store.transaction() as conn:
            rows = conn.execute(
                select(outbox.c.message_key)
                .where(outbox.c.sent_at.is_(None), outbox.c.message_key.in_(keys))
                .distinct()
            ).scalars()
            return set(rows)

    def known(self, key: str) -> bool:
        """Whether a message with ``key`` was ever queued (sent or not)."""
        with self._store.transaction() as conn:
            row = conn.execute(
                select(outbox.c.id).where(outbox.c.message_key == key).limit(1)
            ).first()
            return row is not None

    def undelivered(self, lane: str | None = None) -> int:
        """How many messages are still waiting (of ``lane``, if given)."""
        with self._store.transaction() as conn:
            rows = conn.execute(select(outbox.c.channel).where(outbox.c.sent_at.is_(None))).all()
        return sum(1 for r in rows if lane is None or lane_of(r.channel) == lane)

    def waiting(self, lane: str) -> list[Pending]:
        """Every unsent message of ``lane``, due or not, oldest first."""
        with self._store.transaction() as conn:
            rows = conn.execute(
                select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id)
            ).all()
        return [
            Pending(r.id, r.message_key, r.channel, r.thread_key, dict(r.payload), r.attempts)
            for r in rows
            if lane_of(r.channel) == lane
        ]
