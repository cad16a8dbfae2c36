"""Block Kit as terminal text, for the local console (pure)."""

from __future__ import annotations

import difflib
import re
from typing import Any

_EMOJI = {  # every shortcode the bot's messages use (tests/test_console_output.py checks)
    ":warning:": "⚠",
    ":white_check_mark:": "✅",
    ":hourglass_flowing_sand:": "⏳",
    ":arrows_counterclockwise:": "🔄",
    ":octagonal_sign:": "🛑",
    ":large_green_circle:": "🟢",
    ":red_circle:": "🔴",
    ":no_entry_sign:": "🚫",
    ":x:": "❌",
    ":alarm_clock:": "⏰",
    ":inbox_tray:": "📥",
    ":double_vertical_bar:": "⏸",
    ":information_source:": "ℹ",
    ":repeat:": "🔁",
    ":rewind:": "⏪",
    ":hourglass:": "⌛",
    ":rotating_light:": "🚨",
}


def mrkdwn(text: str, names: dict[str, str]) -> str:
    """Slack mrkdwn as plain text: mentions by name, emoji, no code fences."""
    text = re.sub(r"<@(\w+)>", lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<!subteam\^(\w+)>", lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    # Slack shows each reader a <!date^…|fallback> in their zone; the console, the fallback
    # (the target's zone)
    text = re.sub(r"<!date\^\d+\^[^|>]*\|([^>]*)>", lambda m: m.group(1), text)
    for code, glyph in _EMOJI.items():
        text = text.replace(code, glyph)
    text = re.sub(r"```(.*?)```", lambda m: _indent(m.group(1)), text, flags=re.S)
    return text


def _indent(code: str) -> str:
    return "\n" + "\n".join("    " + line for line in code.strip().splitlines()) + "\n"


def render(blocks: list[dict[str, Any]], names: dict[str, str], number: Any) -> list[str]:
    """Lines for ``blocks``; ``number(button)`` returns the number the user types to click."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"━━ {block['text']['text']} ━━")
        elif kind == "section":
            lines.append(mrkdwn(block["text"]["text"], names))
        elif kind == "context":
            for element in block["elements"]:
                text = mrkdwn(element.get("text", ""), names)
                lines += ["  " + line for line in text.split("\n")]
        elif kind == "divider":
            lines.append("─" * 40)
        elif kind == "actions":
            buttons = [
                f"[{number({**e, 'block_id': block.get('block_id')})}] {e['text']['text']}"
                for e in block["elements"]
                if e.get("type") == "button"
            ]
            lines.append("   ".join(buttons))
    return lines


def changed(before: list[str], after: list[str]) -> list[str]:
    """The lines of ``after`` that are new or different from ``before`` (a message updated in
    place): unchanged lines are left out, removed ones too."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return [
        line
        for tag, _i1, _i2, j1, j2 in matcher.get_opcodes()
        if tag in ("replace", "insert")
        for line in after[j1:j2]
    ]
