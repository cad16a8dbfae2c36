"""Loopback stand-in for the Slack Web API, used by tests and the local demo console.

`LocalSlack` serves `/api/<method>` and `/respond/<key>` on 127.0.0.1, checks requests the way
Slack does (auth, channels, Block Kit, views, rate limits) and records everything it accepts.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

logger = logging.getLogger(__name__)

Record = dict[str, Any]
Listener = Callable[[str, Record], None]

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT_CHARS = 40_000
_TRIGGER_RE = re.compile(r"^\d+\.\d+\.[0-9a-f]+$")


class SlackError(Exception):
    """A Web API failure, answered as `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, messages: list[str] | None = None) -> None:
        super().__init__(error)
        self.body: Record = {"ok": False, "error": error}
        if messages:
            self.body["response_metadata"] = {"messages": messages}


def block_errors(blocks: Any, limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """Return Slack-style `[ERROR] ...` messages for blocks Slack would reject (empty if valid)."""
    if not isinstance(blocks, list):
        return ["[ERROR] must be an array [json-pointer:/blocks]"]
    if len(blocks) > limit:
        return [f"[ERROR] no more than {limit} items allowed [json-pointer:/blocks]"]
    problems = ((i, _block_problem(raw)) for i, raw in enumerate(blocks))
    return [f"[ERROR] {p[0]} [json-pointer:/blocks/{i}{p[1]}]" for i, p in problems if p]


def view_errors(view: Any) -> list[str]:
    """Return `[ERROR] ...` messages for a view Slack would reject (empty if valid)."""
    if not isinstance(view, dict):
        return ["[ERROR] must be an object [json-pointer:/view]"]
    try:
        View(**view).validate_json()
    except Exception as exc:
        return [f"[ERROR] {exc} [json-pointer:/view]"]
    if view.get("type") == "modal" and not view.get("title"):
        return ["[ERROR] missing required field: title [json-pointer:/view]"]
    return block_errors(view.get("blocks", []), limit=MAX_VIEW_BLOCKS)


def _block_problem(raw: Any) -> tuple[str, str] | None:
    """Validate one block with slack_sdk's models, then check nothing was silently dropped."""
    try:
        block = Block.parse(raw) if isinstance(raw, dict) else None
        if block is None:
            type_name = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
            return f"unsupported block type: {type_name!r}", ""
        block.validate_json()
        normalized = block.to_dict()  # to_dict() also validates nested elements and texts
    except Exception as exc:
        return str(exc) or type(exc).__name__, ""
    return _dropped(raw, normalized, "")


def _dropped(raw: Any, norm: Any, path: str) -> tuple[str, str] | None:
    """Find what slack_sdk dropped or coerced while parsing; Slack rejects it instead."""
    if isinstance(raw, list | dict) and type(norm) is not type(raw):
        return "invalid value", path
    if isinstance(raw, dict):
        for key, value in raw.items():
            if key not in norm and value is not None:
                empty = value in ("", [], {}) and not isinstance(value, bool)
                why = "must not be empty" if empty else f"invalid additional property: {key}"
                return why, f"{path}/{key}" if empty else path
            found = key in norm and _dropped(value, norm[key], f"{path}/{key}")
            if found:
                return found
    elif isinstance(raw, list):
        for i, (item, item_norm) in enumerate(zip(raw, norm, strict=False)):
            found = item_norm is None and ("unsupported element", f"{path}/{i}")
            found = found or _dropped(item, item_norm, f"{path}/{i}")
            if found:
                return found
    elif isinstance(norm, dict | list):
        return f"expected an object, got {type(raw).__name__}", path
    return None


def _with_ids(blocks: list[Any]) -> list[Any]:
    """Copy blocks, filling in missing block_id/action_id as Slack does."""
    filled = copy.deepcopy(blocks)
    for block in filled:
        block.setdefault("block_id", secrets.token_urlsafe(4))
        for element in _interactive_elements(block):
            element.setdefault("action_id", secrets.token_urlsafe(4))
    return filled


def _interactive_elements(block: Record) -> list[Record]:
    found = block.get("elements") if block.get("type") == "actions" else None
    found = found or [block.get("accessory"), block.get("element")]
    return [e for e in found if isinstance(e, dict) and e.get("type") != "image"]


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Merge the query string and a JSON or form body; decode JSON-encoded blocks/view."""
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise SlackError("invalid_json") from exc
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        args.update(body)
    elif request.method == "POST":
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    for key, error in (("blocks", "invalid_blocks_format"), ("view", "invalid_arguments")):
        if isinstance(args.get(key), str):
            try:
                args[key] = json.loads(args[key])
            except ValueError as exc:
                raise SlackError(error, [f"[ERROR] {key} is not valid JSON"]) from exc
    return args


class _Bucket:
    """A token bucket: ``rate`` calls per second, at most ``capacity`` at once."""

    def __init__(self, rate: float, capacity: int, clock: Callable[[], float]) -> None:
        self.rate, self.capacity, self.clock = rate, capacity, clock
        self.tokens, self.at = float(capacity), clock()

    def take(self) -> int | None:
        """Take one call; None if allowed, else the whole seconds until one is."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return max(1, math.ceil((1 - self.tokens) / self.rate))


class LocalSlack:
    """An aiohttp server on 127.0.0.1 that answers like Slack's Web API and records requests."""

    team_id, bot_user_id, bot_id, app_id = "T0LOCAL", "U0BARQBOT", "B0BARQBOT", "A0LOCAL"

    def __init__(
        self,
        token: str = "xoxb-local",
        channels: dict[str, str] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        users: dict[str, str] | None = None,
        app_token: str = "xapp-local",
    ) -> None:
        self.token = token
        self.app_token = app_token  # Socket Mode: apps.connections.open takes only this one
        self.channels = dict(channels or {})
        self.usergroups = {gid: list(members) for gid, members in (usergroups or {}).items()}
        self.users = dict(users or {})
        self.messages: list[Record] = []
        self.ephemerals: list[Record] = []
        self.responses: list[Record] = []
        self.views: list[Record] = []
        self.calls: list[Record] = []
        self.rate_limited: Counter[str] = Counter()
        self._limits: dict[str, list[int]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._listeners: list[Listener] = []
        self._response_keys: dict[str, Record] = {}
        self._used_triggers: set[str] = set()
        self._last_ts = 0
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_acks: dict[str, asyncio.Future[Record]] = {}

    async def start(self, port: int = 0) -> LocalSlack:
        """Bind 127.0.0.1 (a random free port when `port` is 0) and start serving."""
        app = web.Application()
        app.router.add_route("GET", "/api/{method}", self._api)
        app.router.add_route("POST", "/api/{method}", self._api)
        app.router.add_route("POST", "/respond/{key}", self._respond)
        app.router.add_route("GET", "/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/"
        logger.info("LocalSlack listening on %s", self._base_url)
        return self

    async def stop(self) -> None:
        """Stop serving; safe to call more than once."""
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalSlack:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """Base URL for `AsyncWebClient(base_url=...)`, ending in `/api/`."""
        return f"{self._base()}api/"

    def response_url(self, key: str, *, channel: str | None = None, ts: str | None = None) -> str:
        """Register a response_url; bound to message `ts` in `channel` it can replace it."""
        self._response_keys[key] = {"channel": channel, "ts": ts}
        return f"{self._base()}respond/{key}"

    def _base(self) -> str:
        if self._base_url is None:
            raise RuntimeError("LocalSlack is not started")
        return self._base_url

    def limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and `Retry-After`."""
        self._limits[method] = [times, retry_after]

    def rate_limit(
        self,
        method: str,
        per_minute: float = 50,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Enforce Slack's per-method rate limit on ``method`` from now on (Tier 3, e.g.
        ``chat.update``: about 50 per minute): a token bucket refilled at ``per_minute`` that
        holds at most ``burst`` calls (a tenth of a minute's by default). A call beyond it is
        answered HTTP 429 with ``Retry-After``, the whole seconds until a call is allowed
        again, and counted in ``rate_limited``."""
        capacity = burst if burst is not None else max(1, round(per_minute / 10))
        self._buckets[method] = _Bucket(per_minute / 60, capacity, clock)

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(kind, record)` on each message, update, ephemeral, response, view."""
        self._listeners.append(callback)

    def message(self, channel: str, ts: str) -> Record | None:
        """Return the recorded message at `ts` in `channel`, if any."""
        return next((m for m in self.messages if m["channel"] == channel and m["ts"] == ts), None)

    def restore(self, channel: str, ts: str, text: str, blocks: list[Any]) -> Record:
        """Put back a message posted before this stand-in started (Slack keeps messages; a new
        LocalSlack starts empty), at its old ``ts`` so that updates to it land."""
        return self._store(channel, text, blocks, None, ts=ts, emit=False)

    def messages_in(self, channel: str) -> list[Record]:
        """Return the messages recorded in `channel`, oldest first."""
        return [m for m in self.messages if m["channel"] == channel]

    @staticmethod
    def find_buttons(message: Record) -> list[Record]:
        """Return copies of the message's button elements, each with its `block_id` added."""
        return [
            {**copy.deepcopy(element), "block_id": block.get("block_id")}
            for block in message.get("blocks") or []
            for element in _interactive_elements(block)
            if element.get("type") == "button"
        ]

    async def wait_for(self, predicate: Callable[[LocalSlack], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """Poll every 20 ms until `predicate(self)` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while not (result := predicate(self)):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{getattr(predicate, '__qualname__', predicate)} still false after {timeout}s;"
                    f" {len(self.messages)} messages, {len(self.ephemerals)} ephemerals,"
                    f" {len(self.responses)} responses, {len(self.views)} views;"
                    f" last calls: {[c['method'] for c in self.calls[-8:]]}"
                )
            await asyncio.sleep(0.02)
        return result

    def _emit(self, kind: str, record: Record) -> None:
        for callback in list(self._listeners):
            try:
                callback(kind, record)
            except Exception:
                logger.exception("LocalSlack listener failed on %s", kind)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            args = await _read_args(request)
        except SlackError as exc:
            return web.json_response(exc.body)
        token, auth = args.pop("token", None), request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else token
        self.calls.append({"method": method, "args": args})
        # Web API methods are served by `_m_<method with dots as underscores>` handlers.
        handler = None if "_" in method else getattr(self, f"_m_{method.replace('.', '_')}", None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        if method == "apps.connections.open" and token == self.token:
            return web.json_response({"ok": False, "error": "not_allowed_token_type"})
        if token != (self.app_token if method == "apps.connections.open" else self.token):
            error = "invalid_auth" if token else "not_authed"
            return web.json_response({"ok": False, "error": error})
        if (retry_after := self._take_limit(method) or self._throttle(method)) is not None:
            body, headers = {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
            return web.json_response(body, status=429, headers=headers)
        try:
            return web.json_response({"ok": True, **handler(args)})
        except SlackError as exc:
            return web.json_response(exc.body)

    # -- Socket Mode ------------------------------------------------------------------------

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode connections are open."""
        return len(self._sockets)

    async def socket_send(self, kind: str, payload: Record, timeout: float = 3.0) -> Record:  # noqa: ASYNC109
        """Send an envelope (``slash_commands``, ``interactive`` …) over the newest Socket Mode
        connection, as Slack does, and return the ack's payload; the app has 3 s to ack."""
        if not self._sockets:
            raise AssertionError("no Socket Mode connection is open")
        envelope_id = secrets.token_hex(8)
        acked = self._socket_acks[envelope_id] = asyncio.get_running_loop().create_future()
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
            }
        )
        try:
            async with asyncio.timeout(timeout):
                ack: Record = await acked
                return ack
        finally:
            self._socket_acks.pop(envelope_id, None)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        hello = {"type": "hello", "num_connections": len(self._sockets)}
        await ws.send_json({**hello, "connection_info": {"app_id": self.app_id}})
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                ack = json.loads(frame.data)
                waiting = self._socket_acks.get(ack.get("envelope_id", ""))
                if waiting is not None and not waiting.done():
                    waiting.set_result(ack.get("payload") or {})
        finally:
            self._sockets.remove(ws)
        return ws

    def _m_apps_connections_open(self, args: dict[str, Any]) -> Record:
        return {"url": self.api_url.replace("http://", "ws://").replace("/api/", "/socket")}

    def _throttle(self, method: str) -> int | None:
        """Take a call from ``method``'s rate limit, if it has one: None when allowed, else
        the seconds to wait (counted in ``rate_limited``)."""
        bucket = self._buckets.get(method)
        if bucket is None or (retry_after := bucket.take()) is None:
            return None
        self.rate_limited[method] += 1
        return retry_after

    def _take_limit(self, method: str) -> int | None:
        remaining, retry_after = self._limits.get(method, [0, 0])
        if remaining <= 0:
            return None
        self._limits[method][0] -= 1
        self.rate_limited[method] += 1
        return retry_after

    async def _respond(self, request: web.Request) -> web.Response:
        binding = self._response_keys.get(key := request.match_info["key"])
        if binding is None:
            return web.Response(status=404, text="no_service")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        blocks, delete = body.get("blocks") or [], bool(body.get("delete_original"))
        if block_errors(blocks):
            return web.Response(status=400, text="invalid_blocks")
        if not body.get("text") and not blocks and not delete:
            return web.Response(status=400, text="no_text")
        record = {
            "key": key,
            "text": body.get("text") or "",
            "blocks": _with_ids(blocks),
            "response_type": body.get("response_type") or "ephemeral",
            "replace_original": bool(body.get("replace_original")),
            "delete_original": delete,
        }
        self.responses.append(record)
        self._emit("response", record)
        self._apply_response(binding, record)
        return web.Response(text="ok")

    def _apply_response(self, binding: Record, response: Record) -> None:
        """Reflect a response_url post in the bound message, as Slack does."""
        original = self.message(binding["channel"], binding["ts"] or "")
        if original is not None and response["delete_original"]:
            original["deleted"] = True
            self._emit("update", original)
        elif original is not None and response["replace_original"]:
            self._replace(original, response["text"], response["blocks"])
        elif binding["channel"] and response["response_type"] == "in_channel":
            self._store(binding["channel"], response["text"], response["blocks"], None)

    def _next_ts(self) -> str:
        micros = self._last_ts = max(time.time_ns() // 1000, self._last_ts + 1)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _channel(self, args: dict[str, Any]) -> str:
        """Resolve a channel id, `#name`, or user id (a DM) the way Slack accepts them."""
        raw = str(args.get("channel") or "")
        known = {cid: cid for cid in self.channels} | {f"D{u[1:]}": f"D{u[1:]}" for u in self.users}
        known |= {f"#{name}": cid for cid, name in self.channels.items()}
        known |= {uid: f"D{uid[1:]}" for uid in self.users}
        if raw not in known:
            raise SlackError("channel_not_found")
        return known[raw]

    def _content(self, args: dict[str, Any], old_blocks: list[Any] | None = None) -> Record:
        text, blocks = str(args.get("text") or ""), args.get("blocks", old_blocks) or []
        if errors := block_errors(blocks):
            raise SlackError("invalid_blocks", errors)
        if not text and not blocks:
            raise SlackError("no_text")
        if len(text) > MAX_TEXT_CHARS:
            raise SlackError("msg_too_long")
        return {"text": text, "blocks": _with_ids(blocks)}

    def _store(
        self,
        channel: str,
        text: str,
        blocks: list[Any],
        thread_ts: str | None,
        *,
        ts: str | None = None,
        emit: bool = True,
    ) -> Record:
        record = {
            "channel": channel,
            "ts": ts or self._next_ts(),
            "text": text,
            "blocks": blocks,
            "thread_ts": thread_ts,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "updates": [],
        }
        self.messages.append(record)
        if emit:
            self._emit("message", record)
        return record

    def _replace(self, record: Record, text: str, blocks: list[Any]) -> None:
        record["updates"].append({"text": record["text"], "blocks": record["blocks"]})
        record.update(text=text, blocks=blocks)
        self._emit("update", record)

    def _slack_message(self, record: Record) -> Record:
        keys = ("user", "bot_id", "text", "ts", "thread_ts", "blocks")
        message = {k: record[k] for k in keys if record.get(k) is not None}
        return {"type": "message", "app_id": self.app_id, "team": self.team_id, **message}

    def _m_auth_test(self, args: dict[str, Any]) -> Record:
        return {
            "url": "https://barq-local.slack.com/",
            "team": "BARQ Local",
            "user": "barq-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, args: dict[str, Any]) -> Record:
        channel, content = self._channel(args), self._content(args)
        record = self._store(channel, content["text"], content["blocks"], args.get("thread_ts"))
        return {"channel": channel, "ts": record["ts"], "message": self._slack_message(record)}

    def _m_chat_update(self, args: dict[str, Any]) -> Record:
        channel = self._channel(args)
        record = self.message(channel, str(args.get("ts") or ""))
        if record is None or record.get("deleted"):
            raise SlackError("message_not_found")
        content = self._content(args, old_blocks=record["blocks"])
        self._replace(record, content["text"], content["blocks"])
        return {
            "channel": channel,
            "ts": record["ts"],
            "text": record["text"],
            "message": self._slack_message(record),
        }

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> Record:
        channel, user = self._channel(args), str(args.get("user") or "")
        if not user or (self.users and user not in self.users):
            raise SlackError("user_not_in_channel")
        record = {
            "channel": channel,
            "user": user,
            "ts": self._next_ts(),
            "thread_ts": args.get("thread_ts"),
            **self._content(args),
        }
        self.ephemerals.append(record)
        self._emit("ephemeral", record)
        return {"message_ts": record["ts"]}

    def _checked_view(self, args: dict[str, Any], view_id: str) -> Record:
        if errors := view_errors(args.get("view")):
            raise SlackError("invalid_arguments", errors)
        view: Record = args["view"]
        return {
            "callback_id": "",
            "private_metadata": "",
            **view,
            "id": view_id,
            "root_view_id": view_id,
            "blocks": _with_ids(view.get("blocks", [])),
            "state": {"values": {}},
            "hash": f"{time.time():.6f}.{secrets.token_hex(4)}",
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
        }

    def _m_views_open(self, args: dict[str, Any]) -> Record:
        trigger_id = str(args.get("trigger_id") or "")
        if not _TRIGGER_RE.match(trigger_id):
            raise SlackError("invalid_trigger_id")
        if trigger_id in self._used_triggers:
            raise SlackError("exchanged_trigger_id")
        view = self._checked_view(args, view_id=f"V{len(self.views) + 1:010d}")
        self._used_triggers.add(trigger_id)
        self.views.append(view)
        self._emit("view", view)
        return {"view": view}

    def _m_views_update(self, args: dict[str, Any]) -> Record:
        current = next((v for v in self.views if v["id"] == args.get("view_id")), None)
        if current is None:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        fresh = self._checked_view(args, view_id=current["id"])
        current.clear()
        current.update(fresh)
        self._emit("view", current)
        return {"view": current}

    def _m_usergroups_users_list(self, args: dict[str, Any]) -> Record:
        if args.get("usergroup") not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[args["usergroup"]])}

    def _m_users_info(self, args: dict[str, Any]) -> Record:
        if (user_id := args.get("user")) not in self.users:
            raise SlackError("user_not_found")
        name = self.users[user_id]
        return {
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": name.lower(),
                "real_name": name,
                "deleted": False,
                "is_bot": False,
                "profile": {"display_name": name, "real_name": name},
            }
        }

    def _m_conversations_info(self, args: dict[str, Any]) -> Record:
        channel_id = self._channel(args)
        is_im = channel_id not in self.channels
        return {
            "channel": {
                "id": channel_id,
                "name": self.channels.get(channel_id, ""),
                "is_channel": not is_im,
                "is_im": is_im,
                "is_private": False,
                "is_archived": False,
                "is_member": True,
            }
        }
