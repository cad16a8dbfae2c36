"""/healthz only says the process is alive; what is missing from the configuration is said once,
loudly, in the log at start: no targets, no approvals channel, a token Slack rejects."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.local.slack import LocalSlack
from bot.settings import load_settings

pytestmark = pytest.mark.asyncio


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def _start_and_stop(slack: LocalSlack, tmp_path: Path, token: str, **extra: Any) -> None:
    """Build and start the bot, wait until its background token check is done, stop it."""
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        slack_bot_token=token,
        slack_signing_secret="s",
        slack_api_url=slack.api_url,
        **extra,
    )
    bot = build(settings)
    await bot.start_background()
    try:
        await slack.wait_for(lambda s: any(c["method"] == "auth.test" for c in s.calls))
        await asyncio.sleep(0.2)  # its answer is read and logged
    finally:
        await bot.stop_background()


async def test_start_warns_of_no_targets_no_channel_and_a_rejected_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One WARNING line each; the token check runs in the background and does not hold start."""
    async with LocalSlack(token="xoxb-the-real-one") as slack:
        with caplog.at_level(logging.WARNING):
            await _start_and_stop(slack, tmp_path, "xoxb-not-the-real-one")
    warnings = _warnings(caplog)
    assert sum("no targets are configured" in w for w in warnings) == 1, warnings
    assert sum("no approvals channel" in w for w in warnings) == 1, warnings
    rejected = [w for w in warnings if "Slack rejected the bot token" in w]
    assert len(rejected) == 1 and "invalid_auth" in rejected[0], warnings
    assert "xoxb-not-the-real-one" not in "\n".join(warnings)


async def test_a_complete_configuration_starts_without_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Targets, an approvals channel and a token Slack accepts: nothing to warn about."""
    async with LocalSlack(token="xoxb-local") as slack:
        with caplog.at_level(logging.WARNING):
            await _start_and_stop(
                slack,
                tmp_path,
                "xoxb-local",
                targets={"staging": {"url": f"sqlite:///{tmp_path / 'staging.db'}"}},
                approvals_channel="C0APPROVALS",
            )
    assert _warnings(caplog) == []
