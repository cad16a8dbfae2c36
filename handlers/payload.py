"""Reading Slack interaction payloads (pure): nothing in a click or a form is taken on trust.

Slack sends back what the bot put in its buttons and modals. A payload that lacks it, or
carries something else (truncated, forged, or from an older version of the bot), raises
InvalidInteraction, whose message tells the clicker the button is not valid any more.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import InvalidInteraction

_VALUE = re.compile(r"(\d{1,9}):([0-9a-f]{64})")
# payload types the bot takes: slash commands (None), clicks, forms, Events API handshakes
_TAKEN = (None, "block_actions", "view_submission", "view_closed", "url_verification")


@dataclass(frozen=True)
class Click:
    """Who clicked a migration's button, and the migration and plan the button was made for."""

    user: str
    migration_id: int
    plan_hash: str
    trigger_id: str | None


@dataclass(frozen=True)
class Rejection:
    """A submitted rejection form: who, which migration, and the reason as typed."""

    user: str
    migration_id: int
    reason: str


def parse_button_value(value: object, kind: str = "button") -> tuple[int, str]:
    """The migration id and plan hash in a button value or modal metadata, ``"12:<sha256>"``."""
    if value is None or value == "":
        raise InvalidInteraction("it names no migration", kind)
    match = _VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidInteraction(f"{value!r:.40} is not a migration and plan hash", kind)
    return int(match.group(1)), match.group(2)


def check_shape(body: object) -> None:
    """Raise InvalidInteraction unless Bolt can dispatch ``body`` without an exception.

    Bolt reads ``actions[0]``, ``view``, ``event`` and the fields of other payload types
    without checking them (see the fuzzing in tests/test_payload.py). The bot takes slash
    commands (no ``type``) and clicks and forms; anything else typed is refused here.
    """
    if not isinstance(body, dict):
        raise InvalidInteraction("it is not a Slack payload")
    kind = body.get("type")
    if kind not in _TAKEN:
        raise InvalidInteraction(f"{str(kind)[:40]!r} payloads are not for this bot")
    if kind == "block_actions":
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions else None
        if not isinstance(first, dict) or not isinstance(first.get("action_id"), str):
            raise InvalidInteraction("the click carries no action")
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise InvalidInteraction("the form is not one the bot opened", "form")
    if not isinstance(body.get("event", {}), dict):
        raise InvalidInteraction("its event is not an object")


def response_url(body: Mapping[str, Any]) -> str | None:
    """Where to answer the clicker, if the payload says (an http or https URL)."""
    url = body.get("response_url")
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def read_click(body: Mapping[str, Any]) -> Click:
    """Read a button click on a migration; raise InvalidInteraction if anything is missing."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    if not isinstance(action, dict):
        raise InvalidInteraction("the click carries no action")
    migration_id, plan_hash = parse_button_value(action.get("value"))
    trigger = body.get("trigger_id")
    return Click(
        _user(body), migration_id, plan_hash, trigger if isinstance(trigger, str) else None
    )


def read_rejection(body: Mapping[str, Any], view: object) -> Rejection:
    """Read a submitted rejection form; raise InvalidInteraction if anything is missing."""
    if not isinstance(view, dict):
        raise InvalidInteraction("the form is not one the bot opened", "form")
    migration_id, _ = parse_button_value(view.get("private_metadata"), "form")
    field = _dig(view, "state", "values", "reason", "reason")
    if not isinstance(field, dict):
        raise InvalidInteraction("it has no reason field", "form")
    value = field.get("value")
    return Rejection(_user(body), migration_id, value.strip() if isinstance(value, str) else "")


def _user(body: Mapping[str, Any]) -> str:
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInteraction("it does not say who clicked")
    return user_id


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
