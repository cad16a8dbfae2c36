"""The local console: the whole bot with no Slack. Slash commands and button clicks become
signed requests into the same Bolt app; a loopback stand-in answers the Web API, and what the
bot posts is printed as text with numbered buttons."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters import blocks
from bot.app import Bot, build, utcnow
from bot.domain.lifecycle import State
from bot.domain.ports import NoPager
from bot.local import demo, payloads
from bot.local.console_render import changed, mrkdwn, render
from bot.local.pagers import ConsolePager
from bot.local.slack import LocalSlack

HELP = """Type a slash command as the current user, e.g.
  /migrate help
  /migrate list
  /migrate plan tenant-consolidation source_tenant=3 target_tenant=7 on=staging
  /migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=staging
Then switch to an approver and click a button by its number:
  /as bob        (users: alice, bob, carol, dave; bob and carol are @dba-team)
  1
Other lines: /whoami, /help, /quit."""


class Console:
    """Reads lines, turns them into Slack requests, prints what the bot sends back."""

    def __init__(
        self,
        bot: Bot,
        slack: LocalSlack,
        *,
        user: str = "alice",
        out: Callable[[str], None] = print,
    ) -> None:
        self.bot = bot
        self.slack = slack
        self.out = out
        self.names = {
            **demo.USERS,
            **demo.GROUP_NAMES,
            **{k: "#" + v for k, v in demo.CHANNELS.items()},
        }
        self.user = self._user_id(user)
        self.buttons: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._button_numbers: dict[tuple[str, ...], int] = {}  # a button keeps its number
        self._printed: dict[tuple[str, str], list[str]] = {}  # (channel, ts) -> lines shown
        self._numbers = itertools.count(1)
        self._pending_view: dict[str, Any] | None = None
        secret = bot.settings.slack_signing_secret
        assert secret is not None
        self._secret = secret.get_secret_value()
        slack.add_listener(self.show)

    def _user_id(self, name: str) -> str:
        for uid, uname in demo.USERS.items():
            if name.lstrip("@").lower() in (uname, uid.lower()):
                return uid
        raise ValueError(f"no user {name!r}; users: {', '.join(demo.USERS.values())}")

    # -- output -----------------------------------------------------------------------------

    def show(self, kind: str, record: dict[str, Any]) -> None:
        """Print a message the bot sent (or a modal it opened) as text with numbered buttons."""
        if kind == "view":
            self._pending_view = record.get("view", record)
            title = self._pending_view.get("title", {}).get("text", "")
            self.out(f"\n┌ modal: {title}\n└ type the reason (or /cancel to close it)")
            return
        where = self.names.get(record.get("channel", ""), "")
        label = {
            "message": f"{where}",
            "update": f"{where} (updated: {_first_line(record.get('text', ''), self.names)})",
            "ephemeral": "only you see this",
            "response": "only you see this",
        }.get(kind, kind)
        if kind == "response" and record.get("response_type") == "in_channel":
            label = "reply"
        texts = render(record.get("blocks") or [], self.names, self._number_for(record))
        if not texts:
            texts = [mrkdwn(record.get("text", ""), self.names)]
        lines = [line for text in texts for line in text.splitlines()]
        key = (record.get("channel", ""), record.get("ts", ""))
        shown = lines
        if kind == "update" and key in self._printed:  # only what changed since it was shown
            before = self._printed[key]
            shown = ["(deleted)"] if record.get("deleted") else changed(before, lines)
            if not shown:
                return
        if kind in ("message", "update") and key[1]:
            self._printed[key] = lines
        self.out(f"\n┌ {label}\n" + "\n".join("│ " + line for line in shown) + "\n└")

    def _number_for(self, record: dict[str, Any]) -> Callable[[dict[str, Any]], int]:
        where = (str(record.get("channel", "")), str(record.get("ts", "")))

        def number(button: dict[str, Any]) -> int:
            key = (*where, str(button.get("action_id")), str(button.get("value")))
            n = self._button_numbers.get(key) if where[1] else None
            if n is None:
                n = next(self._numbers)
                if where[1]:
                    self._button_numbers[key] = n
            self.buttons[n] = (record, button)
            return n

        return number

    # -- input ------------------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Act on one input line; return False to quit."""
        line = line.strip()
        if not line:
            return True
        if self._pending_view is not None and not line.startswith("/"):
            await self._submit_view(line)
        elif line in ("/quit", "/exit"):
            return False
        elif line in ("/help", "help", "?"):
            self.out(HELP)
        elif line == "/whoami":
            self.out(f"you are {demo.USERS[self.user]} ({self.user})")
        elif line == "/cancel":
            self._pending_view = None
            self.out("modal closed")
        elif line.startswith("/as"):
            self._switch(line[3:].strip())
        elif line.startswith("/migrate"):
            await self._slash(line[len("/migrate") :].strip())
        elif line.isdigit():
            await self._click(int(line))
        else:
            self.out(f"not understood: {line!r}; type /help")
        await self._settle()
        return True

    def _switch(self, name: str) -> None:
        try:
            self.user = self._user_id(name)
            self.out(f"you are now {demo.USERS[self.user]}")
        except ValueError as exc:
            self.out(str(exc))

    async def _dispatch(self, body: str) -> None:
        request = AsyncBoltRequest(
            body=body, headers=dict(payloads.sign(body, self._secret, payloads.now_ts()).items())
        )
        response = await self.bot.bolt.async_dispatch(request)
        if response.status != 200:
            self.out(f"the bot answered HTTP {response.status}: {response.body}")
        elif response.body.startswith("{"):
            self.show("ephemeral", json.loads(response.body))

    async def _slash(self, text: str) -> None:
        body = payloads.slash_command(
            "/migrate",
            text,
            user_id=self.user,
            user_name=demo.USERS[self.user],
            channel_id=demo.CONSOLE,
            response_url=self.slack.response_url(payloads.new_trigger_id().replace(".", "")),
            trigger_id=payloads.new_trigger_id(),
        )
        await self._dispatch(body)

    async def _click(self, n: int) -> None:
        if n not in self.buttons:
            self.out(f"there is no button [{n}]")
            return
        message, button = self.buttons[n]
        current = self.slack.message(message.get("channel", ""), message.get("ts", "")) or message
        body = payloads.block_actions(
            user_id=self.user,
            user_name=demo.USERS[self.user],
            channel_id=current.get("channel", demo.CONSOLE),
            message=current,
            action=button,
            response_url=self.slack.response_url(payloads.new_trigger_id().replace(".", "")),
            trigger_id=payloads.new_trigger_id(),
        )
        await self._dispatch(body)

    async def _submit_view(self, text: str) -> None:
        view, self._pending_view = self._pending_view, None
        assert view is not None
        values = {"reason": {"reason": {"type": "plain_text_input", "value": text}}}
        body = payloads.view_submission(
            user_id=self.user, user_name=demo.USERS[self.user], view=view, values=values
        )
        request = AsyncBoltRequest(
            body=body, headers=dict(payloads.sign(body, self._secret, payloads.now_ts()).items())
        )
        response = await self.bot.bolt.async_dispatch(request)
        if response.body and "errors" in response.body:
            for problem in _field_errors(response.body):
                self.out(f"the modal says: {problem}\n  type it again (or /cancel to close it)")
            self._pending_view = view

    async def _settle(self, quiet: float = 0.4, limit: float = 15.0) -> None:
        """Wait until the bot has said what it has to say for now."""
        loop = asyncio.get_running_loop()
        start, seen = loop.time(), -1
        while loop.time() - start < limit:
            await self.bot.delivery.drain()
            count = len(self.slack.calls)
            if count == seen:
                return
            seen = count
            await asyncio.sleep(quiet)


def _field_errors(body: str) -> list[str]:
    """The messages a modal shows under its fields, from a ``response_action: errors`` ack."""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, AttributeError):
        errors = None
    if not isinstance(errors, dict) or not errors:
        return [body]
    return [str(text) for text in errors.values()]


def restore_pending(bot: Bot, slack: LocalSlack) -> list[dict[str, Any]]:
    """Put the approval requests still pending back into ``slack`` where the bot posted them
    (a restart with ``--keep``: the state database remembers them, a new LocalSlack does not),
    rendered from the store as the bot renders them. Return the restored messages."""
    restored = []
    for m in bot.store.in_states(State.REQUESTED):
        where = bot.outbox.location(f"approval:{m.id}")
        target = bot.settings.targets.get(m.target)
        if where is None or target is None:  # never delivered: the outbox posts it anew
            continue
        message = blocks.approval_request(m, bot.store.prior_approvals(m.id), target.approval)
        restored.append(slack.restore(where[0], where[1], message["text"], message["blocks"]))
    return restored


async def run(
    bot: Bot,
    slack: LocalSlack,
    user: str,
    lines: Any = None,
    *,
    earlier: list[dict[str, Any]] | None = None,
) -> None:
    """Run the console until /quit or end of input; show the ``earlier`` messages first."""
    console = Console(bot, slack, user=user)
    engine = bot.service.engine
    if isinstance(engine.pager, NoPager):  # no contacts: pages are lines on the console
        targets = bot.settings.targets
        engine.pager = ConsolePager(console.out, lambda t: t in targets and targets[t].production)
    interactive = lines is None and sys.stdin.isatty()
    console.out("BARQ migration bot — local console (demo SQLite targets: staging, production)")
    console.out(f"you are {demo.USERS[console.user]}. Type /help for help.")
    if earlier:
        waiting = (
            "1 approval request is"
            if len(earlier) == 1
            else f"{len(earlier)} approval requests are"
        )
        console.out(f"{waiting} still waiting from the last run:")
    for record in earlier or []:
        console.show("message", record)
    while True:
        if lines is not None:
            line = next(lines, None)
        else:
            line = await asyncio.to_thread(
                _read, f"{demo.USERS[console.user]}> " if interactive else ""
            )
        if line is None:
            break
        if not interactive:
            console.out(f"{demo.USERS[console.user]}> {line.rstrip()}")
        if not await console.handle(line):
            break
    await bot.service.wait_idle()
    await bot.delivery.drain()


async def run_demo(workdir: Path, user: str, *, fresh: bool = True) -> None:
    """The console on the demo: LocalSlack, demo targets under ``workdir`` (recreated if
    ``fresh``), and the bot built from the demo settings, running in the background."""
    async with LocalSlack(
        token="xoxb-local", channels=demo.CHANNELS, usergroups=demo.GROUPS, users=demo.USERS
    ) as slack:
        settings = demo.demo_settings(workdir, slack.api_url, utcnow(), fresh=fresh)
        bot = build(settings)
        earlier = [] if fresh else await asyncio.to_thread(restore_pending, bot, slack)
        await bot.start_background()
        try:
            await run(bot, slack, user, earlier=earlier)
        finally:
            await bot.stop_background()


def _first_line(text: str, names: dict[str, str]) -> str:
    lines = mrkdwn(text, names).splitlines()
    return lines[0][:80] if lines else "a message"


def _read(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None
