"""Downtime windows: the configuration model and the pure placement rules.

A target may declare when migrations may run on it (``windows:`` in its configuration): a
time zone, recurring windows (a cron expression and a duration), one-off windows, blackouts
(which win over any window), what happens when a window ends while a run is still going, and
how many runs may go at once. Expanding the calendar into concrete windows needs cron
arithmetic, which lives in an adapter (``bot/adapters/calendar.py``); everything here takes
the expanded windows and ``now`` as arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.domain.approval import ApprovalPolicy

MARGIN = 1.5  # a run is placed only where the window's remaining time holds estimate x this
HORIZON = timedelta(days=60)  # how far ahead a window is looked for
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"4h"``, ``"90m"``, ``"1h30m"``, ``"2d"``, ``"45s"`` (or seconds as a number) as a
    timedelta; raise ValueError saying how to write one."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    match = _DURATION.match(str(text)) if str(text).strip() else None
    if match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: write e.g. 4h, 90m, 1h30m or 2d")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def say_duration(span: timedelta) -> str:
    """A duration for people: "4h", "1h 30m", "45s", "2d 3h"."""
    total = max(0, int(span.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    if seconds and not days and not hours:
        parts.append(f"{seconds}s")
    return " ".join(parts) or "0s"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Recurring(_Model):
    """A window that opens at each time of a cron expression (in the target's zone)."""

    cron: str
    duration: timedelta

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(
                f"cron {value!r} needs 5 fields (minute hour day month weekday),"
                ' e.g. "0 1 * * sat" for every Saturday at 01:00'
            )
        return value

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return _positive(value)


class Once(_Model):
    """A one-off window, from a local date-time."""

    start: datetime
    duration: timedelta
    reason: str = ""

    @field_validator("start")
    @classmethod
    def _local(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError(
                f"start {value.isoformat()} carries a UTC offset: write the local time in the"
                " windows' timezone, e.g. 2026-12-06T22:00"
            )
        return value

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return _positive(value)


class Blackout(_Model):
    """A freeze: no migration runs from ``from`` to ``to`` (local; a date alone means the
    whole day, so ``to: 2027-01-04`` freezes that day too)."""

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    reason: str = ""

    @field_validator("start", mode="before")
    @classmethod
    def _from(cls, value: object) -> object:
        return _day_start(value, end=False)

    @field_validator("end", mode="before")
    @classmethod
    def _to(cls, value: object) -> object:
        return _day_start(value, end=True)

    @model_validator(mode="after")
    def _ordered(self) -> Blackout:
        if self.end <= self.start:
            raise ValueError(f"blackout ends ({self.end}) before it begins ({self.start})")
        return self


def _day_start(value: object, *, end: bool) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value + timedelta(days=1 if end else 0), time())
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return _day_start(date.fromisoformat(value.strip()), end=end)
    return value


def _positive(value: object) -> timedelta:
    span = parse_duration(value)  # type: ignore[arg-type]
    if span <= timedelta(0):
        raise ValueError(f"duration {value!r} must be longer than zero")
    return span


OnEnd = Literal["pause", "rollback"]


class WindowsConfig(_Model):
    """A target's downtime windows, as configured under ``windows:``."""

    timezone: str
    recurring: list[Recurring] = Field(default_factory=list)
    once: list[Once] = Field(default_factory=list)
    blackouts: list[Blackout] = Field(default_factory=list)
    on_window_end: str = "pause"
    max_concurrent: int = Field(default=1, ge=1, le=100)
    reminders: list[timedelta] = Field(
        default_factory=lambda: [timedelta(hours=24), timedelta(hours=1)]
    )
    # who must approve a run outside the windows (when=now); without it, none may run so
    emergency: ApprovalPolicy | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {value!r} is not an IANA time zone: write e.g. Europe/Amsterdam,"
                " America/New_York or UTC"
            ) from None
        return value

    @field_validator("reminders", mode="before")
    @classmethod
    def _reminders(cls, value: object) -> object:
        if isinstance(value, list):
            return [_positive(v) for v in value]
        return value

    @field_validator("on_window_end")
    @classmethod
    def _on_end(cls, value: str) -> str:
        if value in ("pause", "rollback"):
            return value
        if value.startswith("overrun:"):
            _positive(value.split(":", 1)[1])
            return value
        raise ValueError(
            f"on_window_end {value!r} must be pause, rollback or overrun:<duration>"
            " (e.g. overrun:30m)"
        )

    @model_validator(mode="after")
    def _some_window(self) -> WindowsConfig:
        if not self.recurring and not self.once:
            raise ValueError(
                "windows: declare at least one recurring or once window (or remove windows:"
                " to run approved migrations at once)"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The zone the windows' times are in."""
        return ZoneInfo(self.timezone)

    @property
    def overrun(self) -> timedelta:
        """How long a run may go on past the end of its window before it pauses."""
        if self.on_window_end.startswith("overrun:"):
            return parse_duration(self.on_window_end.split(":", 1)[1])
        return timedelta(0)

    @property
    def at_end(self) -> OnEnd:
        """What a run still going at the end of its window (plus overrun) does."""
        return "rollback" if self.on_window_end == "rollback" else "pause"


@dataclass(frozen=True)
class Window:
    """One concrete window, in UTC: [start, end)."""

    start: datetime
    end: datetime
    reason: str = ""

    def holds(self, at: datetime) -> bool:
        """Whether ``at`` is inside the window."""
        return self.start <= at < self.end

    def remaining(self, at: datetime) -> timedelta:
        """The time left in the window from ``at`` (all of it before it opens)."""
        return self.end - max(at, self.start)


@dataclass(frozen=True)
class Placement:
    """Where a run goes: the window and when it starts there (``start`` is ``now`` if the
    window is open already)."""

    window: Window
    start: datetime


@dataclass(frozen=True)
class NoFit:
    """Why no window holds the run."""

    reason: str


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time in ``zone`` as UTC. On a fall-back day the repeated hour is its
    first occurrence; on a spring-forward day a time in the gap is read as the same clock
    time before the change (so 02:30 becomes 03:30 summer time), as cron does."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def subtract(windows: list[Window], blackouts: list[Window]) -> list[Window]:
    """``windows`` with every blacked-out part cut away (a blackout wins over any window);
    what is left of a cut window stays a window."""
    out: list[Window] = []
    for w in windows:
        pieces = [w]
        for b in blackouts:
            cut: list[Window] = []
            for p in pieces:
                if b.end <= p.start or b.start >= p.end:
                    cut.append(p)
                    continue
                if p.start < b.start:
                    cut.append(Window(p.start, b.start, p.reason))
                if b.end < p.end:
                    cut.append(Window(b.end, p.end, p.reason))
            pieces = cut
        out.extend(pieces)
    return out


def merge(windows: list[Window]) -> list[Window]:
    """Overlapping or touching windows as one, in order of start."""
    out: list[Window] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if out and w.start <= out[-1].end:
            last = out[-1]
            if w.end > last.end:
                out[-1] = Window(last.start, w.end, last.reason or w.reason)
            continue
        out.append(w)
    return out


def open_window(windows: list[Window], now: datetime) -> Window | None:
    """The window open at ``now``, if one is."""
    return next((w for w in windows if w.holds(now)), None)


def place(
    windows: list[Window],
    now: datetime,
    estimate: timedelta,
    *,
    after: datetime | None = None,
    margin: float = MARGIN,
    horizon: timedelta = HORIZON,
) -> Placement | NoFit:
    """The first window (from ``after``, by default ``now``, up to ``horizon`` ahead) whose
    remaining time holds ``estimate`` x ``margin``; or why there is none."""
    need = estimate * margin
    since = max(now, after or now)
    limit = now + horizon
    ahead = [w for w in windows if w.end > since and w.start < limit]
    for w in ahead:
        if w.remaining(since) >= need:
            return Placement(w, max(w.start, since))
    if not ahead:
        return NoFit(f"no window opens within {horizon.days} days")
    longest = max(w.remaining(since) for w in ahead)
    return NoFit(
        f"it needs {say_duration(need)} (estimate {say_duration(estimate)} x {margin:g}), and"
        f" the longest window within {horizon.days} days is {say_duration(longest)}"
    )


def place_at(
    windows: list[Window],
    now: datetime,
    estimate: timedelta,
    at: datetime,
    *,
    margin: float = MARGIN,
) -> Placement | NoFit:
    """The window that ``at`` names (the one open at ``at``, else the one that opens first
    after it on the same day), if its remaining time from then holds the estimate."""
    need = estimate * margin
    chosen = open_window(windows, at) or next(
        (w for w in windows if at <= w.start < at + timedelta(days=1)), None
    )
    if chosen is None:
        return NoFit(f"no window is open at {at:%Y-%m-%d %H:%M} UTC or opens within a day after")
    start = max(chosen.start, at, now)
    if chosen.end - start < need:
        return NoFit(
            f"that window has {say_duration(chosen.end - start)} left from then, and the run"
            f" needs {say_duration(need)} (estimate {say_duration(estimate)} x {margin:g})"
        )
    return Placement(chosen, start)


def reminder_due(
    window_start: datetime, before: timedelta, now: datetime, *, late: timedelta
) -> bool:
    """Whether the reminder ``before`` the window is due at ``now``: its moment has come, and
    passed by less than ``late`` (one whose moment passed while the bot was down is not sent
    late), and the window has not opened."""
    moment = window_start - before
    return moment <= now < min(moment + late, window_start)


def estimate_from_rates(
    counts: dict[str, int], rates: dict[str, float], overall: float | None
) -> timedelta | None:
    """How long a plan's rows take: each step's rows over the rows per second it achieved
    before (``rates``, by step name), else over ``overall`` (any batch step on the target);
    None if a counted step has no rate to go by."""
    seconds = 0.0
    for step, rows in counts.items():
        rate = rates.get(step) or overall
        if not rate:
            if rows == 0:
                continue
            return None
        seconds += rows / rate
    return timedelta(seconds=seconds)
