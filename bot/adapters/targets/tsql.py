"""T-SQL script handling: split a script into batches on ``GO`` the way sqlcmd does."""

from __future__ import annotations

import re

__all__ = ["MAX_GO_COUNT", "split_go"]

#: Upper bound for ``GO <count>``; a typo such as ``GO 1000000000`` must not exhaust memory.
MAX_GO_COUNT = 10_000

_GO_LINE = re.compile(r"\s*go(?=\s|--|$)(?P<rest>.*)", re.IGNORECASE | re.DOTALL)
_LINE = re.compile(r"[^\n]*\n|[^\n]+")


class _Lexer:
    """Tracks whether a position is inside a comment, string or quoted identifier.

    The state carries over from one line to the next, so a line reading ``GO`` inside a
    multi-line string or a (possibly nested) block comment is not a batch separator.
    """

    def __init__(self) -> None:
        self.depth = 0  # nesting level of /* */ comments
        self.close: str | None = None  # closing quote while inside '...', "..." or [...]

    @property
    def at_top_level(self) -> bool:
        """True when the lexer is outside every comment, string and quoted identifier."""
        return self.depth == 0 and self.close is None

    def feed(self, line: str) -> None:
        """Advance the state over one line (a ``--`` comment ends with the line)."""
        i, n = 0, len(line)
        while i < n:
            pair = line[i : i + 2]
            if self.depth:
                if pair == "/*":
                    self.depth, i = self.depth + 1, i + 2
                elif pair == "*/":
                    self.depth, i = self.depth - 1, i + 2
                else:
                    i += 1
            elif self.close is not None:
                if pair == self.close * 2:  # '' ]] "" are escapes, not terminators
                    i += 2
                elif line[i] == self.close:
                    self.close, i = None, i + 1
                else:
                    i += 1
            elif pair == "--":
                return
            elif pair == "/*":
                self.depth, i = 1, i + 2
            else:
                self.close = {"'": "'", '"': '"', "[": "]"}.get(line[i])
                i += 1


def _go_count(rest: str, line_no: int, line: str) -> int:
    """Parse what follows ``GO`` on a separator line: nothing, a count, and/or ``-- comment``."""
    token = rest.split("--", 1)[0].strip()
    if not token:
        return 1
    if not re.fullmatch(r"[0-9]+", token) or not 0 < int(token) <= MAX_GO_COUNT:
        raise ValueError(
            f"line {line_no}: malformed GO count {token!r} in {line.strip()!r} "
            f"(expected an integer from 1 to {MAX_GO_COUNT})"
        )
    return int(token)


def split_go(script: str) -> list[str]:
    """Split a T-SQL script into batches exactly where sqlcmd would.

    A separator is a line holding only ``GO`` (any case, surrounding whitespace allowed),
    optionally followed by a repeat count (``GO 3`` sends the batch three times) and/or a
    ``-- comment``. Lines inside block comments (which nest in T-SQL), single-quoted strings
    (``''`` escapes), double-quoted or ``[bracketed]`` identifiers are never separators.
    Batches are returned stripped of surrounding whitespace; empty batches are dropped and
    a trailing batch without ``GO`` is kept.

    Raises ValueError naming the line for a malformed or out-of-range count.
    """
    batches: list[str] = []
    current: list[str] = []
    lexer = _Lexer()
    for line_no, match in enumerate(_LINE.finditer(script), start=1):
        line = match.group(0)
        go = _GO_LINE.fullmatch(line.rstrip("\r\n")) if lexer.at_top_level else None
        if go is None:
            lexer.feed(line)
            current.append(line)
            continue
        count = _go_count(go.group("rest"), line_no, line)
        batch = "".join(current).strip()
        current = []
        if batch:
            batches.extend([batch] * count)
    tail = "".join(current).strip()
    if tail:
        batches.append(tail)
    return batches
