"""`/migrate status page=N` pages beyond the last ten, and `/migrate status <id>` shows who
requested and decided, and when, over the real Slack flow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.domain.lifecycle import Event
from bot.domain.plan import Plan
from bot.errors import UsageError
from handlers.parse import Command, parse
from tests import harness
from tests.harness import Harness
from tests.test_store import _plan as store_plan

ALICE, BOB = "U0ALICE", "U0BOB"


def _plan(n: int) -> Plan:
    return store_plan(f"{n:064d}")  # a distinct plan: the same one would be answered as pending


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("status page=2", Command("status", page=2)),
        ("status PAGE=12", Command("status", page=12)),
        ("status", Command("status", page=1)),
    ],
)
def test_status_takes_a_page(text: str, command: Command) -> None:
    """`status page=N` asks for the N-th page of migrations."""
    assert parse(text) == command


@pytest.mark.parametrize("text", ["status page=0", "status page=x", "status page=2 3"])
def test_a_bad_page_says_what_to_type(text: str) -> None:
    """A page that is not a whole number from 1 is refused with an example."""
    with pytest.raises(UsageError) as info:
        parse(text)
    assert "/migrate status page=2" in str(info.value)


@pytest_asyncio.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    bot = await harness.start(tmp_path, harness.policies(f"sqlite:///{tmp_path / 'staging.db'}"))
    yield bot
    await bot.close()


@pytest.mark.asyncio
async def test_status_pages_beyond_the_last_ten(h: Harness) -> None:
    """Twelve migrations: page 1 shows #12 to #3 and points to page 2, which shows #2 and #1."""
    for n in range(1, 13):
        h.bot.store.create(_plan(n), {}, ALICE, harness.now())
    first = harness.text_of(await h.slash(ALICE, "status"))
    assert "*#12*" in first and "*#3*" in first and "*#2*" not in first
    assert "/migrate status page=2" in first
    second = harness.text_of(await h.slash(ALICE, "status page=2"))
    assert "*#2*" in second and "*#1*" in second and "*#3*" not in second
    assert "page=3" not in second
    assert [m.id for m in h.bot.store.recent(2, offset=10)] == [2, 1]


@pytest.mark.asyncio
async def test_status_of_one_shows_who_approved_and_when(h: Harness) -> None:
    """The approver and the time of the approval are in `/migrate status <id>`."""
    m, _ = h.bot.store.create(_plan(1), {}, ALICE, harness.now())
    h.bot.store.record_decision(
        m.id, user=BOB, decision="approve", plan_hash=m.plan.hash, now=harness.now(),
        event=Event.APPROVE,
    )  # fmt: skip
    reply = harness.text_of(await h.slash(ALICE, f"status {m.id}"))
    assert f"approved by <@{BOB}> at " in reply
