"""Loopback stand-ins for the pager services, for tests and the demo: PagerDuty's Events API
v2 (and Change Events), Opsgenie's Alert API, and a webhook receiver that checks the
HMAC signature. Each keeps what it received and the incidents (alerts) it holds, and can be
told to fail: answer 429 (with Retry-After) or 500 for the next requests."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.domain.records import Migration

_SEVERITIES = {"critical", "error", "warning", "info"}
_ACTIONS = {"trigger", "acknowledge", "resolve"}


@dataclass
class Incident:
    """One incident (PagerDuty) or alert (Opsgenie), by its dedup key (alias)."""

    key: str
    status: str  # triggered | acknowledged | resolved (Opsgenie: open | acked | closed)
    summary: str
    events: list[dict[str, Any]] = field(default_factory=list)


class _Server:
    """An aiohttp server on 127.0.0.1 that records requests and fails on demand."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # every request: path, headers, body
        self.incidents: dict[str, Incident] = {}
        self._fail: list[tuple[int, str | None]] = []  # answers to give first
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail(self, status: int, times: int = 1, *, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (e.g. 429, 500)."""
        self._fail += [(status, retry_after)] * times

    def heal(self) -> None:
        """Stop failing."""
        self._fail.clear()

    async def start(self, port: int = 0) -> _Server:
        """Serve on loopback, on ``port`` (a free one when 0)."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        """Stop serving; safe to call more than once."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        record = {
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "raw": raw,
        }
        self.requests.append(record)
        if self._fail:
            status, retry_after = self._fail.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.json_response({"status": "failure"}, status=status, headers=headers)
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"message": "body is not JSON"}, status=400)
        record["body"] = body
        return self.answer(request, body)

    def answer(self, request: web.Request, body: Any) -> web.Response:
        """The answer to a well-formed request."""
        raise NotImplementedError


class LocalPagerDuty(_Server):
    """PagerDuty's Events API v2 (``/v2/enqueue``) and Change Events (``/v2/change/enqueue``):
    202 with the dedup key, 400 with ``errors`` for an invalid event."""

    def __init__(self, routing_key: str) -> None:
        super().__init__()
        self.routing_key = routing_key
        self.changes: list[dict[str, Any]] = []

    def answer(self, request: web.Request, body: Any) -> web.Response:
        """Validate as PagerDuty does and keep the incident (or change)."""
        errors = _pd_errors(body, self.routing_key, change=request.path == "/v2/change/enqueue")
        if request.path not in ("/v2/enqueue", "/v2/change/enqueue"):
            return web.json_response({"message": "Not found"}, status=404)
        if errors:
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                status=400,
            )
        if request.path == "/v2/change/enqueue":
            self.changes.append(body)
            return web.json_response(
                {"status": "success", "message": "Change event processed"}, status=202
            )
        key = body.get("dedup_key") or hashlib.sha256(request.path.encode()).hexdigest()
        action = body["event_action"]
        incident = self.incidents.get(key)
        if action == "trigger":
            if incident is None or incident.status == "resolved":
                incident = Incident(key, "triggered", body["payload"]["summary"])
                self.incidents[key] = incident
        elif incident is not None and incident.status != "resolved":
            incident.status = "acknowledged" if action == "acknowledge" else "resolved"
        if incident is not None:
            incident.events.append(body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )


def _pd_errors(body: Any, routing_key: str, *, change: bool) -> list[str]:
    if not isinstance(body, dict):
        return ["Event object must be a JSON object"]
    errors = []
    if body.get("routing_key") != routing_key:
        errors.append(
            "'routing_key' is invalid" if body.get("routing_key") else "'routing_key' is missing"
        )
    payload = body.get("payload")
    if change:
        if not isinstance(payload, dict) or not payload.get("summary"):
            errors.append("'payload.summary' is missing or blank")
        return errors
    action = body.get("event_action")
    if action not in _ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if action in ("acknowledge", "resolve") and not body.get("dedup_key"):
        errors.append("'dedup_key' is missing")
    if action == "trigger":
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing"]
        for name in ("summary", "source"):
            if not payload.get(name):
                errors.append(f"'payload.{name}' is missing or blank")
        if payload.get("severity") not in _SEVERITIES:
            errors.append(
                "'payload.severity' is invalid (must be one of critical, error, warning, info)"
            )
        if len(str(payload.get("summary", ""))) > 1024:
            errors.append("'payload.summary' is longer than 1024 characters")
    return errors


class LocalOpsgenie(_Server):
    """Opsgenie's Alert API: create (``/v2/alerts``), acknowledge and close by alias; 202
    with a request id, 401 for a wrong key, 422 for a bad alert."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key

    def answer(self, request: web.Request, body: Any) -> web.Response:
        """Check the key and the alert, and keep it."""
        if request.headers.get("Authorization") != f"GenieKey {self.api_key}":
            return web.json_response({"message": "Could not authenticate"}, status=401)
        parts = request.path.strip("/").split("/")
        accepted = web.json_response(
            {
                "result": "Request will be processed",
                "took": 0.01,
                "requestId": f"r{len(self.requests)}",
            },
            status=202,
        )
        if parts == ["v2", "alerts"]:
            if not isinstance(body, dict) or not body.get("message"):
                return web.json_response({"message": "Message can not be empty."}, status=422)
            if len(body["message"]) > 130:
                return web.json_response({"message": "Message is longer than 130"}, status=422)
            alias = body.get("alias") or f"a{len(self.requests)}"
            alert = self.incidents.get(alias)
            if alert is None or alert.status == "closed":
                self.incidents[alias] = alert = Incident(alias, "open", body["message"])
            alert.events.append({"action": "create", **body})
            return accepted
        if (
            len(parts) == 4
            and parts[:2] == ["v2", "alerts"]
            and parts[3] in ("acknowledge", "close")
        ):
            if request.query.get("identifierType") != "alias":
                return web.json_response({"message": "identifierType must be alias"}, status=422)
            alert = self.incidents.get(parts[2])
            if alert is not None and alert.status != "closed":
                alert.status = "acked" if parts[3] == "acknowledge" else "closed"
                alert.events.append({"action": parts[3], **body})
            return accepted
        return web.json_response({"message": "Not found"}, status=404)


class LocalWebhook(_Server):
    """A webhook receiver that accepts only bodies signed with ``secret``
    (``X-Barq-Signature: sha256=<hex>``) and keeps their events."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.events: list[dict[str, Any]] = []

    def answer(self, request: web.Request, body: Any) -> web.Response:
        """Verify the signature over the exact bytes received."""
        raw = self.requests[-1]["raw"]
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Barq-Signature", "")
        if not hmac.compare_digest(expected, given):
            return web.json_response({"message": "bad signature"}, status=401)
        self.events.append(body)
        return web.json_response({"ok": True})


class ConsolePager:
    """The Pager of the console when no contacts are configured: each page is a line saying
    where it would have gone."""

    def __init__(self, out: Callable[[str], None], production: Callable[[str], bool]) -> None:
        self.out = out
        self.production = production
        self._open: set[str] = set()  # the incidents paged (run keys), as a pager keeps them

    def _say(self, m: Migration, what: str) -> None:
        self.out(
            f"\n📟 {what} — not sent: no emergency contacts are configured for {m.target};"
            " it would have gone to its PagerDuty, Opsgenie, webhook or Slack contacts"
            " (contacts: in the configuration)"
        )

    def trigger(self, m: Migration, reason: str, details: dict[str, Any], now: datetime) -> None:
        """Say where the page would have gone."""
        severity = "critical" if self.production(m.target) else "error"
        self._open.add(m.run_key)
        self._say(m, f"page ({severity}, incident {m.run_key}): {reason}")

    def acknowledge(self, m: Migration, user: str, now: datetime) -> None:
        """Say where the acknowledgement would have gone."""
        if m.run_key in self._open:
            self._say(m, f"acknowledge incident {m.run_key} (by {user})")

    def resolve(self, m: Migration, why: str, now: datetime) -> None:
        """Say where the resolution would have gone, for an incident that was paged."""
        if m.run_key in self._open:
            self._open.discard(m.run_key)
            self._say(m, f"resolve incident {m.run_key}: {why}")

    def change(self, m: Migration, summary: str, now: datetime) -> None:
        """Say where a production change event would have gone."""
        if self.production(m.target):
            self._say(m, f"change event: {summary}")
