"""The read-only part of the Slack flow over real HTTP on loopback: help, list, dry runs,
refusals and request signatures. Nothing here changes state, so one bot serves the module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests import harness
from tests.harness import Harness

pytestmark = pytest.mark.asyncio(loop_scope="module")
ALICE = "U0ALICE"
REQUEST = "request tenant-consolidation source_tenant=3 target_tenant=7 on=staging"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path_factory.mktemp("slash"), "staging") as bot:
        yield bot


async def test_help_lists_every_subcommand_with_an_example(h: Harness) -> None:
    """/migrate help shows each subcommand and an example of it."""
    reply = harness.text_of(await h.slash(ALICE, "help"))
    for sub in ("help", "list", "plan", "request", "status", "cancel", "pause", "resume"):
        assert f"/migrate {sub}" in reply


async def test_list_shows_runbooks_with_description_and_parameters(h: Harness) -> None:
    """/migrate list shows each runbook's description and parameters."""
    reply = harness.text_of(await h.slash(ALICE, "list"))
    assert "tenant-consolidation" in reply and "source_tenant" in reply and "Move a tenant" in reply


async def test_plan_is_a_dry_run_with_counts_sql_checks_and_rollback(h: Harness) -> None:
    """A plan shows steps, SQL, live row counts, checks and rollback, and changes nothing."""
    tasks = h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")
    reply = harness.text_of(await h.slash(ALICE, REQUEST.replace("request", "plan", 1)))
    assert f"Rows it will touch now: *{tasks:,}*" in reply
    assert "keyset batches over `Tasks`" in reply
    journal = "INSERT INTO barq_journal_batches (migration_id, table_name, first_id, last_id,"
    each_batch = "UPDATE Tasks SET\\nTenantId = :target_tenant\\nWHERE Id >= :_barq_from AND"
    assert f"Each batch runs:```{journal} row_ids)" in reply  # SQLite: the journal first
    assert f"``````{each_batch}" in reply
    assert "Passes when the value is `== 0`" in reply and "Rollback" in reply
    assert h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == tasks
    assert h.bot.store.recent() == []


async def test_forged_signature_and_stale_timestamp_get_401(h: Harness) -> None:
    """Requests not signed with the signing secret, or older than 5 minutes, are refused."""
    body = "command=%2Fmigrate&text=help&user_id=U0ALICE&response_url=x&trigger_id=1"
    assert (await h.post(body, secret="not-the-secret")).status == 401
    assert (await h.post(body, timestamp=harness.payloads.now_ts() - 6 * 60)).status == 401
    assert (await h.post(body)).status == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [  # each rule is tested where it lives (test_parse, test_service_refusals); here, the
        # two ways a refusal reaches the user: in the ack, and through response_url
        ("frobnicate", "unknown subcommand 'frobnicate'"),
        ("plan tenant-consolidation source_tenant=3 target_tenant=999 on=staging", "no tenant"),
    ],
)
async def test_bad_input_gets_a_clear_message_and_runs_nothing(
    h: Harness, text: str, message: str
) -> None:
    """A mistake is explained to the user who made it, and no migration is created."""
    reply = harness.text_of(await h.slash(ALICE, text))
    assert message in reply
    assert h.bot.store.recent() == []
