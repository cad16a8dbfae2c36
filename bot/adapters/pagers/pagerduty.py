"""PagerDuty: Events API v2 (``/v2/enqueue``: trigger, acknowledge, resolve, one incident per
``dedup_key``) and Change Events (``/v2/change/enqueue``)."""

from __future__ import annotations

from typing import Any

from bot.adapters.pagers import HttpRequest, json_body
from bot.settings import PagerDutyContact

_ACTIONS = {"trigger", "acknowledge", "resolve"}


def request(event: dict[str, Any], contact: PagerDutyContact) -> HttpRequest:
    """The Events API request for the queued ``event`` (see bot/adapters/pager.py)."""
    key = contact.routing_key.get_secret_value()
    base = contact.url.rstrip("/")
    m = event["migration"]
    links = (
        [{"href": event["link"], "text": f"Slack thread of #{m['id']}"}] if event["link"] else []
    )
    if event["action"] == "change":
        body: dict[str, Any] = {
            "routing_key": key,
            "payload": {
                "summary": event["summary"][:1024],
                "timestamp": event["at"],
                "source": f"barq-bot/{m['target']}",
                "custom_details": {**_migration(m), **event["details"]},
            },
            "links": links,
        }
        return HttpRequest(f"{base}/v2/change/enqueue", json_body(body), _HEADERS, (key,))
    if event["action"] not in _ACTIONS:
        raise ValueError(f"PagerDuty has no event action {event['action']!r}")
    body = {"routing_key": key, "event_action": event["action"], "dedup_key": event["dedup_key"]}
    if event["action"] == "trigger":
        body["payload"] = {
            "summary": event["summary"][:1024],
            "source": f"barq-bot/{m['target']}",
            "severity": contact.severity or ("critical" if m["production"] else "error"),
            "timestamp": event["at"],
            "component": m["target"],
            "group": m["runbook"],
            "class": "data-migration",
            "custom_details": {
                **_migration(m),
                **event["details"],
                "slack_thread": event["slack_thread"],
            },
        }
        body["client"] = "BARQ migration bot"
        if event["link"]:
            body["client_url"] = event["link"]
        body["links"] = links
    return HttpRequest(f"{base}/v2/enqueue", json_body(body), _HEADERS, (key,))


_HEADERS = {"Content-Type": "application/json"}


def _migration(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "migration": f"#{m['id']} {m['runbook']} {m['args']}".strip(),
        "target": m["target"],
        "requester": m["requester"],
    }
