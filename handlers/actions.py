"""Approve, Reject and Roll back buttons, the emergency buttons of a failed or paused run
(Stop, Assess, Roll back, Resume, Acknowledge: bot/emergency.py), and the rejection-reason
modal.

Every field of a click or form is read through handlers.payload, so a payload that lacks one
gets an answer saying the button is not valid any more, never a traceback or a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import emergency
from bot.adapters import blocks
from bot.domain.lifecycle import State
from bot.domain.records import Migration
from bot.errors import BarqError, InvalidInteraction, Refused
from bot.service import Service
from handlers.payload import Click, read_click, read_rejection

logger = logging.getLogger(__name__)


async def _tell(respond: AsyncRespond | None, reply: blocks.Message) -> None:
    if respond is None:  # Slack always sends a response_url with a click; this one had none
        logger.warning("cannot answer a click without a response_url: %s", reply["text"])
        return
    await respond(**reply, response_type="ephemeral", replace_original=False)


def register(app: AsyncApp, service: Service) -> None:
    """Register the approval listeners."""

    @app.action("approve")
    async def approve(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        await ack()
        try:
            click = read_click(body)
            m = await service.approve(click.migration_id, click.user, click.plan_hash)
            reply = blocks.approved_reply(m, *await service.approvals_of(m))
        except BarqError as exc:
            reply = blocks.error(f"Not approved: {exc}")
        await _tell(respond, reply)

    async def emergency_click(
        body: dict[str, Any],
        respond: AsyncRespond | None,
        verb: str,
        failed: str,
        act: Callable[[Click, Migration], Awaitable[blocks.Message]],
    ) -> None:
        """One click of a run's emergency button: read it, let only the requester or an
        approver ``verb`` the run, ``act``, and answer the clicker (``failed`` prefixes a
        refusal, which also goes in the audit log and the run's thread)."""
        click = None
        try:
            click = read_click(body)
            m = await emergency.authorize(
                service, click.migration_id, click.user, verb, click.plan_hash
            )
            reply = await act(click, m)
        except BarqError as exc:
            reply = blocks.error(f"{failed}: {exc}")
            if click is not None and isinstance(exc, Refused):
                await emergency.record_refusal(
                    service, click.migration_id, click.user, verb, str(exc)
                )
        await _tell(respond, reply)

    @app.action("rollback")
    async def rollback(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        """The Roll back button of a run's final report (or of its emergency buttons): the
        same as /migrate rollback, for its requester or an approver."""
        await ack()

        async def act(click: Click, original: Migration) -> blocks.Message:
            m, created = await service.rollback(
                original.id, click.user, request_key=click.trigger_id
            )
            return blocks.rollback_requested(m, created, click.user)

        await emergency_click(body, respond, "roll back", "Not rolled back", act)

    @app.action("stop")
    async def stop(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        """Stop: cancel the run at its next boundary (at once when it is paused)."""
        await ack()

        async def act(click: Click, m: Migration) -> blocks.Message:
            m = await service.cancel(m.id, click.user)
            if m.state is State.CANCELLING:
                return blocks.notice(f"Stopping #{m.id} at its next batch or step boundary.")
            return blocks.notice(f"#{m.id} is {m.state.value}: you stopped it.")

        await emergency_click(body, respond, "stop", "Not stopped", act)

    @app.action("resume")
    async def resume(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        """Resume: continue the run from its last checkpoint (the cause is fixed)."""
        await ack()

        async def act(click: Click, m: Migration) -> blocks.Message:
            m = await service.resume(m.id, click.user)
            return blocks.notice(f"#{m.id} resumed from its last checkpoint.")

        await emergency_click(body, respond, "resume", "Not resumed", act)

    @app.action("assess")
    async def assess(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        """Assess: post in the thread what a person needs to decide on."""
        await ack()

        async def act(click: Click, m: Migration) -> blocks.Message:
            await emergency.assess(service, m.id, click.user)
            return blocks.notice(f"The assessment of #{m.id} is posted in its thread.")

        await emergency_click(body, respond, "assess", "Not assessed", act)

    @app.action("acknowledge")
    async def acknowledge(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        """Acknowledge: take the run's page."""
        await ack()

        async def act(click: Click, m: Migration) -> blocks.Message:
            return blocks.notice(await emergency.acknowledge(service, m, click.user))

        await emergency_click(body, respond, "acknowledge", "Not acknowledged", act)

    @app.action("reject")
    async def reject(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient
    ) -> None:
        await ack()
        try:
            click = read_click(body)
            if click.trigger_id is None:
                raise InvalidInteraction("it carries no trigger_id to open the form with")
            await service.authorize_reject(click.migration_id, click.user)
        except BarqError as exc:
            await _tell(respond, blocks.error(f"Not rejected: {exc}"))
            return
        await client.views_open(
            trigger_id=click.trigger_id,
            view=blocks.reject_modal(click.migration_id, click.plan_hash),
        )

    @app.view("reject_reason")
    async def reject_reason(ack: AsyncAck, body: dict[str, Any], view: object) -> None:
        try:
            form = read_rejection(body, view)
        except InvalidInteraction as exc:
            await ack(response_action="errors", errors={"reason": str(exc)[:150]})
            return
        if len(form.reason) < 3:
            await ack(response_action="errors", errors={"reason": "Say why, in a few words."})
            return
        try:
            await service.reject(form.migration_id, form.user, form.reason)
        except BarqError as exc:
            await ack(response_action="errors", errors={"reason": str(exc)[:150]})
            return
        await ack()
