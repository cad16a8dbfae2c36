"""One module per pager service: each turns one queued page event (as the outbox holds it,
without secrets) and its contact's configuration (with them) into one HTTP request."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HttpRequest:
    """One POST to make; ``secrets`` are the values never to log or show (the caller redacts
    them from whatever it reports)."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


def json_body(document: dict[str, Any]) -> bytes:
    """``document`` as compact UTF-8 JSON, the bytes that are sent (and signed)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()
