"""What a page says: the one line for the person woken up, and the details they need (the
failed step, its error, rows committed per step, the backup). Pure."""

from __future__ import annotations

import re
from typing import Any

from bot.domain.records import Migration, StepRun

_TIMEOUT = re.compile(r"time[ -]?out|timed out|did not finish within|HYT00", re.IGNORECASE)


def failure_reason(m: Migration, index: int, name: str, kind: str, error: str) -> str:
    """The page's summary for a run that failed at step ``index`` (``name``, of ``kind``):
    a step over its timeout and a failed check or validation say so."""
    if _TIMEOUT.search(error):
        what = f"step {index} ({name}) exceeded its timeout"
    elif kind == "check":
        what = f"check {index} ({name}) failed"
    else:
        what = f"step {index} ({name}) failed"
    return f"#{m.id} {m.runbook} on {m.target}: {what}: {first_line(error)}"


def run_failed(m: Migration, error: str | None) -> str:
    """The page's summary for a run that failed outside a step (its target unreachable, an
    internal error)."""
    return f"#{m.id} {m.runbook} on {m.target} failed: {first_line(error or 'unknown error')}"


def details(m: Migration, runs: list[StepRun]) -> dict[str, Any]:
    """The step, the error, rows committed per step, and the newest backup of ``m``."""
    failed = next((r for r in reversed(runs) if r.state == "failed"), None)
    committed: dict[str, int] = {}
    for run in runs:
        if run.state in ("succeeded", "stopped", "failed"):
            committed[f"{run.step_index}. {run.name}"] = run.rows
    backup = m.backups[-1] if m.backups else None
    found: dict[str, Any] = {
        "state": m.state.value,
        "step": f"{failed.step_index} ({failed.name}, {failed.kind})" if failed else None,
        "error": (failed.detail if failed else None) or m.error,
        "rows_committed": committed,
        "backup": _backup(backup) if backup else "none taken",
        "requester": m.requester,
    }
    if m.rollback_of is not None:
        found["rollback_of"] = f"#{m.rollback_of}"
    return found


def first_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, at most ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _backup(backup: dict[str, Any]) -> str:
    verified = "verified" if backup.get("verified") else "NOT verified"
    size = backup.get("size_bytes")
    sized = f", {size:,} bytes" if isinstance(size, int) else ""
    return f"{backup.get('location', '?')} ({verified}{sized})"
