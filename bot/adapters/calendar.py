"""A target's windows as concrete intervals: cron arithmetic by APScheduler's CronTrigger.

Daylight-saving days: a start that does not exist (spring forward) opens once, at the same
clock time before the change (02:30 becomes 03:30 summer time); a start that happens twice
(fall back) opens once, at its first occurrence. CronTrigger fires twice on a fall-back day;
the second fire (the same local wall time) is dropped here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from bot.domain.windows import Window, WindowsConfig, local_to_utc, merge, subtract
from bot.errors import ConfigError


def trigger(cron: str, config: WindowsConfig) -> CronTrigger:
    """The CronTrigger of one recurring window; raise ConfigError if cron cannot read it."""
    try:
        return CronTrigger.from_crontab(cron, timezone=config.zone)
    except ValueError as exc:
        raise ConfigError(
            f"windows: cron {cron!r} is not valid ({exc}); write 5 fields, minute hour day"
            ' month weekday, e.g. "0 1 * * sat"'
        ) from None


def check(config: WindowsConfig) -> None:
    """Raise ConfigError if a recurring window's cron cannot be read (at start-up)."""
    for r in config.recurring:
        trigger(r.cron, config)


def blackouts(config: WindowsConfig) -> list[Window]:
    """The configured blackouts, in UTC."""
    zone = config.zone
    return [
        Window(local_to_utc(b.start, zone), local_to_utc(b.end, zone), b.reason)
        for b in config.blackouts
    ]


def windows(config: WindowsConfig, since: datetime, until: datetime) -> list[Window]:
    """Every window that is open at some moment in [since, until), blackouts cut away,
    overlapping ones merged, in order."""
    zone = config.zone
    found: list[Window] = []
    for r in config.recurring:
        fires = trigger(r.cron, config)
        # a window that opened before ``since`` may still be open
        at = (since - r.duration).astimezone(zone)
        previous: datetime | None = None
        seen_local: datetime | None = None
        while True:
            fire = fires.get_next_fire_time(previous, at)
            if fire is None or fire >= until:
                break
            local = fire.replace(tzinfo=None)
            if local != seen_local:  # the repeated hour of a fall-back day opens once
                start = fire.astimezone(UTC)
                found.append(Window(start, start + r.duration))
            seen_local, previous = local, fire
            at = (fire.astimezone(UTC) + timedelta(microseconds=1)).astimezone(zone)
    for o in config.once:
        start = local_to_utc(o.start, zone)
        found.append(Window(start, start + o.duration, o.reason))
    kept = [w for w in found if w.end > since and w.start < until]
    return merge(subtract(kept, blackouts(config)))
