"""Use-case refusals: a bad plan or request is explained and creates nothing. One bot, built
once for the module, serves every case: these tests only read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Bot, build
from bot.errors import BarqError
from bot.local.barq_schema import create_demo_database
from bot.settings import load_settings
from tests import harness

GOOD = {"source_tenant": "3", "target_tenant": "7"}


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    folder: Path = tmp_path_factory.mktemp("refusals")
    staging = create_demo_database(folder / "staging.db", now=harness.now())
    yield build(
        load_settings(
            database_url=f"sqlite:///{folder / 'state.db'}",
            targets=harness.policies(staging),
            slack_bot_token="xoxb-local",
            slack_api_url="http://127.0.0.1:9/api/",
        )
    )


@pytest.mark.parametrize(
    ("runbook", "params", "target", "message"),
    [
        ("nope", GOOD, "staging", "there is no runbook 'nope'; runbooks: "),
        ("tenant-consolidation", {"source_tenant": "3"}, "staging", "missing target_tenant"),
        ("tenant-consolidation", {**GOOD, "tenant": "3"}, "staging", "no parameter 'tenant'"),
        ("tenant-consolidation", {**GOOD, "source_tenant": "x"}, "staging", "not a whole number"),
        (
            "tenant-consolidation",
            {**GOOD, "source_tenant": "3 OR 1=1"},
            "staging",
            "'3 OR 1=1' is not a whole number",
        ),
        ("tenant-consolidation", {**GOOD, "target_tenant": "3"}, "staging", "must differ"),
        ("tenant-consolidation", GOOD, "qa", "there is no target 'qa'; targets: staging"),
        ("tenant-consolidation", {**GOOD, "target_tenant": "999"}, "staging", "no tenant"),
    ],
)
async def test_a_bad_request_is_explained_and_creates_nothing(
    bot: Bot, runbook: str, params: dict[str, str], target: str, message: str
) -> None:
    """Planning and requesting refuse with the same message; no migration is recorded."""
    for use_case in (bot.service.plan, lambda *a: bot.service.request("U0ALICE", *a)):
        with pytest.raises(BarqError) as info:
            await use_case(runbook, params, target)
        assert message in str(info.value)
    assert bot.store.recent() == []


async def test_status_of_an_unknown_migration_says_where_to_look(bot: Bot) -> None:
    """Asking for a migration that does not exist points at /migrate status."""
    with pytest.raises(BarqError, match=r"there is no migration #42: see /migrate status"):
        await bot.service.status(42)
