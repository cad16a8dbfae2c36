"""Socket Mode end to end: `barq-bot socket` as a real process opens its WebSocket through
apps.connections.open on the loopback Slack stand-in, which sends envelopes as Slack does
and reads the acks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import create_engine, text

from bot.local import payloads
from bot.local.barq_schema import create_demo_database
from bot.local.process import BotProcess
from bot.local.slack import LocalSlack
from tests.harness import APPROVALS, CHANNELS, MIGRATIONS, USERS, now
from tests.test_e2e_serve import alice_types, approve_click

ROOT = Path(__file__).resolve().parent.parent


def _slash(slack: LocalSlack, text: str) -> dict[str, Any]:
    """A slash command as a Socket Mode payload: the HTTP form's fields as JSON."""
    body = alice_types(slack, text, payloads.new_trigger_id().replace(".", ""))
    return {key: values[0] for key, values in parse_qs(body).items()}


async def test_request_approve_and_run_over_socket_mode(tmp_path: Path) -> None:
    """Help is answered in the ack; a request and an approval click arrive as envelopes and
    the tenant's data moves; a bot token cannot open a socket."""
    target = create_demo_database(tmp_path / "staging.db", now=now())
    policy = {"approver_groups": ["S0DBA"], "required": 1}
    config = {
        "targets": {"staging": {"url": target, "approval": policy}},
        "approvals_channel": APPROVALS,
        "notify_channel": MIGRATIONS,
        "runbooks_dir": str(ROOT / "runbooks"),
        "backup_dir": str(tmp_path / "backups"),
    }
    async with LocalSlack(channels=CHANNELS, usergroups={"S0DBA": ["U0BOB"]}, users=USERS) as slack:
        bot = BotProcess(
            tmp_path, config, slack.api_url, command="socket", app_token=slack.app_token
        )
        try:
            with pytest.raises(SlackApiError, match="not_allowed_token_type"):
                await AsyncWebClient(base_url=slack.api_url).apps_connections_open(
                    app_token="xoxb-local"
                )
            await bot.start(ready=lambda: slack.socket_connections > 0)
            help_ack = await slack.socket_send("slash_commands", _slash(slack, "help"))
            assert "/migrate request tenant-consolidation" in json.dumps(help_ack)

            request = "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"
            assert await slack.socket_send("slash_commands", _slash(slack, request)) == {}
            await slack.wait_for(lambda s: s.messages_in(APPROVALS), timeout=15)
            click = approve_click(slack)
            await slack.socket_send("interactive", json.loads(parse_qs(click)["payload"][0]))

            def finished(s: LocalSlack) -> bool:
                return any(m.get("thread_ts") for m in s.messages_in(MIGRATIONS))

            await slack.wait_for(finished, timeout=30)
        finally:
            await bot.stop()
    outcome = next(m for m in slack.messages_in(MIGRATIONS) if m.get("thread_ts"))
    assert "succeeded" in outcome["text"], outcome["text"]
    engine = create_engine(target)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")).scalar() == 0
    engine.dispose()
    opened = [c for c in slack.calls if c["method"] == "apps.connections.open"]
    assert opened, "the socket was opened through apps.connections.open"
