"""Approve, Reject and Roll back buttons, and the rejection-reason modal.

Every field of a click or form is read through handlers.payload, so a payload that lacks one
gets an answer saying the button is not valid any more, never a traceback or a timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters import blocks
from bot.errors import BarqError, InvalidInteraction
from bot.service import Service
from handlers.payload import read_click, read_rejection

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

    @app.action("rollback")
    async def rollback(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        """The Roll back button of a run's final report: the same as /migrate rollback."""
        await ack()
        try:
            click = read_click(body)
            original, _runs = await service.status(click.migration_id)
            if original.plan.hash != click.plan_hash:
                raise InvalidInteraction("it was made for another plan", "button")
            m, created = await service.rollback(
                click.migration_id, click.user, request_key=click.trigger_id
            )
            reply = blocks.rollback_requested(m, created, click.user)
        except BarqError as exc:
            reply = blocks.error(f"Not rolled back: {exc}")
        await _tell(respond, reply)

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
