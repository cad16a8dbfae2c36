"""A generic webhook: one JSON POST per page event, signed with HMAC-SHA256 of the exact
body under a shared secret, in ``X-Barq-Signature: sha256=<hex>``. The receiver dedupes on
``event_id`` and groups on ``dedup_key`` (one per migration)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from bot.adapters.pagers import HttpRequest, json_body
from bot.settings import WebhookContact

SIGNATURE_HEADER = "X-Barq-Signature"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=<hex digest>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(event: dict[str, Any], contact: WebhookContact) -> HttpRequest:
    """The signed POST for the queued ``event``."""
    secret = contact.secret.get_secret_value()
    document = {
        "event": event["action"],
        "event_id": event["event_id"],
        "dedup_key": event["dedup_key"],
        "migration": event["migration"],
        "summary": event["summary"],
        "details": event["details"],
        "user": event.get("user"),
        "link": event["link"],
        "slack_thread": event["slack_thread"],
        "at": event["at"],
    }
    body = json_body(document)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)}
    return HttpRequest(contact.url, body, headers, (secret,))
