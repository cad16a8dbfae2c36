"""The console restarted with ``--keep``: the approval requests still pending are shown again,
with buttons that work."""

from __future__ import annotations

from pathlib import Path

from tests.test_console import _console


def test_pending_requests_keep_their_buttons_after_a_restart_with_keep(tmp_path: Path) -> None:
    """alice requests and quits; after a restart with --keep, bob clicks Approve and it runs."""
    _console(
        tmp_path, "/migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"
    )
    out = _console(tmp_path, "/as bob", "1", keep=True)
    assert "1 approval request is still waiting from the last run" in out
    assert "[1] Approve   [2] Reject" in out
    assert "You approved #1" in out
    assert "#1 tenant-consolidation on staging succeeded" in out
