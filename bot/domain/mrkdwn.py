"""Text that people typed, put into the bot's Slack messages (pure)."""

from __future__ import annotations


def escape(text: str) -> str:
    """User text shown as it was typed: no mentions, links or formatting of its own."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
