"""Split a SQL text into statements on top-level semicolons (PostgreSQL, SQLite); SQL Server
splits on sqlcmd's ``GO`` separators instead (``tsql.split_go``)."""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")     # string literal or quoted identifier
    |(?P<line>--[^\n]*)                             # line comment
    |(?P<block>/\*.*?\*/)                           # block comment
    |(?P<dollar>\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)  # PostgreSQL dollar quoting
    |(?P<semi>;)
    """,
    re.S | re.X,
)


def split_statements(sql: str) -> list[str]:
    """Split on semicolons that are outside literals, comments and dollar quotes."""
    parts: list[str] = []
    start = 0
    for match in _TOKEN.finditer(sql):
        if match.lastgroup == "semi":
            parts.append(sql[start : match.start()])
            start = match.end()
    parts.append(sql[start:])
    return [p.strip() for p in parts if _has_code(p)]


def _has_code(text: str) -> bool:
    stripped = re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    return bool(stripped.strip())
