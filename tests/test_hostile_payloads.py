"""Signed but malformed requests, over real HTTP on loopback: each gets a prompt answer (well
under Slack's 3 s), never a 500 or a timeout, and a clicker is told the button is not valid any
more. One bot serves the module; nothing here may change the migration it requests.

| request (signed unless said)                       | status | answer                         |
| -------------------------------------------------- | ------ | ------------------------------ |
| ``payload`` not JSON, empty, a JSON list or string | 400    | none: Slack never sends it     |
| a form with no ``payload`` and no ``command``      | 404    | none: Bolt has no listener     |
| a payload ``type`` the bot does not take           | 400    | none: Slack never sends it     |
| the same, with a ``response_url``                  | 200    | ephemeral: not valid any more  |
| a click whose ``actions`` is missing, empty, a     | 200    | ephemeral: "this button is not |
| string, ``[null]``, or lacks ``action_id``         |        | valid any more (...)"          |
| Approve with ``value`` missing, null, a number,    | 200    | ephemeral: "Not approved: this |
| not ``id:hash``; ``user`` missing or not a user    |        | button is not valid any more"  |
| Reject with a bad ``value`` or no ``trigger_id``   | 200    | ephemeral: "Not rejected: ..." |
| reject form with bad or no ``private_metadata``,   | 200    | the form's error: "this form   |
| no ``state``, a bad ``state``, or no ``user``      |        | is not valid any more (...)"   |
| a form whose ``view`` is not an object             | 400    | none: no form to answer in     |
| ``/migrate`` with 100,000 or 1,000,000 characters  | 200    | its length and the limit       |
| any of the above unsigned, or signed 6 min ago     | 401    | none, as Bolt answers          |
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
import pytest_asyncio

from bot.adapters import blocks
from bot.domain.lifecycle import State
from bot.local import payloads
from tests import harness
from tests.harness import APPROVALS, Harness

pytestmark = pytest.mark.asyncio(loop_scope="module")
ALICE, BOB = "U0ALICE", "U0BOB"
REQUEST = "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"
PROMPT = 1.5  # seconds: well under the 3 s Slack waits for an answer
NOT_VALID = "this button is not valid any more"
FORM_NOT_VALID = "this form is not valid any more"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path_factory.mktemp("hostile"), "staging") as bot:
        await bot.slash(ALICE, REQUEST)
        await bot.slack.wait_for(lambda s: s.messages_in(APPROVALS))
        yield bot


def _click(h: Harness, action_id: str) -> dict[str, Any]:
    """The payload of a correct click by Bob on migration #1's button, to be spoilt."""
    message = h.approval_message(1)
    button = next(b for b in h.slack.find_buttons(message) if b["action_id"] == action_id)
    body = payloads.block_actions(
        user_id=BOB,
        user_name="bob",
        channel_id=message["channel"],
        message=message,
        action=button,
        response_url=h._response_url(),
        trigger_id=payloads.new_trigger_id(),
    )
    payload: dict[str, Any] = json.loads(parse_qs(body)["payload"][0])
    return payload


def _form(h: Harness) -> dict[str, Any]:
    """The payload of a correct rejection form for migration #1, to be spoilt."""
    view = {**blocks.reject_modal(1, h.bot.store.get(1).plan.hash), "id": "V0LOCAL"}
    body = payloads.view_submission(
        user_id=BOB,
        user_name="bob",
        view=view,
        values={"reason": {"reason": {"type": "plain_text_input", "value": "not now"}}},
    )
    payload: dict[str, Any] = json.loads(parse_qs(body)["payload"][0])
    return payload


def _posted(payload: object) -> str:
    return urlencode({"payload": payload if isinstance(payload, str) else json.dumps(payload)})


def _spoilt(
    make: Callable[[Harness], dict[str, Any]], spoil: Callable[[dict[str, Any]], None]
) -> Callable[[Harness], str]:
    def body(h: Harness) -> str:
        payload = make(h)
        spoil(payload)
        return _posted(payload)

    return body


def _approve(spoil: Callable[[dict[str, Any]], None]) -> Callable[[Harness], str]:
    return _spoilt(lambda h: _click(h, "approve"), spoil)


def _set_value(value: object) -> Callable[[dict[str, Any]], None]:
    return lambda p: p["actions"][0].update(value=value)


def _slash(text: str) -> Callable[[Harness], str]:
    return lambda h: payloads.slash_command(
        "/migrate",
        text,
        user_id=ALICE,
        user_name="alice",
        channel_id=harness.CONSOLE,
        response_url=h._response_url(),
        trigger_id=payloads.new_trigger_id(),
    )


@dataclass(frozen=True)
class Case:
    """One malformed request, the status it gets, and what the user is told (``where``:
    ``"response"`` for an ephemeral through response_url, ``"ack"`` for the HTTP answer)."""

    id: str
    body: Callable[[Harness], str]
    status: int
    says: str | None = None
    where: str = "response"


CASES = [
    Case("payload-not-json", lambda h: _posted("{not json"), 400),
    Case("payload-empty", lambda h: _posted(""), 400),
    Case("payload-json-list", lambda h: _posted("[1, 2]"), 400),
    Case("payload-json-string", lambda h: _posted('"approve"'), 400),
    Case("form-without-payload", lambda h: "hello=world", 404),
    Case(
        "payload-of-another-type", lambda h: _posted({"type": "shortcut", "callback_id": "x"}), 400
    ),
    Case(
        "legacy-click-without-actions",
        lambda h: _posted(
            {"type": "interactive_message", "callback_id": "x", "response_url": h._response_url()}
        ),
        200,
        "'interactive_message' payloads are not for this bot",
    ),
    Case("actions-missing", _approve(lambda p: p.pop("actions")), 200, NOT_VALID),
    Case("actions-empty", _approve(lambda p: p.update(actions=[])), 200, NOT_VALID),
    Case("actions-a-string", _approve(lambda p: p.update(actions="approve")), 200, NOT_VALID),
    Case("actions-null-item", _approve(lambda p: p.update(actions=[None])), 200, NOT_VALID),
    Case("action-id-missing", _approve(lambda p: p["actions"][0].pop("action_id")), 200, NOT_VALID),
    Case("value-missing", _approve(lambda p: p["actions"][0].pop("value")), 200, NOT_VALID),
    Case("value-null", _approve(_set_value(None)), 200, f"Not approved: {NOT_VALID}"),
    Case("value-a-number", _approve(_set_value(1)), 200, "(1 is not a migration and plan hash)"),
    Case("value-not-id-hash", _approve(_set_value("1")), 200, "'1' is not a migration and plan"),
    Case("value-short-hash", _approve(_set_value("1:abc")), 200, "'1:abc' is not a migration"),
    Case("user-missing", _approve(lambda p: p.pop("user")), 200, "does not say who clicked"),
    Case("user-not-a-user", _approve(lambda p: p.update(user="U0BOB")), 200, "who clicked"),
    Case(
        "reject-value-garbage",
        _spoilt(lambda h: _click(h, "reject"), _set_value("drop table")),
        200,
        f"Not rejected: {NOT_VALID}",
    ),
    Case(
        "reject-without-trigger-id",
        _spoilt(lambda h: _click(h, "reject"), lambda p: p.pop("trigger_id")),
        200,
        "no trigger_id",
    ),
    Case(
        "form-metadata-garbage",
        _spoilt(_form, lambda p: p["view"].update(private_metadata="x:y")),
        200,
        FORM_NOT_VALID,
        "ack",
    ),
    Case(
        "form-metadata-missing",
        _spoilt(_form, lambda p: p["view"].pop("private_metadata")),
        200,
        "it names no migration",
        "ack",
    ),
    Case(
        "form-no-state", _spoilt(_form, lambda p: p["view"].pop("state")), 200, "no reason", "ack"
    ),
    Case(
        "form-state-a-string",
        _spoilt(_form, lambda p: p["view"].update(state="reason")),
        200,
        "it has no reason field",
        "ack",
    ),
    Case("form-user-missing", _spoilt(_form, lambda p: p.pop("user")), 200, "who clicked", "ack"),
    Case("form-view-a-string", _spoilt(_form, lambda p: p.update(view="reject_reason")), 400),
    Case("slash-text-100k", _slash("plan r note=" + "'x'" * 33_000), 200, "at most 4,000", "ack"),
    Case("slash-text-1m", _slash("x" * 1_000_000), 200, "1,000,000 characters long", "ack"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_a_malformed_request_gets_a_prompt_answer(h: Harness, case: Case) -> None:
    """The status of the table, within well under 3 s, and the user is told where one asked."""
    before = len(h.slack.responses)
    started = time.monotonic()
    resp = await h.post(case.body(h))
    elapsed = time.monotonic() - started
    assert (resp.status, elapsed < PROMPT) == (case.status, True), (resp.status, elapsed)
    if case.where == "ack" and case.says:
        assert case.says in json.dumps(await resp.json())
    elif case.says:
        await h.slack.wait_for(lambda s: len(s.responses) > before, timeout=PROMPT)
        reply = h.slack.responses[-1]
        assert case.says in harness.text_of(reply) and reply["response_type"] == "ephemeral"
        assert not reply["replace_original"], "the approval message stays as it was"


@pytest.mark.parametrize(
    ("case", "signing"),
    [
        (CASES[0], {"secret": "not-the-secret"}),
        (CASES[6], {"secret": "not-the-secret"}),
        (CASES[6], {"timestamp": payloads.now_ts() - 6 * 60}),
    ],
    ids=["unparsable-forged", "click-forged", "click-stale"],
)
async def test_an_unsigned_malformed_request_gets_401_and_nobody_is_told(
    h: Harness, case: Case, signing: dict[str, Any]
) -> None:
    """The signature is checked before anything is read or answered, as Bolt checks it."""
    before = len(h.slack.responses)
    resp = await h.post(case.body(h), **signing)
    assert resp.status == 401
    assert len(h.slack.responses) == before


async def test_after_all_that_the_migration_is_untouched_and_the_real_button_works(
    h: Harness,
) -> None:
    """No malformed request changed the migration; a correct click still approves it."""
    assert h.bot.store.get(1).state is State.REQUESTED
    assert h.bot.store.prior_approvals(1) == []
    reply = await h.click(BOB, h.approval_message(1), "approve")
    assert reply is not None and "You approved #1" in harness.text_of(reply)
