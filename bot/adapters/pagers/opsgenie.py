"""Opsgenie: the Alert API (create with ``alias`` = the migration's dedup key, then
acknowledge and close by alias). Change events are not sent to Opsgenie."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bot.adapters.pagers import HttpRequest, json_body
from bot.settings import OpsgenieContact


def request(event: dict[str, Any], contact: OpsgenieContact) -> HttpRequest | None:
    """The Alert API request for the queued ``event``; None for an event Opsgenie does not
    take (a change event)."""
    key = contact.api_key.get_secret_value()
    headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {key}"}
    alerts = f"{contact.url.rstrip('/')}/v2/alerts"
    m = event["migration"]
    alias = quote(event["dedup_key"], safe="")
    action = event["action"]
    if action == "trigger":
        details = {**event["details"], "slack_thread": event["slack_thread"]}
        body: dict[str, Any] = {
            "message": event["summary"][:130],
            "alias": event["dedup_key"],
            "description": _description(event)[:15000],
            "responders": contact.responders,
            "details": {k: str(v)[:8000] for k, v in details.items()},
            "entity": f"migration #{m['id']} on {m['target']}",
            "source": "barq-bot",
            "priority": "P1" if m["production"] else "P3",
            "tags": ["barq", "data-migration", m["target"]],
        }
        return HttpRequest(alerts, json_body(body), headers, (key,))
    if action in ("acknowledge", "resolve"):
        verb = "acknowledge" if action == "acknowledge" else "close"
        body = {"source": "barq-bot", "note": event["summary"][:25000]}
        if event.get("user"):
            body["user"] = event["user"]
        url = f"{alerts}/{alias}/{verb}?identifierType=alias"
        return HttpRequest(url, json_body(body), headers, (key,))
    return None


def _description(event: dict[str, Any]) -> str:
    lines = [event["summary"], ""]
    lines += [f"{k}: {v}" for k, v in event["details"].items()]
    if event["link"]:
        lines += ["", f"Slack thread: {event['link']}"]
    return "\n".join(lines)
