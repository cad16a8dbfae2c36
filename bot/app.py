"""Composition root: settings → adapters → service → Bolt app and aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

import handlers
from bot.adapters.monitor import BlockingMonitor, Watched
from bot.adapters.outbox import Outbox
from bot.adapters.pager import OutboxPager, PageDelivery
from bot.adapters.runbook_files import RunbookLibrary
from bot.adapters.scheduler import Scheduler
from bot.adapters.schema_migrations import upgrade
from bot.adapters.slack import Delivery, SlackDirectory, SlackNotices, web_client
from bot.adapters.store import Store, state_engine
from bot.adapters.targets.target import Target
from bot.domain.ports import Clock, NoPager, Pager
from bot.engine import Engine
from bot.errors import ConfigError
from bot.executors import Executors
from bot.service import Service, TargetEntry
from bot.settings import Settings
from handlers.screen import Screen

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


@dataclass
class Bot:
    """Everything the running bot is made of."""

    settings: Settings
    store: Store
    outbox: Outbox
    service: Service
    delivery: Delivery
    bolt: AsyncApp
    scheduler: Scheduler
    pages: PageDelivery | None = None  # None when no emergency contacts are configured
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start_background(self) -> None:
        """Start outbox delivery and the scheduler; pick up runs a restart interrupted."""
        self._tasks.append(asyncio.create_task(self.delivery.run_forever(), name="outbox"))
        if self.pages is not None:
            self._tasks.append(asyncio.create_task(self.pages.run_forever(), name="pages"))
        self._tasks.append(asyncio.create_task(_check_token(self.bolt.client), name="auth.test"))
        self.scheduler.start()
        await self.scheduler.run_pass()

    async def stop_background(self, drain_seconds: float = 10.0) -> None:
        """Stop the scheduler and delivery (running migrations resume at the next start),
        after a last delivery pass of at most ``drain_seconds``."""
        self.scheduler.shutdown()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        try:  # a last delivery pass; what Slack does not take in time goes out at next start
            async with asyncio.timeout(drain_seconds):
                if self.pages is not None:
                    await self.pages.drain()
                await self.delivery.drain(hold=False)  # the newest state, held or not
        except TimeoutError:
            queued = await asyncio.to_thread(self.outbox.undelivered)
            logger.warning("stopping with %d Slack messages still queued", queued)


def build(settings: Settings, *, clock: Clock = utcnow) -> Bot:
    """Wire the bot from ``settings``: migrate the state database, load and check runbooks
    (reloaded later when their files change)."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set: the bot needs its xoxb- token")
    state = state_engine(settings.database_url)
    upgrade(state)
    runbooks = RunbookLibrary(settings.runbooks_dir)
    connected = {
        name: Target.connect(name, cfg.url.get_secret_value(), production=cfg.production)
        for name, cfg in settings.targets.items()
    }
    targets = {name: TargetEntry(connected[name], cfg) for name, cfg in settings.targets.items()}
    store = Store(state)
    outbox = Outbox(store)
    token = settings.slack_bot_token.get_secret_value()
    client = web_client(token, settings.slack_api_url)
    delivery = Delivery(outbox, client, clock, update_every=settings.slack_update_seconds)
    notices = SlackNotices(
        outbox,
        approvals_channel=settings.approvals_channel,
        notify_channel=settings.notify_channel,
        target_channels={name: cfg.notify_channel for name, cfg in settings.targets.items()},
    )
    pager: Pager = NoPager()
    pages: PageDelivery | None = None
    kick = delivery.kick
    if settings.paging():
        pager = OutboxPager(
            outbox,
            settings.contacts_for,
            _production(settings),
            notices,
            status_page=settings.status_page,
        )
        pages = PageDelivery(
            outbox,
            settings.contacts_for,
            clock,
            notify_channel=settings.notify_channel or settings.approvals_channel,
            channel_of=notices.channel_of,
            workspace_url=settings.slack_workspace_url,
            on_slack=delivery.kick,
            status_page=settings.status_page,
        )
        kick = _both(delivery.kick, pages.kick)
    executors = Executors(
        store,
        clock,
        connected,
        backup_dir=settings.backup_dir,
        runbooks_dir=settings.runbooks_dir,
    )
    watched = {
        name: Watched(connected[name], cfg.monitor) for name, cfg in settings.targets.items()
    }
    monitor = BlockingMonitor(store, notices, clock, watched, on_change=delivery.kick)
    service = Service(
        store=store,
        notifier=notices,
        directory=SlackDirectory(client),
        runbooks=runbooks,
        targets=targets,
        clock=clock,
        on_change=kick,
        engine=Engine(store, notices, clock, kick, executors, watcher=monitor, pager=pager),
    )
    scheduler = Scheduler(service.run_due, clock, poll_seconds=settings.poll_seconds)
    service.wake = scheduler.wake
    secret = settings.slack_signing_secret
    _quiet_bolt()
    bolt = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        request_verification_enabled=secret is not None,
    )
    handlers.register(bolt, service)
    _warn_missing(settings)
    if not settings.paging():  # optional: said, not warned
        logger.info(
            "no emergency contacts are configured: failed runs page nobody; set contacts:"
            " (PagerDuty, Opsgenie, a webhook or Slack mentions) in $BARQ_CONFIG to page them"
        )
    logger.info(
        "bot ready: %d runbooks, targets %s",
        len(runbooks.all()),
        ", ".join(e.target.describe() for e in targets.values()) or "none",
    )
    return Bot(settings, store, outbox, service, delivery, bolt, scheduler, pages)


def _production(settings: Settings) -> Callable[[str], bool]:
    """Whether a target (by name) is a production one."""

    def production(target: str) -> bool:
        cfg = settings.targets.get(target)
        return cfg is not None and cfg.production

    return production


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    """One wake-up that calls ``first`` and ``second`` (the Slack and the page delivery)."""

    def kick() -> None:
        first()
        second()

    return kick


def _quiet_bolt() -> None:
    """Drop Bolt's warning, at every start, that ``$SLACK_BOT_TOKEN`` is unused because a
    client was given: the client is made from that very token. Nothing else is filtered."""
    bolt_logger = logging.getLogger("slack_bolt.AsyncApp")
    if _token_unused not in bolt_logger.filters:
        bolt_logger.addFilter(_token_unused)


def _token_unused(record: logging.LogRecord) -> bool:
    return record.getMessage() != warning_client_prioritized_and_token_skipped()


def web_app(bot: Bot) -> web.Application:
    """The HTTP app: Bolt's ``POST /slack/events`` (behind the screen for malformed payloads)
    and ``GET /healthz``, which says only that the process is alive and its state database
    answers; what the configuration lacks is logged as a warning at start."""

    secret = bot.settings.slack_signing_secret
    screen = Screen(bot.bolt, secret.get_secret_value() if secret else None)

    async def healthz(_request: web.Request) -> web.Response:
        try:
            await asyncio.to_thread(_ping, bot.store)
        except Exception as exc:
            return web.json_response({"ok": False, "error": type(exc).__name__}, status=503)
        pending = await asyncio.to_thread(bot.outbox.undelivered)
        return web.json_response({"ok": True, "undelivered": pending})

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await bot.start_background()
        yield
        await bot.stop_background()

    app = web.Application()
    app.router.add_post("/slack/events", screen.dispatch)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(lifecycle)
    return app


def _warn_missing(settings: Settings) -> None:
    """One WARNING line for each thing the bot needs that the configuration lacks (/healthz
    only says the process is alive)."""
    if not settings.targets:
        logger.warning(
            "no targets are configured: /migrate plan and request have no database to run on;"
            " set BARQ_TARGETS (or targets: in $BARQ_CONFIG)"
        )
    if not settings.approvals_channel:
        logger.warning(
            "no approvals channel is configured: approval requests cannot be posted;"
            " set BARQ_APPROVALS_CHANNEL (or approvals_channel: in $BARQ_CONFIG) to a channel id"
        )


async def _check_token(client: AsyncWebClient) -> None:
    """Ask Slack once (auth.test) whether it accepts the bot token; warn if it does not.
    Runs in the background: start-up does not wait for Slack."""
    try:
        await client.auth_test()
    except SlackApiError as exc:
        logger.warning(
            "Slack rejected the bot token (auth.test: %s): nothing can be posted; check"
            " SLACK_BOT_TOKEN (the xoxb- token of the installed app)",
            exc.response.get("error", "unknown error"),
        )
    except Exception as exc:  # a diagnostic: whatever went wrong, say so and carry on
        logger.warning("could not check the bot token with Slack (auth.test: %r)", exc)


def _ping(store: Store) -> None:
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
