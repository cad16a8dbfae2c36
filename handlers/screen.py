"""In front of Bolt: a signed request Bolt cannot dispatch gets a prompt answer, never a 500.

Bolt parses the body before it checks the signature, and reads ``actions[0]``, ``view`` and
``event`` without checking them, so a malformed payload raises inside Bolt. The screen answers
those requests itself, once the signature is checked as Bolt checks it:

- unsigned or stale: 401, as Bolt answers;
- signed, with a ``response_url`` (a click Bolt cannot read): 200, and the clicker is told,
  ephemerally, that the button is not valid any more;
- signed, without one (not a Slack payload at all; Slack never sends it): 400.

Everything else goes to Bolt, whose listeners read the payload through handlers.payload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.adapters import blocks
from bot.errors import InvalidInteraction
from handlers.payload import check_shape, response_url

logger = logging.getLogger(__name__)
# what Bolt's parsing raises on a body that is not JSON, or not a JSON object
UNREADABLE = (ValueError, TypeError, AttributeError, LookupError)


class Screen:
    """Dispatches ``POST /slack/events`` to Bolt, answering what Bolt cannot read itself."""

    def __init__(self, app: AsyncApp, signing_secret: str | None) -> None:
        self._app = app
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._tasks: set[asyncio.Task[None]] = set()

    async def dispatch(self, request: web.Request) -> web.Response:
        """Answer one request from Slack."""
        body: dict[str, Any] = {}
        try:
            bolt_request = await to_bolt_request(request)
            body = bolt_request.body
            check_shape(body)
        except UNREADABLE as exc:  # InvalidInteraction is a ValueError too
            if not isinstance(exc, InvalidInteraction):
                exc = InvalidInteraction(f"Bolt cannot read it: {type(exc).__name__}")
            return await self._refuse(request, body, exc)
        return await to_aiohttp_response(await self._app.async_dispatch(bolt_request))

    async def _refuse(
        self, request: web.Request, body: dict[str, Any], exc: InvalidInteraction
    ) -> web.Response:
        raw, headers = await request.text(), request.headers
        signed = self._verifier is None or self._verifier.is_valid(
            raw, headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature")
        )
        if not signed:
            return web.json_response({"error": "invalid request"}, status=401)
        url = response_url(body)
        logger.warning("refused a malformed Slack payload: %s", exc.what)
        if url is None:
            return web.Response(status=400, text=f"not a Slack payload: {exc.what}")
        self._spawn(self._tell(url, str(exc)))
        return web.Response(status=200)

    async def _tell(self, url: str, text: str) -> None:
        reply = {**blocks.error(text), "response_type": "ephemeral", "replace_original": False}
        try:
            response = await AsyncWebhookClient(url).send_dict(reply)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not answer a malformed click: %r", exc)
            return
        if response.status_code != 200:
            logger.warning("could not answer a malformed click: HTTP %d", response.status_code)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name="malformed-click")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
