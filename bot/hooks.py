"""What a runbook's Python row hook may import from the bot (see batch_hooks for hooks).

A hook that meets a row it must not guess at raises :class:`RowSkipped` with the reason: the
batch runner leaves that row unchanged, records its key and the reason with the batch, and the
step's result says how many rows were left so and which. The run goes on.
"""

from __future__ import annotations

__all__ = ["RowSkipped"]


class RowSkipped(Exception):
    """Raised by a row hook to leave the row unchanged, for ``reason`` (shown to users)."""

    def __init__(self, reason: str) -> None:
        if not reason.strip():
            raise ValueError("RowSkipped needs a reason: say why the row is left unchanged")
        self.reason = reason
        super().__init__(reason)
