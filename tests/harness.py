"""A running bot on loopback, driven exactly as Slack drives it: signed HTTP requests to
/slack/events, with a LocalSlack Web API stand-in receiving what the bot sends."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import text

from bot.app import Bot, build, web_app
from bot.domain.lifecycle import Event
from bot.domain.records import Migration
from bot.local import demo, payloads
from bot.local.barq_schema import create_demo_database
from bot.local.slack import LocalSlack
from bot.settings import load_settings

SECRET = "test-signing-secret"
CHANNELS = demo.CHANNELS
APPROVALS, MIGRATIONS, CONSOLE = demo.APPROVALS, demo.MIGRATIONS, demo.CONSOLE
USERS = demo.USERS


def policies(staging_url: str, production_url: str | None = None) -> dict[str, Any]:
    """Targets as the demo configures them: staging 1 approval, production 2."""
    targets: dict[str, Any] = {
        "staging": {"url": staging_url, "approval": {"approver_groups": ["S0DBA"], "required": 1}}
    }
    if production_url:
        targets["production"] = {
            "url": production_url,
            "production": True,
            "approval": {"approvers": ["U0DAVE"], "approver_groups": ["S0DBA"], "required": 2},
        }
    return targets


def demo_targets(tmp_path: Any) -> dict[str, Any]:
    """Staging and production, each a fresh demo database in ``tmp_path``."""
    return policies(
        create_demo_database(tmp_path / "staging.db", now=now()),
        create_demo_database(tmp_path / "production.db", now=now()),
    )


@dataclass
class Harness:
    """The bot served over HTTP on loopback, and the Slack stand-in it talks to."""

    slack: LocalSlack
    bot: Bot
    url: str
    session: aiohttp.ClientSession
    _runner: web.AppRunner
    _keys: list[str] = field(default_factory=list)

    async def post(
        self,
        body: str,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST a body to /slack/events, signed as Slack signs it (plus ``headers``)."""
        headers = {**payloads.sign(body, secret, timestamp or payloads.now_ts()), **(headers or {})}
        async with self.session.post(
            f"{self.url}/slack/events", data=body, headers=headers
        ) as resp:
            await resp.read()
            return resp

    def _response_url(self) -> str:
        key = secrets.token_hex(8)
        self._keys.append(key)
        return self.slack.response_url(key)

    async def slash(self, user: str, text: str) -> dict[str, Any]:
        """Type ``/migrate text`` as ``user``; return the reply the user sees."""
        before = len(self.slack.responses)
        body = payloads.slash_command(
            "/migrate",
            text,
            user_id=user,
            user_name=USERS.get(user, user),
            channel_id=CONSOLE,
            response_url=self._response_url(),
            trigger_id=payloads.new_trigger_id(),
        )
        resp = await self.post(body)
        assert resp.status == 200, resp.status
        ack = await resp.json() if resp.content_type == "application/json" else {}
        if ack.get("blocks") or ack.get("text"):
            return ack
        await self.slack.wait_for(lambda s: len(s.responses) > before, timeout=10)
        return self.slack.responses[-1]

    def approval_message(self, migration_id: int) -> dict[str, Any]:
        """The approval request of that migration in the approvals channel."""
        for message in self.slack.messages_in(APPROVALS):
            if f"Migration #{migration_id}:" in json.dumps(message["blocks"]):
                return message
        raise AssertionError(f"no approval message for #{migration_id}")

    async def click(
        self, user: str, message: dict[str, Any], action_id: str
    ) -> dict[str, Any] | None:
        """Click a button of ``message`` as ``user``; return the ephemeral reply if any."""
        before = len(self.slack.responses)
        button = next(b for b in self.slack.find_buttons(message) if b["action_id"] == action_id)
        body = payloads.block_actions(
            user_id=user,
            user_name=USERS.get(user, user),
            channel_id=message["channel"],
            message=message,
            action=button,
            response_url=self._response_url(),
            trigger_id=payloads.new_trigger_id(),
        )
        resp = await self.post(body)
        assert resp.status == 200
        if action_id == "reject":
            await self.slack.wait_for(lambda s: len(s.responses) > before or s.views, timeout=10)
        else:
            await self.slack.wait_for(lambda s: len(s.responses) > before, timeout=10)
        return self.slack.responses[-1] if len(self.slack.responses) > before else None

    async def submit_reason(self, user: str, reason: str) -> aiohttp.ClientResponse:
        """Submit the last opened rejection modal with ``reason``."""
        view = self.slack.views[-1]
        body = payloads.view_submission(
            user_id=user,
            user_name=USERS.get(user, user),
            view=view,
            values={"reason": {"reason": {"type": "plain_text_input", "value": reason}}},
        )
        headers = payloads.sign(body, SECRET, payloads.now_ts())
        async with self.session.post(
            f"{self.url}/slack/events", data=body, headers=headers
        ) as resp:
            await resp.read()
            return resp

    def approve_in_store(self, m: Migration, user: str) -> None:
        """Record ``user``'s approval of ``m`` straight in the state store, as if given while
        the bot was down: no pass is woken, so the next pass is what starts it."""
        self.bot.store.record_decision(
            m.id,
            user=user,
            decision="approve",
            plan_hash=m.plan.hash,
            now=now(),
            event=Event.APPROVE,
        )

    def count(self, target: str, sql: str) -> int:
        """The value of a COUNT query on a target database."""
        with self.bot.service.targets[target].target.engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)

    async def settle(self) -> None:
        """Let a scheduler pass start what is due, then wait until every run has finished."""
        await self.bot.scheduler.run_pass()
        await self.bot.service.wait_idle()

    async def close(self) -> None:
        """Stop everything."""
        await self.bot.service.wait_idle()
        await self._runner.cleanup()
        await self.session.close()
        await self.slack.stop()


async def start(
    tmp_path: Any, targets: dict[str, Any], runbooks_dir: Any = None, **extra: Any
) -> Harness:
    """Build the bot for ``targets``, serve it on a loopback port, and return the harness.
    ``extra`` settings override the defaults (the state database is SQLite in ``tmp_path``;
    updates of a message are not coalesced unless ``slack_update_seconds`` says so)."""
    slack = await LocalSlack(channels=CHANNELS, usergroups=demo.GROUPS, users=USERS).start()
    defaults = {"database_url": f"sqlite:///{tmp_path / 'state.db'}", "slack_update_seconds": 0}
    settings = load_settings(
        **{**defaults, **extra},
        backup_dir=tmp_path / "backups",
        targets=targets,
        approvals_channel=APPROVALS,
        notify_channel=MIGRATIONS,
        slack_bot_token="xoxb-local",
        slack_signing_secret=SECRET,
        slack_api_url=slack.api_url,
        **({"runbooks_dir": runbooks_dir} if runbooks_dir else {}),
    )
    bot = build(settings)
    runner = web.AppRunner(web_app(bot))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Harness(slack, bot, f"http://127.0.0.1:{port}", aiohttp.ClientSession(), runner)


@contextlib.asynccontextmanager
async def running(tmp_path: Any, *names: str, **extra: Any) -> AsyncIterator[Harness]:
    """The bot on fresh demo databases for the targets ``names`` (staging, then production),
    served on loopback until the block ends; ``extra`` as for :func:`start`."""
    urls = [create_demo_database(tmp_path / f"{name}.db", now=now()) for name in names]
    started = await start(tmp_path, policies(*urls), **extra)
    try:
        yield started
    finally:
        await started.close()


def text_of(message: dict[str, Any]) -> str:
    """Everything a message shows: its blocks (as JSON) and its fallback text."""
    return json.dumps(message.get("blocks") or []) + str(message.get("text", ""))


def now() -> datetime:
    """The real clock, aware."""
    return datetime.now(UTC)
