"""The console shows a modal's field errors as the modal would: the message, not its JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.local.console import Console
from tests import harness
from tests.harness import Harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path, "staging", poll_seconds=3600) as started:
        yield started


async def test_a_too_short_reason_shows_the_fields_error_text(h: Harness) -> None:
    """A reject reason of two letters is refused with the modal's own words; the modal stays
    open and a proper reason then rejects."""
    out: list[str] = []
    console = Console(h.bot, h.slack, user="alice", out=out.append)
    await console.handle(
        "/migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"
    )
    await console.handle("/as carol")
    reject = next(n for n, (_, b) in console.buttons.items() if b["action_id"] == "reject")
    await console.handle(str(reject))
    out.clear()
    await console.handle("no")
    said = "\n".join(out)
    assert "the modal says: Say why, in a few words." in said
    assert "{" not in said and "response_action" not in said
    await console.handle("wrong tenant")
    assert h.bot.store.get(1).state.value == "rejected"
