"""Parsing the text of ``/migrate`` into a command (pure)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from bot.domain.blocking import manual_level
from bot.errors import UsageError

MAX_TEXT = 4000  # Slack caps what people type well below this; parsing stays instant up to it
SUBCOMMANDS = (
    "help",
    "list",
    "plan",
    "request",
    "status",
    "cancel",
    "pause",
    "resume",
    "throttle",
    "rollback",
    "windows",
    "schedule",
)
WAIVE = "waive-unverified"  # rollback's option: restore a backup that was not verified
_PARAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})
_BLANK = " \t\r\n"


@dataclass(frozen=True)
class Command:
    """A parsed ``/migrate`` command."""

    name: str
    runbook: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    migration_id: int | None = None
    page: int = 1  # status without an id: which page of migrations, newest first
    waiver: str | None = None  # rollback: why an unverified backup may be restored
    level: float | None = None  # throttle: how much to slow the run (0 to 1); None lifts it
    when: str | None = None  # request, schedule: next, now or a local date-time (windows)


def parse(text: str) -> Command:
    """Parse ``/migrate`` text; raise UsageError saying what was wrong and what to type."""
    if len(text) > MAX_TEXT:
        raise UsageError(
            f"the command is {len(text):,} characters long; /migrate reads at most {MAX_TEXT:,}."
            " Give the runbook's parameters as short values (ids, names), e.g. `/migrate plan"
            " tenant-consolidation source_tenant=3 target_tenant=7 on=staging`"
        )
    try:
        words = split(text.translate(_SMART_QUOTES))
    except ValueError as exc:
        raise UsageError(f"cannot read the command ({exc}): check your quotes") from None
    if not words:
        return Command("help")
    name, rest = words[0].lower(), words[1:]
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise UsageError(
            f"unknown subcommand {words[0]!r}.{hint} Subcommands: {', '.join(SUBCOMMANDS)}; "
            "see `/migrate help`"
        )
    if name in ("help", "list"):
        return Command(name)
    if name in ("status", "cancel", "pause", "resume"):
        return _with_id(name, rest)
    if name == "rollback":
        return _rollback(rest)
    if name == "throttle":
        return _throttle(rest)
    if name == "windows":
        if len(rest) > 1:
            raise UsageError("write `/migrate windows` or `/migrate windows production`")
        return Command(name, target=rest[0] if rest else None)
    if name == "schedule":
        return _schedule(rest)
    return _planned(name, rest)


def split(text: str) -> list[str]:
    """Split ``text`` into words as ``shlex.split`` does (POSIX rules, no comments), in one pass.

    Blanks separate words; a backslash keeps the next character; single quotes keep everything
    up to the next single quote; in double quotes a backslash keeps only ``"`` and ``\\``.
    Raise ValueError "No closing quotation" or "No escaped character", as shlex does.
    """
    words: list[str] = []
    word: list[str] | None = None  # None between words; [] once a word (even '') has begun
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch in _BLANK:
            if word is not None:
                words.append("".join(word))
                word = None
            i += 1
            continue
        word = [] if word is None else word
        if ch == "\\":
            if i + 1 == end:
                raise ValueError("No escaped character")
            word.append(text[i + 1])
            i += 2
        elif ch == "'":
            close = text.find("'", i + 1)
            if close < 0:
                raise ValueError("No closing quotation")
            word.append(text[i + 1 : close])
            i = close + 1
        elif ch == '"':
            i = _double_quoted(text, i + 1, word)
        else:
            word.append(ch)
            i += 1
    if word is not None:
        words.append("".join(word))
    return words


def _double_quoted(text: str, i: int, word: list[str]) -> int:
    """Append the double-quoted part starting at ``i`` to ``word``; return where it ends."""
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return i + 1
        if ch == "\\":
            if i + 1 == len(text):
                raise ValueError("No escaped character")
            after = text[i + 1]
            word.append(after if after in '"\\' else ch + after)
            i += 2
        else:
            word.append(ch)
            i += 1
    raise ValueError("No closing quotation")


def _with_id(name: str, rest: list[str]) -> Command:
    if name == "status" and len(rest) == 1 and rest[0].lower().startswith("page="):
        return Command(name, page=_page(rest[0][len("page=") :]))
    if not rest:
        if name == "status":
            return Command(name)
        verb = "roll back" if name == "rollback" else name
        raise UsageError(f"say which migration to {verb}: `/migrate {name} 12`")
    if len(rest) > 1 or not re.fullmatch(r"#?\d{1,9}", rest[0]):
        more = " or `/migrate status page=2` for older ones" if name == "status" else ""
        raise UsageError(
            f"{' '.join(rest)!r} is not a migration id: write e.g. `/migrate {name} 12`{more}"
        )
    return Command(name, migration_id=int(rest[0].lstrip("#")))


def _rollback(rest: list[str]) -> Command:
    """``rollback 12`` or ``rollback 12 waive-unverified="why"``."""
    options = [w for w in rest[1:] if w.lower().replace("_", "-").startswith(WAIVE + "=")]
    others = [w for w in rest[1:] if w not in options]
    if others or len(options) > 1:
        raise UsageError(
            f"{' '.join(rest[1:])!r} is not an option of rollback: write `/migrate rollback 12`,"
            f' or, to restore a backup that was not verified, `/migrate rollback 12 {WAIVE}="why"`'
        )
    command = _with_id("rollback", rest[:1])
    if not options:
        return command
    reason = options[0].split("=", 1)[1].strip()
    if len(reason) < 3:
        raise UsageError(
            f'say why the unverified backup may be restored: `/migrate rollback 12 {WAIVE}="why"`'
        )
    return Command("rollback", migration_id=command.migration_id, waiver=reason)


def _throttle(rest: list[str]) -> Command:
    """``throttle 12 50%`` (slow the run by half) or ``throttle 12 off``."""
    if len(rest) != 2:
        raise UsageError(
            "say which migration and how much to slow it: `/migrate throttle 12 50%` (0 to"
            " 100%), or `/migrate throttle 12 off` to lift it"
        )
    command = _with_id("throttle", rest[:1])
    try:
        level = manual_level(rest[1])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Command("throttle", migration_id=command.migration_id, level=level)


def _schedule(rest: list[str]) -> Command:
    """``schedule 12 when=2026-12-05T01:00`` (or when=next)."""
    example = "`/migrate schedule 12 when=2026-12-05T01:00` (or when=next)"
    whens = [w for w in rest[1:] if w.lower().startswith("when=")]
    if len(rest) != 2 or len(whens) != 1 or not whens[0][len("when=") :]:
        raise UsageError(f"say which migration and when: {example}")
    command = _with_id("schedule", rest[:1])
    return Command("schedule", migration_id=command.migration_id, when=whens[0][len("when=") :])


def _page(raw: str) -> int:
    if not re.fullmatch(r"\d{1,6}", raw) or int(raw) < 1:
        raise UsageError(
            f"page {raw!r} is not a page number: write e.g. `/migrate status page=2` (1 is the"
            " newest)"
        )
    return int(raw)


def _planned(name: str, rest: list[str]) -> Command:
    example = f"`/migrate {name} tenant-consolidation source_tenant=3 target_tenant=7 on=staging`"
    if not rest or "=" in rest[0]:
        raise UsageError(f"name a runbook first (see `/migrate list`), e.g. {example}")
    runbook, params = rest[0], {}
    for word in rest[1:]:
        match = _PARAM.match(word)
        if match is None:
            raise UsageError(f"{word!r} is not a parameter: write name=value, e.g. {example}")
        key, value = match.group(1), match.group(2)
        if key in params:
            raise UsageError(f"{key} is given twice; give each parameter once")
        params[key] = value
    target = params.pop("on", None)
    if not target:
        raise UsageError(f"say which database to use with on=<target>, e.g. {example}")
    when = params.pop("when", None) if name == "request" else None
    return Command(name, runbook=runbook, params=params, target=target, when=when)
