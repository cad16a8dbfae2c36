"""Build and sign request bodies exactly as Slack sends them to an app.

Everything here is pure: no I/O. Pair with `LocalSlack` to drive the bot the way Slack would:
message records and button dicts from `LocalSlack` plug straight into `block_actions`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

TEAM_DOMAIN = "barq-local"
API_APP_ID = "A0LOCAL"
VERIFICATION_TOKEN = "local-verification-token"  # the deprecated token Slack still sends
_MESSAGE_KEYS = ("type", "subtype", "user", "bot_id", "app_id", "team", "text", "ts", "thread_ts")


def now_ts() -> int:
    """Return the current Unix time in whole seconds, as used in `X-Slack-Request-Timestamp`."""
    return int(time.time())


def new_trigger_id() -> str:
    """Return a fresh trigger_id in Slack's format (`<digits>.<digits>.<hex>`)."""
    return f"{now_ts()}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"


def sign(body: str, secret: str, timestamp: int) -> dict[str, str]:
    """Return the headers Slack sends with `body`, signed with the app's signing secret."""
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def slash_command(
    command: str,
    text: str,
    *,
    user_id: str,
    user_name: str,
    channel_id: str,
    response_url: str,
    trigger_id: str,
    team_id: str = "T0LOCAL",
    channel_name: str | None = None,
) -> str:
    """Return the form-encoded body Slack posts for a slash command invocation."""
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name or channel_id.lower(),
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    return urlencode(fields)


def block_actions(
    *,
    user_id: str,
    user_name: str,
    channel_id: str,
    message: dict[str, Any],
    action: dict[str, Any],
    response_url: str,
    trigger_id: str,
    team_id: str = "T0LOCAL",
    channel_name: str | None = None,
    action_ts: str | None = None,
) -> str:
    """Return the form-encoded `payload=` body Slack posts when a user clicks a button.

    `message` is the posted message (a `LocalSlack` record or a `chat.postMessage` `message`);
    `action` is one of the dicts returned by `LocalSlack.find_buttons`.
    """
    slack_message = _as_message(message)
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": slack_message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name or channel_id.lower()},
        "message": slack_message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [_button_action(action, action_ts)],
    }
    return _form_payload(payload)


def view_submission(
    *,
    user_id: str,
    user_name: str,
    view: dict[str, Any],
    values: dict[str, dict[str, dict[str, Any]]],
    team_id: str = "T0LOCAL",
    trigger_id: str | None = None,
) -> str:
    """Return the form-encoded `payload=` body Slack posts when a user submits a modal.

    `view` is the opened view (e.g. a `LocalSlack.views` record); `values` maps
    block_id -> action_id -> element state, e.g. `{"type": "plain_text_input", "value": "x"}`.
    """
    submitted = {
        "id": "",
        "team_id": team_id,
        "type": "modal",
        "callback_id": "",
        "private_metadata": "",
        "blocks": [],
        **copy.deepcopy(view),
        "state": {"values": copy.deepcopy(values)},
    }
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": submitted,
        "response_urls": [],
        "enterprise": None,
        "is_enterprise_install": False,
    }
    return _form_payload(payload)


def _user(user_id: str, user_name: str, team_id: str) -> dict[str, str]:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id}


def _as_message(message: dict[str, Any]) -> dict[str, Any]:
    """Keep only the fields Slack includes for a message (drops LocalSlack bookkeeping)."""
    if not message.get("ts"):
        raise ValueError("message has no ts; pass the posted message")
    kept = {k: message[k] for k in _MESSAGE_KEYS if message.get(k) is not None}
    return {"type": "message", **kept, "blocks": copy.deepcopy(message.get("blocks") or [])}


def _button_action(action: dict[str, Any], action_ts: str | None) -> dict[str, Any]:
    if not action.get("action_id") or not action.get("block_id"):
        raise ValueError("action needs action_id and block_id; use LocalSlack.find_buttons")
    text = action.get("text")
    clicked: dict[str, Any] = {
        "action_id": action["action_id"],
        "block_id": action["block_id"],
        "text": text if isinstance(text, dict) else {"type": "plain_text", "text": str(text)},
        "value": action.get("value"),
        "type": "button",
        "action_ts": action_ts or f"{time.time():.6f}",
    }
    if action.get("style"):
        clicked["style"] = action["style"]
    return {k: v for k, v in clicked.items() if v is not None}


def _form_payload(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})
