"""Batch sizing for keyset batches (pure): aim each batch transaction at a time budget.

The next size scales the last one by budget / elapsed, damped so it at most doubles and at
least halves per batch, then clamped to the configured bounds. Short transactions keep locks
short; large enough batches keep the per-batch overhead (boundary query, checkpoint, commit)
negligible.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BatchSettings(BaseModel):
    """How big batches may be, and the time budget of one batch transaction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(default=1000, ge=1, description="the first batch's size")
    min: int = Field(default=100, ge=1)
    max: int = Field(default=100_000, ge=1)
    budget_ms: int = Field(default=200, ge=1, le=60_000)

    @model_validator(mode="after")
    def _ordered(self) -> BatchSettings:
        if not self.min <= self.size <= self.max:
            raise ValueError(
                f"batch sizes must satisfy min <= size <= max; got {self.min}, {self.size}, "
                f"{self.max}"
            )
        return self


def next_size(current: int, elapsed_seconds: float, settings: BatchSettings) -> int:
    """The size of the next batch after one of ``current`` rows took ``elapsed_seconds``."""
    budget = settings.budget_ms / 1000
    factor = 2.0 if elapsed_seconds <= 0 else min(2.0, max(0.5, budget / elapsed_seconds))
    # aim a little under the budget so that noise rarely pushes a batch over it
    proposed = int(current * factor * (0.9 if factor > 1 else 1.0))
    return max(settings.min, min(settings.max, max(1, proposed)))
