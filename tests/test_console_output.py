"""What the console prints: every emoji the bot uses as its glyph, and for a message updated in
place only the lines that changed."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bot.local.console import Console
from bot.local.console_render import mrkdwn

ROOT = Path(__file__).resolve().parent.parent


def test_every_emoji_the_bot_uses_prints_as_a_glyph() -> None:
    """No `:double_vertical_bar:` in the console: each shortcode in the bot's messages maps."""
    sources = [*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/*.py")]
    used = {
        code
        for path in sources
        if "local" not in path.parts
        for code in re.findall(r"""(?<=["'])(:[a-z_]+:)""", path.read_text())
    }
    assert ":double_vertical_bar:" in used and ":warning:" in used
    for code in sorted(used):
        assert code not in mrkdwn(f"{code} text", {}), f"{code} is printed as a shortcode"


class _Slack:
    def __init__(self) -> None:
        self.listener: Any = None

    def add_listener(self, callback: Any) -> None:
        self.listener = callback


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def test_an_update_prints_only_the_lines_that_changed() -> None:
    """A progress message updated in place reprints its changed and new lines, not all."""
    printed: list[str] = []
    secret = SimpleNamespace(get_secret_value=lambda: "s")
    bot: Any = SimpleNamespace(settings=SimpleNamespace(slack_signing_secret=secret))
    slack = _Slack()
    Console(bot, slack, out=printed.append)  # type: ignore[arg-type]
    record: dict[str, Any] = {
        "channel": "C0MIGRATIONS",
        "ts": "1.000001",
        "blocks": [_section("#1 on staging — running\nstep 1 of 3"), _section("rows: 10")],
    }
    slack.listener("message", record)
    record["blocks"] = [_section("#1 on staging — running\nstep 2 of 3"), _section("rows: 10")]
    slack.listener("update", record)
    update = printed[-1]
    assert "step 2 of 3" in update
    assert "#1 on staging — running" not in update and "rows: 10" not in update
    count = len(printed)
    slack.listener("update", record)
    assert len(printed) == count, "an update that changes nothing prints nothing"
