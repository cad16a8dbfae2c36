"""command steps: an external program, its output tailed into the live progress."""

from __future__ import annotations

from bot.adapters.commands import fill_target, run_command
from bot.domain.control import StepOutcome
from bot.domain.planned import PlannedCommand
from bot.executors.context import StepContext
from bot.executors.registry import executes


@executes(PlannedCommand)
async def run_program(ctx: StepContext[PlannedCommand]) -> StepOutcome:
    """Run the program with ``{target.*}`` filled in; it must exit 0."""
    argv, env, secrets = fill_target(ctx.step.command, ctx.target.command_fields(), ctx.target.name)
    result = await run_command(
        argv, env=env, timeout=ctx.step.timeout, secrets=secrets, on_line=ctx.live.tail.append
    )
    await ctx.mark_done()
    return StepOutcome(0, f"exit 0 after {result.seconds:.1f}s, {result.lines} lines of output")
