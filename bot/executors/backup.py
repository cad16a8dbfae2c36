"""backup and restore steps: a verified backup recorded on the migration, and putting back
the latest verified one of the run being undone."""

from __future__ import annotations

import asyncio
import dataclasses

from bot.adapters.targets.dialect import BackupInfo
from bot.domain.control import StepOutcome
from bot.domain.planned import PlannedBackup, PlannedRestore
from bot.domain.rollback import pick_backup
from bot.errors import Refused, StepFailed
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
    """Put back the latest verified backup of the run this step undoes (the original, for a
    rollback; else the migration itself), never one of another run, and an unverified one
    only under an approver's waiver. The dialect verifies the file again before restoring."""
    m = ctx.migration
    source = m.rollback_of if m.rollback_of is not None else m.id
    backups = (await asyncio.to_thread(ctx.store.get, source)).backups
    try:
        chosen = pick_backup(source, backups, waived=bool(m.waiver))
    except Refused as exc:
        raise StepFailed(ctx.step.name, str(exc)) from exc
    record = dict(chosen)
    record["tables"] = tuple(record["tables"]) if record.get("tables") else None
    record.pop("created_at", None)
    info = BackupInfo(**record)
    await asyncio.to_thread(ctx.target.restore, info, timeout=ctx.step.timeout)
    await ctx.mark_done()
    waived = f"; verification waived: “{m.waiver}”" if not info.verified else ""
    return StepOutcome(0, f"restored the backup of #{source} at {info.location}{waived}")
