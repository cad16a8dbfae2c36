"""backup and restore steps: a verified backup recorded on the migration, and putting the
latest one back."""

from __future__ import annotations

import asyncio
import dataclasses

from bot.adapters.targets.dialect import BackupInfo
from bot.domain.control import StepOutcome
from bot.domain.planned import PlannedBackup, PlannedRestore
from bot.errors import StepFailed
from bot.executors.context import StepContext
from bot.executors.registry import executes


@executes(PlannedBackup)
async def back_up(ctx: StepContext[PlannedBackup]) -> StepOutcome:
    """Back up the target (or the step's tables), verify it, and record it on the migration."""
    m, target = ctx.migration, ctx.target
    tables = list(ctx.step.tables) if ctx.step.tables else None
    info: BackupInfo = await asyncio.to_thread(
        target.backup,
        ctx.backup_dir / m.run_key,
        label=f"{m.run_key}-{ctx.step.name}",
        tables=tables,
        timeout=ctx.step.timeout,
    )
    record = {**dataclasses.asdict(info), "created_at": info.created_at.isoformat()}
    await asyncio.to_thread(ctx.store.add_backup, m.id, record, ctx.clock())
    await ctx.mark_done()
    size = f"{info.size_bytes:,} bytes" if info.size_bytes is not None else "size unknown"
    checked = "verified" if info.verified else "NOT verified"
    return StepOutcome(0, f"backup at {info.location} ({size}, {checked})")


@executes(PlannedRestore)
async def restore(ctx: StepContext[PlannedRestore]) -> StepOutcome:
    """Verify the migration's latest backup and put it back over the target."""
    latest = (await asyncio.to_thread(ctx.store.get, ctx.migration.id)).backups
    if not latest:
        raise StepFailed(ctx.step.name, "this migration took no backup; add a backup step first")
    record = dict(latest[-1])
    record["tables"] = tuple(record["tables"]) if record.get("tables") else None
    record.pop("created_at", None)
    info = BackupInfo(**record)
    await asyncio.to_thread(ctx.target.restore, info, timeout=ctx.step.timeout)
    await ctx.mark_done()
    return StepOutcome(0, f"restored {info.location}")
