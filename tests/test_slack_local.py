"""LocalSlack and bot.local.payloads, exercised over real loopback HTTP with slack_sdk and Bolt."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.local import payloads
from bot.local.slack import LocalSlack

TOKEN = "xoxb-test"
SECRET = "signing-secret-for-tests"
APPROVALS = "C0APPROVALS"
TS_RE = re.compile(r"^\d{10}\.\d{6}$")


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def approval_blocks() -> list[dict[str, Any]]:
    button = {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "value": "42"}
    return [
        section("*Plan 42* awaits approval"),
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [
                {**button, "action_id": "approve", "style": "primary"},
                {**button, "text": {"type": "plain_text", "text": "Reject"}, "value": "42:no"},
            ],
        },
    ]


@pytest.fixture
async def slack() -> AsyncIterator[LocalSlack]:
    server = LocalSlack(
        token=TOKEN,
        channels={APPROVALS: "migration-approvals"},
        usergroups={"S0DBA": ["U0ALICE", "U0BOB"]},
        users={"U0ALICE": "Alice", "U0BOB": "Bob"},
    )
    async with server:
        yield server


@pytest.fixture
def client(slack: LocalSlack) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=slack.api_url)


async def api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


async def test_post_update_and_ephemeral_round_trip(
    slack: LocalSlack, client: AsyncWebClient
) -> None:
    seen: list[tuple[str, str]] = []
    slack.add_listener(lambda kind, record: seen.append((kind, record["text"])))

    posted = await client.chat_postMessage(
        channel=APPROVALS, text="plan 42", blocks=approval_blocks()
    )
    second = await client.chat_postMessage(
        channel="#migration-approvals", text="b", thread_ts=posted["ts"]
    )
    await client.chat_update(channel=APPROVALS, ts=posted["ts"], text="approved")
    ephemeral = await client.chat_postEphemeral(channel=APPROVALS, user="U0ALICE", text="only you")

    assert TS_RE.match(posted["ts"]) and posted["channel"] == APPROVALS
    assert float(second["ts"]) > float(posted["ts"])
    assert posted["message"]["blocks"][0]["block_id"]  # Slack fills in missing block ids
    record = slack.message(APPROVALS, posted["ts"])
    assert record is not None and record["text"] == "approved"
    assert record["updates"] == [{"text": "plan 42", "blocks": posted["message"]["blocks"]}]
    assert record["blocks"] == posted["message"]["blocks"]  # blocks kept when update omits them
    assert [m["thread_ts"] for m in slack.messages_in(APPROVALS)] == [None, posted["ts"]]
    assert slack.ephemerals[0]["user"] == "U0ALICE" and TS_RE.match(ephemeral["message_ts"])
    assert seen == [
        ("message", "plan 42"),
        ("message", "b"),
        ("update", "approved"),
        ("ephemeral", "only you"),
    ]
    buttons = slack.find_buttons(record)
    assert [(b["block_id"], b["value"], b["text"]["text"]) for b in buttons] == [
        ("decide", "42", "Approve"),
        ("decide", "42:no", "Reject"),
    ]
    assert buttons[0]["action_id"] == "approve" and buttons[1]["action_id"]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_update_unknown_ts_and_empty_message(client: AsyncWebClient) -> None:
    missing = await api_error(client.chat_update(channel=APPROVALS, ts="1.000001", text="x"))
    empty = await api_error(client.chat_postMessage(channel=APPROVALS, text=""))
    assert missing.response["error"] == "message_not_found"
    assert empty.response["error"] == "no_text"


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (section("x" * 3001), "cannot exceed 3000 characters"),
        (
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "a",
                        "text": {"type": "plain_text", "text": "y" * 76},
                    }
                ],
            },
            "cannot exceed 75",
        ),
        ({"type": "no_such_block"}, "unsupported block type"),
        (section("ok", colour="red"), "invalid additional property: colour"),
        ({"type": "section", "text": "not an object"}, "expected an object"),
        ({"type": "actions", "elements": []}, "must not be empty"),
    ],
)
async def test_invalid_block_rejected(
    slack: LocalSlack, client: AsyncWebClient, block: dict[str, Any], reason: str
) -> None:
    error = await api_error(client.chat_postMessage(channel=APPROVALS, text="t", blocks=[block]))
    assert error.response["error"] == "invalid_blocks"
    [message] = error.response["response_metadata"]["messages"]
    assert message.startswith("[ERROR] ") and reason in message, message
    assert slack.messages == []


async def test_block_count_limit(slack: LocalSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=APPROVALS, text="t", blocks=[section("b")] * 50)
    error = await api_error(
        client.chat_postMessage(channel=APPROVALS, text="t", blocks=[section("b")] * 51)
    )
    assert error.response["error"] == "invalid_blocks"
    assert "no more than 50 items" in error.response["response_metadata"]["messages"][0]
    assert len(slack.messages) == 1


async def test_unknown_channel(client: AsyncWebClient) -> None:
    for call in (
        client.chat_postMessage(channel="C0NOPE", text="x"),
        client.chat_postEphemeral(channel="C0NOPE", user="U0ALICE", text="x"),
        client.conversations_info(channel="C0NOPE"),
    ):
        assert (await api_error(call)).response["error"] == "channel_not_found"


async def test_unknown_method(slack: LocalSlack, client: AsyncWebClient) -> None:
    error = await api_error(client.api_call("chat.doesNotExist", json={"channel": APPROVALS}))
    assert error.response.status_code == 404
    assert error.response["error"] == "unknown_method"
    assert slack.calls[-1] == {"method": "chat.doesNotExist", "args": {"channel": APPROVALS}}


async def test_auth_required(slack: LocalSlack) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    assert (await api_error(wrong.auth_test())).response["error"] == "invalid_auth"
    async with aiohttp.ClientSession() as http:
        anonymous = await http.post(f"{slack.api_url}auth.test")
        assert (await anonymous.json())["error"] == "not_authed"
        form = {"token": TOKEN, "channel": APPROVALS, "blocks": json.dumps([section("form")])}
        posted = await (await http.post(f"{slack.api_url}chat.postMessage", data=form)).json()
    assert posted["ok"], posted
    assert slack.messages[0]["blocks"][0]["text"]["text"] == "form"


async def test_rate_limit_then_retry_handler_succeeds(
    slack: LocalSlack, client: AsyncWebClient
) -> None:
    slack.limit("chat.postMessage", times=1, retry_after=1)
    error = await api_error(client.chat_postMessage(channel=APPROVALS, text="x"))
    assert error.response.status_code == 429 and error.response["error"] == "ratelimited"
    assert error.response.headers["Retry-After"] in ("1", ["1"])

    slack.limit("chat.postMessage", times=1, retry_after=1)
    patient = AsyncWebClient(
        token=TOKEN,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    response = await patient.chat_postMessage(channel=APPROVALS, text="eventually")
    assert response["ok"] and time.monotonic() - started >= 1.0
    assert slack.rate_limited["chat.postMessage"] == 2
    assert [m["text"] for m in slack.messages] == ["eventually"]


async def test_directory_methods(client: AsyncWebClient) -> None:
    group = await client.usergroups_users_list(usergroup="S0DBA")
    user = await client.users_info(user="U0BOB")
    channel = await client.conversations_info(channel=APPROVALS)
    assert group["users"] == ["U0ALICE", "U0BOB"]
    assert user["user"]["profile"]["display_name"] == "Bob"
    assert channel["channel"]["name"] == "migration-approvals"
    nogroup = await api_error(client.usergroups_users_list(usergroup="S0NOPE"))
    nouser = await api_error(client.users_info(user="U0NOPE"))
    assert nogroup.response["error"] == "no_such_subteam"
    assert nouser.response["error"] == "user_not_found"


async def test_response_url(slack: LocalSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=APPROVALS, text="card", blocks=approval_blocks())
    url = slack.response_url("click-1", channel=APPROVALS, ts=posted["ts"])
    hook = AsyncWebhookClient(url)

    ephemeral = await hook.send(text="working on it")
    replaced = await hook.send(text="done", blocks=[section("*Approved*")], replace_original=True)
    invalid = await hook.send(text="x", blocks=[section("y" * 3001)])
    unknown = await AsyncWebhookClient(url.replace("click-1", "never-issued")).send(text="x")

    assert (ephemeral.status_code, ephemeral.body) == (200, "ok")
    assert (replaced.status_code, replaced.body) == (200, "ok")
    assert (invalid.status_code, invalid.body) == (400, "invalid_blocks")
    assert unknown.status_code == 404
    assert [(r["key"], r["text"], r["response_type"]) for r in slack.responses] == [
        ("click-1", "working on it", "ephemeral"),
        ("click-1", "done", "ephemeral"),
    ]
    card = slack.message(APPROVALS, posted["ts"])
    assert card is not None and card["text"] == "done" and len(card["updates"]) == 1


async def test_views_open_and_update(slack: LocalSlack, client: AsyncWebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "schedule",
        "title": {"type": "plain_text", "text": "Schedule"},
        "blocks": [section("When?")],
    }
    trigger = payloads.new_trigger_id()

    bad_trigger = await api_error(client.views_open(trigger_id="nope", view=view))
    long_title = {**view, "title": {"type": "plain_text", "text": "T" * 25}}
    bad_view = await api_error(client.views_open(trigger_id=trigger, view=long_title))
    opened = await client.views_open(trigger_id=trigger, view=view)
    reused = await api_error(client.views_open(trigger_id=trigger, view=view))
    updated = await client.views_update(
        view_id=opened["view"]["id"], view={**view, "blocks": [section("Done")]}
    )

    assert bad_trigger.response["error"] == "invalid_trigger_id"
    assert bad_view.response["error"] == "invalid_arguments"
    assert "title" in bad_view.response["response_metadata"]["messages"][0]
    assert reused.response["error"] == "exchanged_trigger_id"
    assert opened["view"]["id"].startswith("V") and opened["view"]["callback_id"] == "schedule"
    assert updated["view"]["id"] == opened["view"]["id"]
    assert slack.views == [updated["view"]]
    assert slack.views[0]["blocks"][0]["text"]["text"] == "Done"


def test_sign_verifies_with_slack_sdk() -> None:
    body = payloads.slash_command(
        "/barq",
        "plan orders",
        user_id="U0ALICE",
        user_name="alice",
        channel_id=APPROVALS,
        response_url="http://x/respond/k",
        trigger_id="1.2.ab",
    )
    headers = payloads.sign(body, SECRET, payloads.now_ts())
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    assert not SignatureVerifier(SECRET).is_valid_request(body + "&x=1", headers)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = parse_qs(body)
    assert {k: v[0] for k, v in fields.items() if k in ("command", "text", "user_id")} == {
        "command": "/barq",
        "text": "plan orders",
        "user_id": "U0ALICE",
    }
    assert {
        "token",
        "team_id",
        "team_domain",
        "channel_name",
        "api_app_id",
        "response_url",
        "trigger_id",
        "is_enterprise_install",
        "user_name",
        "channel_id",
    } <= fields.keys()


def bolt_app(slack: LocalSlack, seen: list[Any]) -> AsyncApp:
    app = AsyncApp(
        signing_secret=SECRET, client=AsyncWebClient(token=TOKEN, base_url=slack.api_url)
    )

    @app.command("/barq")
    async def on_command(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any]) -> None:
        await ack()
        seen.append(command["text"])
        await respond(text=f"planning {command['text']}")

    @app.action("approve")
    async def on_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        seen.append((body["actions"][0]["value"], body["container"]["message_ts"]))

    @app.view("schedule")
    async def on_submit(ack: AsyncAck, view: dict[str, Any]) -> None:
        await ack()
        seen.append(view["state"]["values"]["when"]["at"]["value"])

    return app


async def dispatch(app: AsyncApp, body: str, secret: str = SECRET) -> BoltResponse:
    headers = payloads.sign(body, secret, payloads.now_ts())
    return await app.async_dispatch(AsyncBoltRequest(body=body, headers=dict(headers)))


async def test_bolt_accepts_signed_slash_command(slack: LocalSlack) -> None:
    seen: list[Any] = []
    app = bolt_app(slack, seen)
    body = payloads.slash_command(
        "/barq",
        "orders",
        user_id="U0ALICE",
        user_name="alice",
        channel_id=APPROVALS,
        response_url=slack.response_url("cmd"),
        trigger_id=payloads.new_trigger_id(),
    )

    forged = await dispatch(app, body, secret="wrong-secret")
    accepted = await dispatch(app, body)
    await slack.wait_for(lambda s: s.responses)

    assert forged.status == 401
    assert accepted.status == 200
    assert seen == ["orders"]
    assert slack.responses[0]["text"] == "planning orders"
    assert "auth.test" in [c["method"] for c in slack.calls]  # Bolt authorised against LocalSlack


async def test_bolt_accepts_button_click_and_view_submission(
    slack: LocalSlack, client: AsyncWebClient
) -> None:
    seen: list[Any] = []
    app = bolt_app(slack, seen)
    posted = await client.chat_postMessage(channel=APPROVALS, text="card", blocks=approval_blocks())
    record = slack.message(APPROVALS, posted["ts"])
    assert record is not None
    approve = slack.find_buttons(record)[0]
    click = payloads.block_actions(
        user_id="U0BOB",
        user_name="bob",
        channel_id=APPROVALS,
        message=record,
        action=approve,
        response_url=slack.response_url("click"),
        trigger_id=payloads.new_trigger_id(),
    )
    opened = await client.views_open(
        trigger_id=payloads.new_trigger_id(),
        view={
            "type": "modal",
            "callback_id": "schedule",
            "title": {"type": "plain_text", "text": "S"},
            "blocks": [section("When?")],
        },
    )
    submit = payloads.view_submission(
        user_id="U0BOB",
        user_name="bob",
        view=opened["view"],
        values={"when": {"at": {"type": "plain_text_input", "value": "02:00"}}},
    )

    assert (await dispatch(app, click)).status == 200
    assert (await dispatch(app, submit)).status == 200
    await slack.wait_for(lambda s: len(seen) == 2)
    assert seen == [("42", posted["ts"]), "02:00"]
    clicked = json.loads(parse_qs(click)["payload"][0])
    assert clicked["message"]["blocks"] == record["blocks"] and "updates" not in clicked["message"]


async def test_wait_for_times_out_with_context(slack: LocalSlack, client: AsyncWebClient) -> None:
    await client.auth_test()
    with pytest.raises(TimeoutError, match=r"after 0\.1s.*'auth\.test'"):
        await slack.wait_for(lambda s: s.messages, timeout=0.1)
