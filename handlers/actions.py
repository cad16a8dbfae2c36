"""Approve and Reject buttons, and the rejection-reason modal."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters import blocks
from bot.errors import BarqError
from bot.service import Service

logger = logging.getLogger(__name__)


def _target(value: str) -> tuple[int, str]:
    migration_id, _, plan_hash = value.partition(":")
    return int(migration_id), plan_hash


def register(app: AsyncApp, service: Service) -> None:
    """Register the approval listeners."""

    @app.action("approve")
    async def approve(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        migration_id, plan_hash = _target(body["actions"][0]["value"])
        try:
            m = await service.approve(migration_id, body["user"]["id"], plan_hash)
            text = f"You approved #{m.id}; it is now {m.state.value}."
            reply = blocks.message(text, [blocks.section(f":white_check_mark: {text}")])
        except BarqError as exc:
            reply = blocks.error(f"Not approved: {exc}")
        await respond(**reply, response_type="ephemeral", replace_original=False)

    @app.action("reject")
    async def reject(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        migration_id, plan_hash = _target(body["actions"][0]["value"])
        try:
            await service.authorize_reject(migration_id, body["user"]["id"])
        except BarqError as exc:
            refusal = blocks.error(f"Not rejected: {exc}")
            await respond(**refusal, response_type="ephemeral", replace_original=False)
            return
        await client.views_open(
            trigger_id=body["trigger_id"], view=blocks.reject_modal(migration_id, plan_hash)
        )

    @app.view("reject_reason")
    async def reject_reason(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        migration_id, _ = _target(view["private_metadata"])
        reason = (view["state"]["values"]["reason"]["reason"].get("value") or "").strip()
        if len(reason) < 3:
            await ack(response_action="errors", errors={"reason": "Say why, in a few words."})
            return
        try:
            await service.reject(migration_id, body["user"]["id"], reason)
        except BarqError as exc:
            await ack(response_action="errors", errors={"reason": str(exc)[:150]})
            return
        await ack()
