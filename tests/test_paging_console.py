"""The console (`barq-bot shell --demo`) with no pager configured: pages are lines saying
where they would have gone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.test_console import _console
from tests.test_paging import ALICE


def test_a_production_run_shows_its_change_events_as_lines(tmp_path: Path) -> None:
    """A production run's change events (start and finish) are printed, not sent (run now,
    outside the demo's windows, under the emergency policy)."""
    out = _console(
        tmp_path,
        "/migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=production"
        " when=now",
        "/as bob",
        "1",
        "/as dave",
        "1",
        "/migrate status 1",
    )
    assert "#1 tenant-consolidation on production succeeded" in out
    started = "📟 change event: #1 tenant-consolidation started on production — not sent"
    assert started in out
    assert "📟 change event: #1 tenant-consolidation on production: succeeded" in out
    assert "no emergency contacts are configured for production" in out
    assert "📟 resolve" not in out, "nothing was paged, so nothing is resolved"


def test_a_page_is_a_line_naming_where_it_would_have_gone() -> None:
    """A failure's page on the console says its severity, its incident and its reason."""
    from bot.local.pagers import ConsolePager
    from tests.test_domain_paging import migration

    lines: list[str] = []
    pager = ConsolePager(lines.append, lambda target: target == "production")
    m = migration(target="production", requester=ALICE)
    pager.trigger(m, "#1 x on production: step 2 (y) failed: boom", {}, datetime.now(UTC))
    assert len(lines) == 1
    said = f"page (critical, incident {m.run_key}): #1 x on production: step 2 (y) failed"
    assert said in lines[0]
    assert "not sent: no emergency contacts are configured for production" in lines[0]
    pager.resolve(m, "#1 was rolled back by #2", datetime.now(UTC))
    assert "📟 resolve incident" in lines[1]
