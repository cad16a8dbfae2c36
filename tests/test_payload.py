"""Reading clicks and forms (handlers.payload): a table of what the bot made and what it did not,
and fuzzing: whatever arrives, the readers return or raise InvalidInteraction, and what the
screen lets through, Bolt can dispatch without an exception."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt.async_app import AsyncApp
from slack_bolt.kwargs_injection.async_utils import build_async_required_kwargs
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

import handlers
from bot.errors import InvalidInteraction, UsageError
from bot.service import Service
from handlers import payload
from handlers.screen import UNREADABLE

HASH = "0123456789abcdef" * 4
FUZZ = settings(max_examples=200, deadline=1000)
_LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
_KEYS = st.sampled_from(["type", "callback_id", "action_id", "value", "id", "state", "values"])
JSON = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS | st.text(max_size=3), inner),
    max_leaves=10,
)
TYPES = st.sampled_from(
    [
        "block_actions",
        "view_submission",
        "view_closed",
        "event_callback",
        "interactive_message",
        "shortcut",
        "message_action",
        "block_suggestion",
        "dialog_submission",
        "workflow_step_edit",
    ]
)
_ACTION = st.fixed_dictionaries(
    {}, optional={"action_id": st.sampled_from(["approve", "reject"]) | JSON, "value": JSON}
)
_VIEW = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["modal", "home", "workflow_step"]) | JSON,
        "callback_id": st.just("reject_reason") | JSON,
        "private_metadata": st.just(f"1:{HASH}") | JSON,
        "state": JSON,
    },
)
BODIES = st.fixed_dictionaries(
    {},
    optional={
        "type": TYPES | JSON,
        "actions": st.lists(_ACTION | JSON, max_size=2) | JSON,
        "view": _VIEW | JSON,
        "event": st.fixed_dictionaries({}, optional={"type": JSON, "bot_id": JSON}) | JSON,
        "user": st.fixed_dictionaries({}, optional={"id": st.just("U0BOB") | JSON}) | JSON,
        "callback_id": JSON,
        "action_id": JSON,
        "command": st.just("/migrate") | JSON,
        "trigger_id": JSON,
        "response_url": JSON,
    },
)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (None, "it names no migration"),
        ("", "it names no migration"),
        (12, "12 is not a migration and plan hash"),
        ("12", "'12' is not a migration and plan hash"),
        (f"12:{HASH[:-1]}", "is not a migration and plan hash"),
        (f"12:{HASH.upper()}", "is not a migration and plan hash"),
        (f"-1:{HASH}", "is not a migration and plan hash"),
        (f"1234567890:{HASH}", "is not a migration and plan hash"),
        ("x" * 10_000, "'xxxxxxxxx"),
    ],
)
def test_a_value_the_bot_did_not_make_says_the_button_is_not_valid(
    value: object, says: str
) -> None:
    """Anything but ``<id>:<sha256 hex>`` is refused with a message quoting (the start of) it."""
    with pytest.raises(InvalidInteraction) as info:
        payload.parse_button_value(value)
    assert says in str(info.value) and "this button is not valid any more" in str(info.value)
    assert len(str(info.value)) < 200 and isinstance(info.value, UsageError)


def test_a_value_the_bot_made_is_read_back() -> None:
    """The button value and modal metadata the bot writes are read back exactly."""
    assert payload.parse_button_value(f"42:{HASH}") == (42, HASH)
    with pytest.raises(InvalidInteraction, match="this form is not valid any more"):
        payload.parse_button_value("42", "form")


@FUZZ
@given(JSON)
def test_parse_button_value_returns_id_and_hash_or_raises_invalid_interaction(value: Any) -> None:
    """Whatever a value is, it reads as the id and hash it spells, or is refused."""
    try:
        migration_id, plan_hash = payload.parse_button_value(value)
    except InvalidInteraction:
        return
    assert value == f"{migration_id}:{plan_hash}"


@FUZZ
@given(BODIES)
def test_click_and_rejection_read_any_payload_or_raise_invalid_interaction(
    body: dict[str, Any],
) -> None:
    """The readers of clicks and forms never raise anything but InvalidInteraction."""
    try:
        click = payload.read_click(body)
        assert click.user and click.migration_id >= 0 and len(click.plan_hash) == 64
    except InvalidInteraction:
        pass
    try:
        form = payload.read_rejection(body, body.get("view"))
        assert form.user and form.reason == form.reason.strip()
    except InvalidInteraction:
        pass
    assert payload.response_url(body) in (None, body.get("response_url"))


def _bolt() -> AsyncApp:
    app = AsyncApp(token="xoxb-fuzz", request_verification_enabled=False)
    handlers.register(app, cast(Service, object()))
    return app


BOLT = _bolt()


async def _dispatch_inputs(app: AsyncApp, request: AsyncBoltRequest) -> None:
    """What Bolt computes from a body before any listener runs: kwargs and listener matches."""
    response = BoltResponse(status=200)
    build_async_required_kwargs(
        logger=logging.getLogger("fuzz"),
        required_arg_names=["body"],
        request=request,
        response=response,
        next_keys_required=False,
    )
    for listener in app._async_listeners:
        await listener.async_matches(req=request, resp=response)


@FUZZ
@given(BODIES | JSON)
def test_what_the_screen_lets_through_bolt_can_dispatch(body: Any) -> None:
    """A body is unreadable to Bolt, or refused by check_shape, or Bolt reads it and matches
    it to listeners without an exception: the contract the screen in front of Bolt relies on."""
    try:
        request = AsyncBoltRequest(body=json.dumps(body), headers={})
        payload.check_shape(request.body)
    except (InvalidInteraction, *UNREADABLE):
        return
    asyncio.run(_dispatch_inputs(BOLT, request))
