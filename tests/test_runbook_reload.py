"""Runbooks are reloaded when their files change, without a restart: /migrate plan shows the
edit, a request made before it can no longer be approved or started, and an edit that does not
load keeps the last good version and says so."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.runbook_files import RunbookLibrary
from bot.domain.lifecycle import State
from bot.local.barq_schema import create_demo_database
from tests import harness
from tests.harness import APPROVALS, Harness

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "U0ALICE", "U0BOB"
ARGS = "tenant-consolidation source_tenant=3 target_tenant=7 on=staging"
MOVE = {"source_tenant": "3", "target_tenant": "7"}
# the rows the move-tasks step's batches select
OLD = "ownership\n    table: Tasks\n    key: Id\n    where: TenantId = :source_tenant\n"
NEW = "ownership\n    table: Tasks\n    key: Id\n    where: TenantId = :source_tenant AND Id >= 1\n"
BAD = "ownership\n    table: Tasks\n    key: Id\n    where: TenantId = :no_such_param\n"


def _edit(runbooks: Path, old: str, new: str) -> None:
    path = runbooks / "tenant-consolidation.yaml"
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))


@pytest.fixture
def runbooks(tmp_path: Path) -> Path:
    return Path(shutil.copytree(ROOT / "runbooks", tmp_path / "runbooks"))


@pytest.fixture
async def h(tmp_path: Path, runbooks: Path) -> AsyncIterator[Harness]:
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    started = await harness.start(
        tmp_path, harness.policies(staging), runbooks_dir=runbooks, poll_seconds=3600
    )
    library = started.bot.service.runbooks
    assert isinstance(library, RunbookLibrary)
    library.interval = 0  # look at the files on every use, not every 2 s
    yield started
    await started.close()


async def test_plan_shows_an_edited_runbook_without_a_restart(h: Harness, runbooks: Path) -> None:
    """The plan after an edit of the file has the new SQL."""
    before = harness.text_of(await h.slash(ALICE, f"plan {ARGS}"))
    assert "move-tasks" in before and "Id >= 1" not in before
    _edit(runbooks, OLD, NEW)
    after = harness.text_of(await h.slash(ALICE, f"plan {ARGS}"))
    assert "Id >= 1" in after


async def test_a_request_made_before_an_edit_cannot_be_approved(h: Harness, runbooks: Path) -> None:
    """The approval request's plan is no longer what the runbook says: refused, not counted."""
    await h.slash(ALICE, f"request {ARGS}")
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    _edit(runbooks, OLD, NEW)
    reply = await h.click(BOB, h.approval_message(1), "approve")
    assert reply is not None
    assert "the plan changed since it was requested" in harness.text_of(reply)
    assert h.bot.store.get(1).state is State.REQUESTED
    assert h.bot.store.prior_approvals(1) == []


async def test_an_approved_run_whose_runbook_changed_is_cancelled_not_started(
    h: Harness, runbooks: Path
) -> None:
    """Approved but not started when the runbook is edited: the pass that would start it
    cancels it instead, records why and says so in its thread; the target is untouched."""
    tasks = h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")
    m, _ = await h.bot.service.request(ALICE, "tenant-consolidation", MOVE, "staging")
    h.approve_in_store(m, BOB)  # the next pass would start it
    _edit(runbooks, OLD, NEW)
    await h.settle()
    assert h.bot.store.get(m.id).state is State.CANCELLED
    assert h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == tasks
    last = h.bot.store.audit_trail(m.id)[-1]
    assert (last.actor, last.action) == ("bot", "cancel")
    assert "tenant-consolidation changed since plan" in last.detail["reason"]
    await h.bot.delivery.drain()
    thread = [x for x in h.slack.messages_in(APPROVALS) if x.get("thread_ts")]
    assert thread and thread[-1]["thread_ts"] == h.approval_message(m.id)["ts"]
    assert "was not started and is cancelled" in thread[-1]["text"]
    assert "Request it again" in thread[-1]["text"]


async def test_an_approved_run_whose_runbook_did_not_change_starts(h: Harness) -> None:
    """The check does not stop a run whose plan is still what the runbook says."""
    m, _ = await h.bot.service.request(ALICE, "tenant-consolidation", MOVE, "staging")
    await h.bot.service.approve(m.id, BOB, m.plan.hash)
    await h.settle()
    assert h.bot.store.get(m.id).state is State.SUCCEEDED


async def test_an_invalid_edit_keeps_the_last_good_runbook_and_says_so(
    h: Harness, runbooks: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that no longer loads: planning it says what is wrong and that the last good
    version is kept; that version still serves the request made before (it can be approved)
    and /migrate list; fixing the file makes the new version the one used."""
    await h.slash(ALICE, f"request {ARGS}")
    await h.slack.wait_for(lambda s: s.messages_in(APPROVALS))
    _edit(runbooks, OLD, BAD)
    with caplog.at_level(logging.ERROR, logger="bot.adapters.runbook_files"):
        refusal = harness.text_of(await h.slash(ALICE, f"plan {ARGS}"))
        await h.slash(ALICE, f"plan {ARGS}")
    assert "tenant-consolidation.yaml" in refusal and "no_such_param" in refusal, refusal
    assert "keeps the version it last loaded" in refusal
    logged = [r for r in caplog.records if "tenant-consolidation.yaml" in r.getMessage()]
    assert len(logged) == 1, "logged once, not on every use"
    assert "tenant-consolidation" in [r.name for r in await h.bot.service.runbook_list()]

    reply = await h.click(BOB, h.approval_message(1), "approve")
    assert reply is not None and "You approved #1" in harness.text_of(reply)

    _edit(runbooks, BAD, NEW)
    assert "Id >= 1" in harness.text_of(await h.slash(ALICE, f"plan {ARGS}"))


def test_the_directory_is_looked_at_at_most_every_interval(runbooks: Path) -> None:
    """Between looks an edit is not seen; after the interval it is, and a removed file's
    runbook is gone and a new file's runbook is there."""
    now = [100.0]
    library = RunbookLibrary(runbooks, interval=2.0, clock=lambda: now[0])
    old = library.get("tenant-consolidation")
    assert old is not None
    _edit(runbooks, OLD, NEW)
    (runbooks / "role-migration.yaml").unlink()
    copy = (runbooks / "data-anonymization.yaml").read_text()
    (runbooks / "copy-of-it.yaml").write_text(
        copy.replace("name: data-anonymization", "name: copy-of-it")
    )
    now[0] += 1.9
    assert library.get("tenant-consolidation") is old
    now[0] += 0.1
    new = library.get("tenant-consolidation")
    assert new is not None and new.digest != old.digest
    names = [r.name for r in library.all()]
    assert "role-migration" not in names and "copy-of-it" in names
    assert library.problem("tenant-consolidation") is None
