"""Oracle: tenant consolidation by the bot equals the runbook's "Tenant Consolidation" SQL.

Both copies hold the same realistic data; the procedure's T-SQL (translated by sqlglot) moves
tenant 2 into tenant 4 on one, the bot's runbook on the other; every table is then compared row
for row (the bot's journal and checkpoints are its own tables and are not compared).
"""

from __future__ import annotations

from pathlib import Path

from tests import oracle


async def test_consolidation_equals_the_procedure(
    tmp_path: Path, twin_urls: tuple[str, str]
) -> None:
    bot_url, procedure_url = twin_urls
    oracle.seed(twin_urls)
    params = {"SourceTenantId": 2, "TargetTenantId": 4}
    oracle.run_procedure(procedure_url, oracle.procedure("1. Tenant Consolidation"), params)
    await oracle.run_bot(
        tmp_path, bot_url, "tenant-consolidation", {"source_tenant": "2", "target_tenant": "4"}
    )
    oracle.assert_same_data(oracle.snapshot(bot_url), oracle.snapshot(procedure_url))
