"""Paging the emergency contacts: the Pager port over the outbox, and the delivery of pages.

``OutboxPager`` queues one outbox message per event and per pager service of the target's
contacts (PagerDuty, Opsgenie, a webhook), in the transaction of the state change it reports;
Slack contacts are mentioned in the run's thread. Keys make each event once: the same failure
paged twice is queued once, and every service groups a migration's events under its dedup key
(PagerDuty ``dedup_key``, Opsgenie ``alias``), so retries make one incident. Events of one
migration and service go out in order (each waits for the one before it).

``PageDelivery`` sends them: 429 and 5xx (and dropped connections) are retried with backoff,
after Retry-After when given; other refusals are dropped with an error in the log. When no
page has gone out for two minutes while pages wait, the bot says so loudly in the notify
channel of each target whose pages wait, mentioning the contacts, once per outage. Secrets
are read from the configuration at send time and never queued, logged or shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from bot.adapters import blocks
from bot.adapters.delivery_loop import DeliveryLoop
from bot.adapters.outbox import Outbox, Pending
from bot.adapters.pagers import HttpRequest, opsgenie, pagerduty, statuspage, webhook
from bot.domain.ports import Clock, Notifier
from bot.domain.records import Migration
from bot.settings import Contacts, StatusPageConfig

logger = logging.getLogger(__name__)

LANE = "page"
NAMES = {
    "pagerduty": "PagerDuty",
    "opsgenie": "Opsgenie",
    "webhook": "the webhook",
    "statuspage": "the status page",
}
_CONTACTS = ("pagerduty", "opsgenie", "webhook")
ContactsFor = Callable[[str], Contacts]


def mentions(who: list[str]) -> str:
    """Slack mentions of users (``U…``, ``W…``) and user groups (``S…``)."""
    return " ".join(f"<!subteam^{w}>" if w.startswith("S") else f"<@{w}>" for w in who)


def _services(contacts: Contacts) -> list[str]:
    return [name for name in _CONTACTS if getattr(contacts, name) is not None]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class OutboxPager:
    """The Pager port: queues page events in the outbox (called inside the state change's
    transaction, as the Notifier is)."""

    def __init__(
        self,
        outbox: Outbox,
        contacts_for: ContactsFor,
        production: Callable[[str], bool],
        notifier: Notifier,
        *,
        status_page: StatusPageConfig | None = None,
    ) -> None:
        self.outbox = outbox
        self.contacts_for = contacts_for
        self.production = production
        self.notifier = notifier
        self.status_page = status_page  # told of production runs only

    def _services_for(self, target: str) -> list[str]:
        """The services paged for ``target``: its contacts', and the status page's for a
        production target."""
        services = _services(self.contacts_for(target))
        if self.status_page is not None and self.production(target):
            services.append("statuspage")
        return services

    def trigger(self, m: Migration, reason: str, details: dict[str, Any], now: datetime) -> None:
        """Page the contacts of ``m``'s target; the same ``reason`` again adds nothing."""
        contacts = self.contacts_for(m.target)
        for service in self._services_for(m.target):
            self._queue(service, m, "trigger", _digest(reason), reason, details, now)
        if contacts.slack:
            self.notifier.notice(
                m, f":rotating_light: {mentions(contacts.slack)}: you are paged. {reason}", now
            )

    def acknowledge(self, m: Migration, user: str, now: datetime) -> None:
        """Acknowledge the open incident of ``m`` (once per incident)."""
        for service in self._services_for(m.target):
            triggers = self.outbox.keys(self._prefix(service, m, "trigger"))
            if triggers and not self.outbox.keys(self._prefix(service, m, "resolve")):
                episode = str(len(triggers))
                summary = f"acknowledged by {user} in Slack"
                self._queue(service, m, "acknowledge", episode, summary, {}, now, user=user)

    def resolve(self, m: Migration, why: str, now: datetime) -> None:
        """Resolve the incident of ``m``, if it was ever paged."""
        for service in self._services_for(m.target):
            if self.outbox.keys(self._prefix(service, m, "trigger")):
                self._queue(service, m, "resolve", "", why, {}, now)

    def change(self, m: Migration, summary: str, now: datetime) -> None:
        """A change event, for production targets only, to the services that take them."""
        if not self.production(m.target):
            return
        for service in self._services_for(m.target):
            if service != "opsgenie":
                self._queue(service, m, "change", _digest(summary), summary, {}, now)

    @staticmethod
    def _prefix(service: str, m: Migration, action: str) -> str:
        return f"{LANE}:{service}:{m.id}:{action}"

    def _queue(
        self,
        service: str,
        m: Migration,
        action: str,
        suffix: str,
        summary: str,
        details: dict[str, Any],
        now: datetime,
        *,
        user: str | None = None,
    ) -> None:
        key = self._prefix(service, m, action) + (f":{suffix}" if suffix else "")
        earlier = self.outbox.keys(f"{LANE}:{service}:{m.id}:")
        event = {
            "service": service,
            "action": action,
            "event_id": key,
            "dedup_key": m.run_key,
            "migration": {
                "id": m.id,
                "runbook": m.runbook,
                "args": m.plan.args(),
                "target": m.target,
                "production": self.production(m.target),
                "requester": m.requester,
                "state": m.state.value,
                "rollback_of": m.rollback_of,
                "outside_window": blocks.outside_window(m),
            },
            "summary": summary,
            "details": json.loads(json.dumps(details, default=str)),  # as stored: plain JSON
            "user": user,
            "at": now.isoformat(),
            "slack_key": f"progress:{m.id}",
        }
        # waits (as a reply waits for its parent) until the service's previous event is sent
        after = earlier[-1] if earlier else None
        if self.outbox.put_once(key, f"{LANE}:{service}", event, now, thread_key=after):
            logger.info("migration %s: %s queued for %s", m.id, action, NAMES[service])


class PageDelivery(DeliveryLoop):
    """Sends the queued page events; announces an outage of every pager in Slack."""

    def __init__(
        self,
        outbox: Outbox,
        contacts_for: ContactsFor,
        clock: Clock,
        *,
        notify_channel: str,
        channel_of: Callable[[str], str] | None = None,
        workspace_url: str = "",
        on_slack: Callable[[], None] = lambda: None,
        outage_after: timedelta = timedelta(minutes=2),
        timeout: float = 10.0,
        status_page: StatusPageConfig | None = None,
    ) -> None:
        self.outbox = outbox
        self.status_page = status_page
        self.contacts_for = contacts_for
        self.clock = clock
        self.notify_channel = notify_channel
        # the notify channel of a target (its own, else the global one)
        self.channel_of = channel_of or (lambda _target: notify_channel)
        self.workspace_url = workspace_url.rstrip("/")
        self.on_slack = on_slack  # wakes the Slack delivery for the outage message
        self.outage_after = outage_after
        self.timeout = timeout
        super().__init__()
        self._down: dict[str, tuple[datetime, str]] = {}  # failing service -> since, error
        self._last_ok: datetime | None = None  # when any page last went out
        # the outage messages (key, channel), one per notify channel of a waiting page's
        # target, and the outage's start
        self._announced: tuple[list[tuple[str, str]], datetime] | None = None

    async def drain(self) -> int:
        """One delivery pass; returns how many page events were sent."""
        async with self._lock:
            sent = 0
            batch = await asyncio.to_thread(self.outbox.due, self.clock(), lane=LANE)
            if batch:  # a session only when there is something to send
                timeout = aiohttp.ClientTimeout(total=self.timeout)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    while batch:  # again while a pass made progress: the next event may wait
                        delivered = [i for i in batch if await self._deliver(session, i)]
                        sent += len(delivered)
                        batch = (
                            await asyncio.to_thread(self.outbox.due, self.clock(), lane=LANE)
                            if delivered
                            else []
                        )
            await self._watch_outage()
            return sent

    async def _deliver(self, session: aiohttp.ClientSession, item: Pending) -> bool:
        event = item.payload
        service = str(event["service"])
        try:
            request = await asyncio.to_thread(self._request, event)
        except Exception as exc:  # the contact was removed from the configuration, say
            return await self._drop(item, f"cannot build the request: {exc}")
        if request is None:
            await asyncio.to_thread(self.outbox.delivered, item, self.clock())
            return True
        try:
            async with session.post(request.url, data=request.body, headers=request.headers) as r:
                status, text = r.status, await r.text()
                retry_after = r.headers.get("Retry-After")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return await self._retry(item, service, f"{type(exc).__name__}: {exc}", None, request)
        if 200 <= status < 300:
            await asyncio.to_thread(self.outbox.delivered, item, self.clock())
            if service in _CONTACTS:  # the status page pages nobody
                self._down.pop(service, None)
                self._last_ok = self.clock()
            logger.info("page %s sent to %s", item.key, NAMES[service])
            return True
        error = f"HTTP {status}: {text[:300]}"
        if status == 429 or status >= 500:
            return await self._retry(item, service, error, retry_after, request)
        return await self._drop(item, _redact(error, request))

    def _request(self, event: dict[str, Any]) -> HttpRequest | None:
        """The HTTP request for ``event``, with the link to the run's Slack thread."""
        where = self.outbox.location(str(event["slack_key"]))
        event = {**event, "link": None, "slack_thread": None}
        if where is not None:
            channel, ts = where
            event["slack_thread"] = f"{channel}/{ts}"
            if self.workspace_url:
                event["link"] = f"{self.workspace_url}/archives/{channel}/p{ts.replace('.', '')}"
        service = str(event["service"])
        if service == "statuspage":
            if self.status_page is None:
                raise LookupError("the status page is no longer configured")
            return statuspage.request(event, self.status_page)
        contacts = self.contacts_for(str(event["migration"]["target"]))
        contact = getattr(contacts, service, None)
        if contact is None:
            raise LookupError(f"{NAMES.get(service, service)} is no longer configured")
        if service == "pagerduty":
            return pagerduty.request(event, contact)
        if service == "opsgenie":
            return opsgenie.request(event, contact)
        return webhook.request(event, contact)

    async def _retry(
        self,
        item: Pending,
        service: str,
        error: str,
        retry_after: str | None,
        request: HttpRequest,
    ) -> bool:
        error = _redact(error, request)
        now = self.clock()
        wait = _retry_after(retry_after, now) or timedelta(seconds=min(300, 2**item.attempts))
        logger.warning(
            "page %s not delivered to %s (%s); retrying in %.0f s",
            item.key,
            NAMES[service],
            error,
            wait.total_seconds(),
        )
        await asyncio.to_thread(self.outbox.failed, item, error, now, retry_in=wait)
        if service in _CONTACTS:
            since = self._down.get(service, (now, ""))[0]
            self._down[service] = (since, error)
        return False

    async def _drop(self, item: Pending, error: str) -> bool:
        """Give up on ``item`` (retrying cannot help), and say so in the run's thread: a page
        nobody received must not go unnoticed."""
        logger.error("page %s refused, dropped: %s", item.key, error)
        now = self.clock()
        await asyncio.to_thread(self.outbox.failed, item, error, now, retry_in=None)
        event = item.payload
        service = NAMES.get(str(event.get("service")), "a pager")
        text = (
            f":warning: The {event.get('action')} page of #{event['migration']['id']} to"
            f" {service} was refused ({error[:300]}); nobody was paged there. An admin must fix"
            " the contact in the configuration."
        )
        if event["migration"].get("outside_window"):
            text += f" (#{event['migration']['id']} is an emergency run, {blocks.OUTSIDE}.)"
        await asyncio.to_thread(
            self.outbox.put_once,
            f"page-refused:{item.key}"[:100],
            self.channel_of(str(event["migration"]["target"])),
            blocks.notice(text),
            now,
            thread_key=str(event["slack_key"]),
        )
        self.on_slack()
        return False

    def _outage(self) -> datetime | None:
        """Since when every pager has failed, with no page out since: the outage's start."""
        if not self._down:
            return None
        start = min(since for since, _ in self._down.values())
        if self._last_ok is not None and self._last_ok >= start:
            return None
        return start

    async def _watch_outage(self) -> None:
        """Say loudly, once per outage, in the notify channel of each target whose pages
        wait, that pages are not getting out; update those messages when they do again."""
        now = self.clock()
        start = self._outage()
        if self._announced is not None:
            told, began = self._announced
            if self._last_ok is not None and self._last_ok >= began:
                self._announced = None
                text = ":white_check_mark: Paging works again: the waiting pages were sent."
                for key, channel in told:
                    await asyncio.to_thread(self.outbox.put, key, channel, _loud(text), now)
                self.on_slack()
            return
        if start is None or now - start < self.outage_after:
            return
        waiting = await asyncio.to_thread(self.outbox.waiting, LANE)
        waiting = [p for p in waiting if p.payload.get("service") in _CONTACTS]
        if not waiting:
            return
        by_channel: dict[str, list[Pending]] = {}
        for p in waiting:
            channel = self.channel_of(str(p.payload["migration"]["target"]))
            by_channel.setdefault(channel, []).append(p)
        said: list[tuple[str, str]] = []
        new = False
        for channel, pages in by_channel.items():
            key = f"pager-outage:{start.isoformat()}" + (
                "" if channel == self.notify_channel else f":{channel}"
            )
            text = self._outage_text(pages, start, now)
            new |= await asyncio.to_thread(self.outbox.put_once, key, channel, _loud(text), now)
            said.append((key, channel))
        if new:
            errors = "; ".join(f"{NAMES[s]}: {e}" for s, (_, e) in sorted(self._down.items()))
            logger.error("paging is failing: %s", errors)
            self.on_slack()
        self._announced = (said, start)

    def _outage_text(self, waiting: list[Pending], start: datetime, now: datetime) -> str:
        minutes = max(1, int((now - start).total_seconds() // 60))
        services = ", ".join(f"{NAMES[s]} ({e[:120]})" for s, (_, e) in sorted(self._down.items()))
        ids = sorted({int(p.payload["migration"]["id"]) for p in waiting})
        who: list[str] = []
        for target in sorted({str(p.payload["migration"]["target"]) for p in waiting}):
            who += [w for w in self.contacts_for(target).slack if w not in who]
        runs = ", ".join(f"#{i}" for i in ids)
        call = f" {mentions(who)}: you are the emergency contacts, look at them now." if who else ""
        return (
            f":rotating_light: <!here> *Paging is failing*: no page has gone out for {minutes}"
            f" min. {services} did not take them; {len(waiting)} page(s) are waiting, for"
            f" {runs}.{call} The bot keeps trying."
        )


def _loud(text: str) -> dict[str, Any]:
    return blocks.message(text, [blocks.section(text)])


def _redact(text: str, request: HttpRequest) -> str:
    """``text`` with the request's secrets blanked out."""
    for secret in request.secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


def _retry_after(value: str | None, now: datetime) -> timedelta | None:
    """The wait a Retry-After header asks for (seconds or an HTTP date), at most 10 min."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return timedelta(seconds=min(600.0, max(0.0, seconds)))
