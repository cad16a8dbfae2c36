"""The local console as a new user meets it: `barq-bot shell --demo` reading lines from
standard input, on freshly made demo SQLite targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _console(tmp_path: Path, *lines: str, keep: bool = False) -> str:
    workdir = ["--workdir", str(tmp_path / "demo"), *(["--keep"] if keep else [])]
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "shell", "--demo", *workdir],
        cwd=ROOT,
        input="\n".join([*lines, "/quit"]) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_request_approve_and_run_in_the_console(tmp_path: Path) -> None:
    """alice requests, her own click is refused, bob's click runs it, status shows it done."""
    out = _console(
        tmp_path,
        "/migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=staging",
        "1",
        "/as bob",
        "1",
        "/migrate status 1",
    )
    assert "[1] Approve   [2] Reject" in out
    assert "you requested this migration, so someone else must approve it" in out
    assert "#1 tenant-consolidation on staging succeeded" in out
    assert "All 8 steps committed and verified." in out
    status = out[out.rindex("bob> /migrate status 1") :]
    assert "succeeded" in status and "8 of 8 steps done" in status
    assert "  requested by @alice" in status, "context lines are indented"


def test_reject_with_a_reason_in_the_console(tmp_path: Path) -> None:
    """Reject opens a modal; the typed reason is recorded and shown on the request."""
    out = _console(
        tmp_path,
        "/migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=production",
        "/as carol",
        "2",
        "not during the sales peak",
        "/migrate status 1",
    )
    assert "modal:" in out
    assert "not during the sales peak" in out
    status = out[out.rindex("carol> /migrate status 1") :]
    assert "rejected" in status


def test_windows_in_the_console(tmp_path: Path) -> None:
    """The demo's production has downtime windows: /migrate windows lists them in its zone,
    and an approved production run waits for the next one."""
    out = _console(
        tmp_path,
        "/migrate windows",
        "/migrate plan tenant-consolidation source_tenant=3 target_tenant=7 on=production",
        "/migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=production",
        "/as bob",
        "1",
        "/as dave",
        "1",
        "/migrate status 1",
    )
    listing = out[out.index("/migrate windows") :]
    assert "*production*" in listing or "production" in listing
    assert "Europe/Amsterdam" in listing and "01:00 CET>, 3h" not in listing
    assert "01:00 CET, 3h" in listing, "the console shows the target's zone"
    assert "is scheduled for" in out
    assert "requested now, it would run in the window from" in out, "the plan says where"
    status = out[out.rindex("/migrate status 1") :]
    assert "approved" in status
