"""A status page hook, shaped for Statuspage-style incidents: a production run opens a
scheduled maintenance "in progress" and completes it when it ends; a failure opens an
incident ("investigating"), acknowledged as "identified", resolved as "resolved". Signed as the
webhook is (``X-Barq-Signature``); ``id`` (the migration's dedup key) names the incident or
maintenance to update."""

from __future__ import annotations

from typing import Any

from bot.adapters.pagers import HttpRequest, json_body
from bot.adapters.pagers.webhook import SIGNATURE_HEADER, sign
from bot.settings import StatusPageConfig

_INCIDENT = {"trigger": "investigating", "acknowledge": "identified", "resolve": "resolved"}


def request(event: dict[str, Any], config: StatusPageConfig) -> HttpRequest:
    """The signed POST for the queued ``event``."""
    secret = config.secret.get_secret_value()
    m = event["migration"]
    if event["action"] == "change":
        kind = "maintenance"
        status = "in_progress" if m["state"] in ("running", "cancelling") else "completed"
        name = f"Data maintenance on {m['target']}"
        impact = "maintenance"
    else:
        kind, status = "incident", _INCIDENT[event["action"]]
        name = f"Data migration problem on {m['target']}"
        impact = "major" if m["production"] else "minor"
    document = {
        "kind": kind,
        "id": f"{event['dedup_key']}-{kind}",
        "event_id": event["event_id"],
        kind: {
            "name": name,
            "status": status,
            "impact_override": impact,
            "body": event["summary"],
            "metadata": {"barq": {"migration": m["id"], "runbook": m["runbook"]}},
        },
    }
    body = json_body(document)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)}
    return HttpRequest(config.url, body, headers, (secret,))
