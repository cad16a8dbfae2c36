"""Slack adapters: the notifier (renders into the outbox), the outbox's delivery over the Web
API (post, then update in place), and user-group membership for approval policies."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters import blocks
from bot.adapters.delivery_loop import DeliveryLoop
from bot.adapters.outbox import Outbox, Pending
from bot.domain.approval import ApprovalPolicy, PriorApproval
from bot.domain.lifecycle import State
from bot.domain.ports import Clock
from bot.domain.progress import LiveProgress
from bot.domain.records import AuditEntry, Migration, StepRun
from bot.errors import BarqError, ConfigError, DirectoryUnavailable

logger = logging.getLogger(__name__)

# Errors that retrying cannot fix: the message is dropped with a log line.
_PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_arguments",
        "msg_too_long",
        "no_text",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "missing_scope",
    }
)
# The answers of usergroups.users.list for a user group that does not exist.
_NO_GROUP = frozenset({"no_such_subteam", "subteam_not_found"})


def web_client(token: str, base_url: str) -> AsyncWebClient:
    """A Web API client that waits out 429s (Retry-After) and retries dropped connections."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


class SlackNotices:
    """The Notifier port: renders messages and queues them in the outbox.

    Stakeholder notices about a migration go to its target's notify channel
    (``target_channels``, else ``notify_channel``); its approval request to the approvals
    channel. Every message about a migration passes through :func:`blocks.about` (an
    out-of-window run says so in each)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        approvals_channel: str,
        notify_channel: str,
        target_channels: Mapping[str, str] | None = None,
    ) -> None:
        self.outbox = outbox
        self.approvals_channel = approvals_channel
        self.notify_channel = notify_channel or approvals_channel
        self.target_channels = {t: c for t, c in (target_channels or {}).items() if c}

    def channel_of(self, target: str) -> str:
        """The notify channel of ``target``: its own, else the global one."""
        return self.target_channels.get(target, self.notify_channel)

    def _put(
        self,
        m: Migration,
        key: str,
        channel: str,
        message: blocks.Message,
        now: datetime,
        *,
        thread_key: str | None = None,
    ) -> None:
        """Queue ``message`` about ``m``. A reply goes to the thread ``thread_key`` wherever
        that message was posted, and an update to where its first version went (the
        delivery sees to both), so a change of channel never splits a run's messages."""
        self.outbox.put(key, channel, blocks.about(m, message), now, thread_key=thread_key)

    def approval(
        self,
        m: Migration,
        approvals: list[PriorApproval],
        policy: ApprovalPolicy,
        decided: AuditEntry | None = None,
    ) -> None:
        """Post or refresh the approval request of ``m`` (with who ``decided`` it, if told).

        Once ``m`` is approved, its one message in the notify channel is posted (the stage
        "approved"; the same message then shows it running, finished, failed), and any later
        decision before its start (cancelled, expired, held for a fresh approval) refreshes
        it."""
        message = blocks.approval_request(m, approvals, policy, decided)
        self._put(m, f"approval:{m.id}", self.approvals_channel, message, m.updated_at)
        key = f"progress:{m.id}"
        if m.started_at is None and (m.state is State.APPROVED or self.outbox.known(key)):
            notice = blocks.progress(m, [], m.updated_at, None)
            self._put(m, key, self.channel_of(m.target), notice, m.updated_at)

    def progress(
        self, m: Migration, runs: list[StepRun], now: datetime, live: LiveProgress | None
    ) -> None:
        """Post or refresh the one progress message of ``m``."""
        message = blocks.progress(m, runs, now, live)
        self._put(m, f"progress:{m.id}", self.channel_of(m.target), message, now)

    def outcome(self, m: Migration, runs: list[StepRun], now: datetime) -> None:
        """Post the final report in the thread of the progress message."""
        self._put(
            m,
            f"outcome:{m.id}",
            self.channel_of(m.target),
            blocks.outcome(m, runs),
            now,
            thread_key=f"progress:{m.id}",
        )

    def notice(self, m: Migration, text: str, now: datetime) -> None:
        """Post ``text`` in the thread of ``m`` (its progress message once it has started,
        else its approval request); the same text again updates that reply in place."""
        key = f"notice:{m.id}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        thread, channel = (
            (f"progress:{m.id}", self.channel_of(m.target))
            if m.started_at
            else (f"approval:{m.id}", self.approvals_channel)
        )
        self._put(m, key, channel, blocks.notice(text), now, thread_key=thread)

    def episode(self, m: Migration, key: str, text: str, now: datetime) -> None:
        """Post ``text`` in the thread of the progress message of ``m`` as episode
        ``key``'s one reply; later texts of the same key update that reply in place."""
        self._put(
            m,
            f"episode:{m.id}:{key}",
            self.channel_of(m.target),
            blocks.notice(text),
            now,
            thread_key=f"progress:{m.id}",
        )

    def announce(self, m: Migration, text: str, now: datetime) -> None:
        """Post ``text`` about ``m`` in its target's notify channel, for the stakeholders (a
        window it is scheduled in, a reminder, a move); the same text again updates that
        message."""
        key = f"announce:{m.id}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        self._put(m, key, self.channel_of(m.target), blocks.notice(text), now)


class Delivery(DeliveryLoop):
    """Sends what the outbox holds; posts a key's first message and updates it afterwards.

    Updates of one message are coalesced: a message is updated at most once per
    ``update_every`` seconds (by ``clock``), with the newest content queued by then; what is
    queued meanwhile waits (the outbox keeps only the newest version of a key), so a run's
    progress never floods a channel and its final state is always the last one sent. Rate
    limits (HTTP 429) are waited out by the client's retry handlers (:func:`web_client`)."""

    def __init__(
        self,
        outbox: Outbox,
        client: AsyncWebClient,
        clock: Clock,
        *,
        update_every: float = 3.0,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.clock = clock
        self.update_every = timedelta(seconds=update_every)
        self._last_sent: dict[str, datetime] = {}  # message key -> when it was last sent
        self._next_due: datetime | None = None  # the earliest update held back, if any
        super().__init__()

    def _idle(self, idle_seconds: float) -> float:
        """How long to wait for a kick: ``idle_seconds``, or less when an update held back
        by coalescing falls due sooner."""
        if self._next_due is None:
            return idle_seconds
        until = (self._next_due - self.clock()).total_seconds()
        return min(idle_seconds, max(0.01, until))

    def _first_held(self) -> datetime | None:
        """When the first update held back (queued, not sent) falls due, if any."""
        held = {k for k in self._last_sent if self.held_until(k) is not None}
        waiting = self.outbox.unsent(held) if held else set()
        times = [at for k in waiting if (at := self.held_until(k)) is not None]
        return min(times, default=None)

    def held_until(self, key: str) -> datetime | None:
        """Until when an update of message ``key`` is held back (None: it may go now)."""
        last = self._last_sent.get(key)
        if last is None or self.clock() - last >= self.update_every:
            return None
        return last + self.update_every

    async def drain(self, *, hold: bool = True) -> int:
        """One delivery pass; returns how many messages were sent. Updates held back by
        coalescing stay queued (the delivery loop wakes when the first falls due), unless
        ``hold`` is False (the last pass before the bot stops sends them all)."""
        async with self._lock:
            if not hold:
                self._last_sent.clear()
            self._next_due = None
            now = self.clock()
            self._last_sent = {
                k: at for k, at in self._last_sent.items() if now - at < self.update_every
            }
            sent = 0
            while True:  # again while a pass made progress: replies wait for their parents
                held = frozenset(k for k in self._last_sent if self.held_until(k) is not None)
                batch = await asyncio.to_thread(self.outbox.due, self.clock(), held=held)
                delivered = [item for item in batch if await self._deliver(item)]
                sent += len(delivered)
                if not delivered:
                    self._next_due = await asyncio.to_thread(self._first_held)
                    return sent

    async def _deliver(self, item: Pending) -> bool:
        where = await asyncio.to_thread(self.outbox.location, item.key)
        try:
            if where is not None:
                response = await self.client.chat_update(
                    channel=where[0], ts=where[1], **item.payload
                )
            else:
                channel, thread = item.channel, None
                if item.thread_key:  # a reply goes where its parent was posted
                    located = await asyncio.to_thread(self.outbox.location, item.thread_key)
                    if located is not None:
                        channel, thread = located
                response = await self.client.chat_postMessage(
                    channel=channel, thread_ts=thread, **item.payload
                )
        except SlackApiError as exc:
            return await self._failed(item, str(exc.response.get("error", exc)))
        except (OSError, TimeoutError) as exc:
            return await self._failed(item, f"{type(exc).__name__}: {exc}")
        self._last_sent[item.key] = self.clock()
        await asyncio.to_thread(
            self.outbox.sent, item, str(response["channel"]), str(response["ts"]), self.clock()
        )
        return True

    async def _failed(self, item: Pending, error: str) -> bool:
        permanent = error in _PERMANENT
        retry = None if permanent else timedelta(seconds=min(300, 2 ** min(item.attempts, 8)))
        log = logger.error if permanent else logger.warning
        log("slack message %s not delivered (%s)%s", item.key, error, "" if retry else "; dropped")
        await asyncio.to_thread(self.outbox.failed, item, error, self.clock(), retry_in=retry)
        return False


class SlackDirectory:
    """The Directory port over usergroups.users.list; a group's members are cached for
    ``ttl`` seconds. A lookup that fails raises (and is not cached): nobody is told they are
    not an approver because Slack could not answer."""

    def __init__(self, client: AsyncWebClient, ttl: float = 60.0, timeout: float = 10.0) -> None:
        self.client = client
        self.ttl = ttl
        self.timeout = timeout  # seconds one lookup may take, its retries included
        self._cache: dict[str, tuple[float, set[str]]] = {}

    async def groups_of(self, user: str, groups: list[str]) -> set[str]:
        """Which of ``groups`` have ``user`` as a member. Raises DirectoryUnavailable when
        Slack cannot list a group now, ConfigError when a group does not exist or may not be
        read."""
        member_of: set[str] = set()
        for group in groups:
            if user in await self._members(group):
                member_of.add(group)
        return member_of

    async def _members(self, group: str) -> set[str]:
        cached = self._cache.get(group)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            raise _lookup_error(group, str(exc.response.get("error", exc))) from exc
        except TimeoutError as exc:
            raise _lookup_error(group, f"no answer within {self.timeout:g} s") from exc
        except (OSError, aiohttp.ClientError) as exc:
            raise _lookup_error(group, f"{type(exc).__name__}: {exc}") from exc
        members: set[str] = set(response.get("users", []))
        self._cache[group] = (time.monotonic(), members)
        return members


def _lookup_error(group: str, error: str) -> BarqError:
    """The error to raise for a failed member lookup of ``group``, logged once here."""
    logger.error("cannot list members of user group %s: %s", group, error)
    if error in _NO_GROUP:
        return ConfigError(
            f"the approver group {group} does not exist in this Slack workspace; an admin must"
            " fix approver_groups in the target's approval policy"
        )
    if error in _PERMANENT:
        return ConfigError(
            f"the bot may not list the members of approver group {group} (Slack: {error}); an"
            " admin must fix the bot's Slack app (it needs the usergroups:read scope)"
        )
    return DirectoryUnavailable(group, error)
