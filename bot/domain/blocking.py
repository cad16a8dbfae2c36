"""Blocking while a run is active (pure): episodes, the throttle, the pause at the limit.

A monitor polls the target's blocking view and hands each poll's rows (``Wait``) to
:func:`observe` with the sessions that are the run's own and ``now``. Two kinds of episode:

- ``blocking``: the run's sessions hold a lock other sessions wait on. Past
  ``throttle_after_seconds`` the run is throttled (smaller batches, a wait between them, as
  gh-ost does), one step harder at each poll that still sees it; past ``pause_after_seconds``
  the run pauses at its next boundary and the on-call is paged, once per episode.
- ``blocked``: a session of the run waits on another session's lock: the alert names the
  blocker (session, login, host, program, statement) and how long the run has waited.

An episode opens at the first poll that sees it, stays open while polls see it (a gap of
fewer than ``clear_polls`` quiet polls does not close it: batches release their locks between
them) and closes with its duration. Each episode is one message, updated in place.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["blocking", "blocked"]
STATEMENT_CHARS = 200  # how much of a statement an alert shows
MAX_AUTO_LEVEL = 0.9375  # the automatic throttle never slows a run more than 16 times


class MonitorSettings(BaseModel):
    """How a target's runs are watched for blocking (per target, in the configuration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    poll_seconds: float = Field(default=5.0, gt=0, description="how often the monitor polls")
    throttle_after_seconds: float = Field(
        default=5.0, ge=0, description="the run blocks others this long: throttle it"
    )
    pause_after_seconds: float = Field(
        default=60.0, gt=0, description="the run blocks others this long: pause it, page"
    )
    clear_polls: int = Field(
        default=2, ge=1, description="quiet polls in a row that close an episode"
    )
    max_wait_seconds: float = Field(
        default=5.0, ge=0, description="the longest wait between two throttled batches"
    )

    @model_validator(mode="after")
    def _ordered(self) -> MonitorSettings:
        if self.pause_after_seconds < self.throttle_after_seconds:
            raise ValueError(
                f"pause_after_seconds ({self.pause_after_seconds:g}) must not be below "
                f"throttle_after_seconds ({self.throttle_after_seconds:g}): a run is throttled "
                "before it is paused"
            )
        return self


@dataclass(frozen=True)
class Wait:
    """One row of the blocking view: ``session`` waits on ``blocker``."""

    session: int
    blocker: int
    wait_type: str = ""
    wait_ms: int = 0
    command: str = ""
    statement: str = ""
    blocker_login: str = ""
    blocker_host: str = ""
    blocker_program: str = ""
    blocker_statement: str = ""


@dataclass(frozen=True)
class Episode:
    """One blocking episode of a run: what the message about it shows."""

    kind: Kind
    number: int  # the run's episodes are numbered from 1, for the message's key
    started_at: datetime
    seen_at: datetime
    waits: tuple[Wait, ...]  # as the last poll that saw it found them
    longest_ms: int = 0  # the longest single wait seen
    quiet: int = 0  # quiet polls in a row since it was last seen
    ended_at: datetime | None = None
    throttle: float = 0.0  # the throttle level it put on the run (blocking only)
    paused: bool = False  # the limit was reached: the run pauses (blocking only)
    stopped: bool = False  # it ended because the run stopped (paused, failed, finished)

    @property
    def key(self) -> str:
        """The key of the episode's one message: its kind, number and start, so an episode
        after a pause and resume (a new watch, numbering from 1 again) gets a new message."""
        return f"{self.kind}:{self.number}:{self.started_at:%Y%m%dT%H%M%S%f}"

    def seconds(self, now: datetime) -> float:
        """How long the episode has lasted (to its end, once it has ended)."""
        return ((self.ended_at or now) - self.started_at).total_seconds()


@dataclass(frozen=True)
class MonitorState:
    """What the monitor remembers between polls."""

    open: dict[Kind, Episode] = field(default_factory=dict)
    count: int = 0  # episodes opened so far


@dataclass(frozen=True)
class Decision:
    """What one poll decided: the new state, the episodes whose message changes, the
    automatic throttle level, and whether the run must pause now (with the page's reason)."""

    state: MonitorState
    changed: tuple[Episode, ...]
    throttle: float
    pause: str | None = None


def observe(
    state: MonitorState,
    waits: list[Wait],
    own: frozenset[int],
    now: datetime,
    settings: MonitorSettings,
) -> Decision:
    """Fold one poll's ``waits`` into ``state``; ``own`` are the run's sessions now."""
    found: dict[Kind, tuple[Wait, ...]] = {
        "blocking": tuple(w for w in waits if w.blocker in own and w.session not in own),
        "blocked": tuple(w for w in waits if w.session in own and w.blocker not in own),
    }
    episodes, changed, count, pause = dict(state.open), [], state.count, None
    for kind, seen in found.items():
        episode = episodes.get(kind)
        if seen:
            if episode is None:
                count += 1
                longest = max(w.wait_ms for w in seen)
                start = now - timedelta(milliseconds=longest)
                episode = Episode(kind, count, start, now, seen, longest)
            else:
                longest = max(episode.longest_ms, *(w.wait_ms for w in seen))
                episode = replace(episode, seen_at=now, waits=seen, longest_ms=longest, quiet=0)
            if kind == "blocking":
                episode, pause = _escalate(episode, now, settings)
            episodes[kind] = episode
            if _shown(episode):
                changed.append(episode)
        elif episode is not None:
            episode = replace(episode, quiet=episode.quiet + 1)
            if episode.quiet >= settings.clear_polls:
                if _shown(episode):
                    changed.append(replace(episode, ended_at=episode.seen_at))
                del episodes[kind]
            else:
                episodes[kind] = episode
    blocking = episodes.get("blocking")
    throttle = blocking.throttle if blocking else 0.0
    return Decision(MonitorState(episodes, count), tuple(changed), throttle, pause)


def close_all(state: MonitorState, now: datetime) -> tuple[Episode, ...]:
    """The open episodes that have a message, ended now (the run stopped: nothing of it
    blocks any more)."""
    return tuple(replace(e, ended_at=now, stopped=True) for e in state.open.values() if _shown(e))


def _shown(episode: Episode) -> bool:
    """Whether the episode has a message: a blocked run at once; a run blocking others
    only once that lasted long enough to throttle it (short waits on a batch are normal)."""
    return episode.kind == "blocked" or episode.throttle > 0


def _escalate(
    episode: Episode, now: datetime, settings: MonitorSettings
) -> tuple[Episode, str | None]:
    """Throttle a run that blocks past the first threshold, one step harder per poll (each
    step halves the speed left); pause it past the second, once."""
    lasted = episode.seconds(now)
    if lasted < settings.throttle_after_seconds:
        return episode, None
    level = min(MAX_AUTO_LEVEL, 1 - (1 - episode.throttle) / 2)
    episode = replace(episode, throttle=level)
    if lasted < settings.pause_after_seconds or episode.paused:
        return episode, None
    reason = (
        f"it has blocked other sessions for {lasted:.0f} s (limit "
        f"{settings.pause_after_seconds:g} s); it pauses at its next boundary"
    )
    return replace(episode, paused=True), reason


def episode_text(migration_id: int, episode: Episode, now: datetime) -> str:
    """The episode's message, as it stands at ``now`` (mrkdwn; statements in code spans)."""
    lasted = _duration(episode.seconds(now))
    if episode.kind == "blocking":
        who = ", ".join(f"session {w.session} ({_wait(w)})" for w in episode.waits)
        head = f":warning: #{migration_id} blocks other sessions"
        if episode.ended_at is not None:
            return (
                f":white_check_mark: #{migration_id} blocked other sessions for {lasted};"
                f" {_how_it_ended(episode)}."
            )
        lines = [f"{head} for {lasted}: {who}."]
        if episode.paused:
            lines.append("Past the limit: the run pauses at its next boundary; on-call paged.")
        elif episode.throttle:
            lines.append(
                f"Throttled to {100 * (1 - episode.throttle):.0f}% speed (smaller batches, "
                "a wait between them) until it clears."
            )
        return "\n".join(lines)
    if episode.ended_at is not None:
        ended = _how_it_ended(episode)
        return f":white_check_mark: #{migration_id} was blocked for {lasted}; {ended}."
    lines = [f":hourglass: #{migration_id} is blocked, waiting for {lasted}:"]
    for w in episode.waits:
        by = f"session {w.blocker}"
        details = [
            f"login {w.blocker_login}" if w.blocker_login else "",
            f"host {w.blocker_host}" if w.blocker_host else "",
            f"program {w.blocker_program}" if w.blocker_program else "",
        ]
        lines.append(f"• by {by} ({', '.join(d for d in details if d) or 'no details'})")
        if w.blocker_statement:
            lines.append(f"  `{truncate(w.blocker_statement)}`")
        lines.append(f"  our session {w.session} waits: {_wait(w)}")
    return "\n".join(lines)


def _how_it_ended(episode: Episode) -> str:
    if not episode.stopped:
        return "cleared"
    return "the run paused at the limit" if episode.paused else "it ended when the run stopped"


def truncate(statement: str, limit: int = STATEMENT_CHARS) -> str:
    """One line of at most ``limit`` characters (backticks dropped: it sits in a code span)."""
    flat = " ".join(statement.replace("`", "'").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _wait(w: Wait) -> str:
    what = " ".join(p for p in (w.command, w.wait_type) if p) or "waiting"
    return f"{what}, {_duration(w.wait_ms / 1000)}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


class Throttle:
    """How much a run is slowed now, and which of the target's sessions are the run's own:
    shared by the monitor (event loop) and the batch runner (threads), hence the lock.

    The level is 0 (full speed) to 1; the run uses the larger of the automatic level (the
    monitor's) and the manual one (``/migrate throttle``). At level L a batch is (1 - L) of
    its size, and after it the runner waits L / (1 - L) times the batch's time, up to
    ``max_wait_seconds``.

    The manual level is the run's record (``Migration.manual_throttle``): set by hand while
    the run runs (:meth:`set_by_hand`), and recalled from the record when the run starts or
    resumes (:meth:`recall`); a level set by hand meanwhile wins over a record read before it."""

    def __init__(self, max_wait_seconds: float = 5.0) -> None:
        self._lock = threading.Lock()
        self.max_wait_seconds = max_wait_seconds
        self.auto = 0.0
        self.manual: float | None = None
        self._by_hand = False  # set_by_hand was called: a recalled record may be stale
        self._sessions: dict[int, int] = {}  # session id -> transactions open on it

    def set_by_hand(self, level: float | None) -> None:
        """``/migrate throttle`` while the run runs: ``level`` (None lifts it) from now on."""
        with self._lock:
            self.manual, self._by_hand = level, True

    def recall(self, level: float | None) -> None:
        """The run starts or resumes with its recorded manual ``level``, unless one was set
        by hand since this Throttle was made (the record it read may predate that)."""
        with self._lock:
            if not self._by_hand:
                self.manual = level

    def level(self) -> float:
        """The level in force, 0 to 1."""
        return max(self.auto, self.manual or 0.0)

    def size(self, size: int) -> int:
        """The size of the next batch instead of ``size`` (at least 1 row)."""
        return max(1, round(size * (1 - self.level())))

    def wait_after(self, batch_seconds: float) -> float:
        """Seconds to wait after a batch that took ``batch_seconds``."""
        level = self.level()
        if level <= 0:
            return 0.0
        if level >= 1:
            return self.max_wait_seconds
        return min(self.max_wait_seconds, batch_seconds * level / (1 - level))

    def enter(self, session: int) -> None:
        """A transaction of the run begins on ``session``."""
        with self._lock:
            self._sessions[session] = self._sessions.get(session, 0) + 1

    def leave(self, session: int) -> None:
        """That transaction has ended."""
        with self._lock:
            left = self._sessions.get(session, 0) - 1
            if left > 0:
                self._sessions[session] = left
            else:
                self._sessions.pop(session, None)

    @contextmanager
    def owning(self, session: int | None) -> Iterator[None]:
        """While the block runs, ``session`` (None: no session views) is the run's own."""
        if session is None:
            yield
            return
        self.enter(session)
        try:
            yield
        finally:
            self.leave(session)

    def own(self) -> frozenset[int]:
        """The sessions on which the run has a transaction open now."""
        with self._lock:
            return frozenset(self._sessions)


def manual_level(percent: str) -> float | None:
    """``/migrate throttle``'s level: "off" lifts it (None), "40%" or "40" slows the run to
    60% of its speed (0.4). Raises ValueError saying what to type."""
    word = percent.strip().lower()
    if word == "off":
        return None
    number = word.removesuffix("%")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise ValueError(
            f"{percent!r} is not a throttle level: give 0 to 100% (how much to slow the run), "
            "e.g. `/migrate throttle 12 50%`, or `off`"
        )
    return value / 100
