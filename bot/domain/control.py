"""What a run is told while it runs (Control) and what each step tells back (StepOutcome)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from bot.domain.blocking import Throttle


@dataclass
class Control:
    """Requests that a run stop at its next boundary; set from the event loop, read in threads."""

    cancel: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)
    throttle: Throttle = field(default_factory=Throttle)  # how much to slow the batches

    def stopping(self) -> bool:
        """Whether the run should stop at the next batch or step boundary."""
        return self.cancel.is_set() or self.pause.is_set()


@dataclass(frozen=True)
class StepOutcome:
    """What a step did; ``finished`` is False when it stopped early at a boundary."""

    rows: int
    detail: str | None = None
    finished: bool = True
