"""The ``/migrate`` slash command: parse, call the service, render."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot import windows
from bot.adapters import blocks
from bot.errors import BarqError
from bot.service import Service
from handlers.parse import Command, parse

logger = logging.getLogger(__name__)


def register(app: AsyncApp, service: Service) -> None:
    """Register the ``/migrate`` command listener."""

    @app.command("/migrate")
    async def migrate(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        try:
            cmd = parse(command.get("text", ""))
        except BarqError as exc:
            await ack(**blocks.error(str(exc)), response_type="ephemeral")
            return
        if cmd.name == "help":
            await ack(**blocks.help_message(), response_type="ephemeral")
            return
        if cmd.name == "list":
            await ack(
                **blocks.runbook_list(await service.runbook_list()), response_type="ephemeral"
            )
            return
        await ack()  # slow work (the target database) happens after the ack
        try:
            reply = await _run(service, cmd, command["user_id"], command.get("trigger_id"))
        except BarqError as exc:
            reply = blocks.error(str(exc))
        except Exception:
            logger.exception("/migrate %s failed", cmd.name)
            reply = blocks.error("something went wrong inside the bot; the error is in its log")
        await respond(**reply, response_type="ephemeral", replace_original=False)


async def _run(service: Service, cmd: Command, user: str, trigger_id: str | None) -> blocks.Message:
    if cmd.name == "plan":
        assert cmd.runbook and cmd.target
        plan, counts = await service.plan(cmd.runbook, cmd.params, cmd.target)
        shown = blocks.plan_message(plan, counts)
        if (note := await windows.plan_note(service, plan, counts)) is not None:
            shown["blocks"].append(blocks.context(note))
        return shown
    if cmd.name == "request":
        assert cmd.runbook and cmd.target
        m, created = await service.request(
            user, cmd.runbook, cmd.params, cmd.target, request_key=trigger_id, when=cmd.when
        )
        return blocks.requested(m, created, await windows.request_note(service, m))
    if cmd.name == "status":
        if cmd.migration_id is None:
            size = blocks.PAGE_SIZE  # one more than a page says whether older ones follow
            found = await service.recent(size + 1, offset=(cmd.page - 1) * size)
            return blocks.status_list(found[:size], page=cmd.page, more=len(found) > size)
        m, runs = await service.status(cmd.migration_id)
        history = await service.history(m.id)
        live = service.engine.live(m.id)
        return blocks.status(m, runs, service.clock(), live, history=history)
    if cmd.name == "windows":
        text = await windows.listing(service, cmd.target, service.clock())
        return blocks.message(text, [blocks.section(text)])
    assert cmd.migration_id is not None
    if cmd.name == "schedule":
        assert cmd.when is not None
        m = await windows.reschedule(service, cmd.migration_id, user, cmd.when)
        text = f"#{m.id} moved; its thread says to which window."
        return blocks.message(text, [blocks.section(text)])
    if cmd.name == "rollback":
        m, created = await service.rollback(
            cmd.migration_id, user, waiver=cmd.waiver, request_key=trigger_id
        )
        return blocks.rollback_requested(m, created, user)
    if cmd.name == "pause":
        m = await service.pause(cmd.migration_id, user)
        what = "will pause at the next batch or step boundary"
    elif cmd.name == "throttle":
        m = await service.throttle(cmd.migration_id, user, cmd.level)
        what = (
            "has its throttle lifted: it runs at full speed (the monitor may still throttle it"
            " while it blocks others)"
            if cmd.level is None
            else f"is throttled to {100 * (1 - cmd.level):.0f}% of its speed"
        )
    elif cmd.name == "resume":
        m = await service.resume(cmd.migration_id, user)
        what = "resumes from its last checkpoint"
    else:
        m = await service.cancel(cmd.migration_id, user)
        what = (
            "will stop at the next batch or step boundary" if m.cancel_requested else "is cancelled"
        )
    return blocks.about(m, blocks.message(f"#{m.id} {what}", [blocks.section(f"#{m.id} {what}.")]))
