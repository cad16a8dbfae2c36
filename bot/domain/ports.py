"""What the use cases need from the outside world, as Protocols."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.domain.approval import ApprovalPolicy, PriorApproval
    from bot.domain.progress import LiveProgress
    from bot.domain.records import Migration, StepRun

Clock = Callable[[], datetime]


class Notifier(Protocol):
    """Queues what people must see; called inside the state change's transaction."""

    def approval(
        self, m: Migration, approvals: list[PriorApproval], policy: ApprovalPolicy
    ) -> None: ...

    def progress(
        self, m: Migration, runs: list[StepRun], now: datetime, live: LiveProgress | None
    ) -> None: ...

    def outcome(self, m: Migration, runs: list[StepRun], now: datetime) -> None: ...

    def notice(self, m: Migration, text: str, now: datetime) -> None: ...


class Directory(Protocol):
    """Who belongs to which Slack user group."""

    async def groups_of(self, user: str, groups: list[str]) -> set[str]: ...
