"""The windows calendar as tables: recurring and one-off windows, blackouts, daylight-saving
days, zones on both sides of UTC, end-of-month crons, midnight, and placement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.adapters.calendar import windows
from bot.domain.windows import (
    NoFit,
    Placement,
    Window,
    WindowsConfig,
    estimate_from_rates,
    parse_duration,
    place,
    place_at,
    reminder_due,
)
from bot.errors import ConfigError
from bot.settings import load_settings


def _cfg(zone: str = "UTC", **kw: Any) -> WindowsConfig:
    return WindowsConfig.model_validate({"timezone": zone, **kw})


def _u(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _spans(ws: list[Window]) -> list[tuple[str, str]]:
    return [(f"{w.start:%Y-%m-%d %H:%M}", f"{w.end:%Y-%m-%d %H:%M}") for w in ws]


CASES = [
    # (what, zone, config, since (UTC), until (UTC), expected windows in UTC)
    (
        "every Saturday 01:00-05:00 in Amsterdam (winter, UTC+1)",
        "Europe/Amsterdam",
        {"recurring": [{"cron": "0 1 * * sat", "duration": "4h"}]},
        "2026-11-27",
        "2026-12-13",
        [
            ("2026-11-28 00:00", "2026-11-28 04:00"),
            ("2026-12-05 00:00", "2026-12-05 04:00"),
            ("2026-12-12 00:00", "2026-12-12 04:00"),
        ],
    ),
    (
        "spring forward: 02:30 does not exist on 29 March in Amsterdam; it opens once",
        "Europe/Amsterdam",
        {"recurring": [{"cron": "30 2 * * *", "duration": "1h"}]},
        "2026-03-28",
        "2026-03-31",
        [
            ("2026-03-28 01:30", "2026-03-28 02:30"),
            ("2026-03-29 01:30", "2026-03-29 02:30"),
            ("2026-03-30 00:30", "2026-03-30 01:30"),
        ],
    ),
    (
        "fall back: 02:30 happens twice on 25 October in Amsterdam; it opens once (the first)",
        "Europe/Amsterdam",
        {"recurring": [{"cron": "30 2 * * *", "duration": "30m"}]},
        "2026-10-24",
        "2026-10-27",
        [
            ("2026-10-24 00:30", "2026-10-24 01:00"),
            ("2026-10-25 00:30", "2026-10-25 01:00"),
            ("2026-10-26 01:30", "2026-10-26 02:00"),
        ],
    ),
    (
        "New York, west of UTC: a window at 22:00 local is 03:00 UTC the next day",
        "America/New_York",
        {"recurring": [{"cron": "0 22 * * fri", "duration": "3h"}]},
        "2026-12-01",
        "2026-12-10",
        [("2026-12-05 03:00", "2026-12-05 06:00")],
    ),
    (
        "Auckland, east of UTC (+13 in summer): Sunday 02:00 local is Saturday 13:00 UTC",
        "Pacific/Auckland",
        {"recurring": [{"cron": "0 2 * * sun", "duration": "2h"}]},
        "2026-12-01",
        "2026-12-10",
        [("2026-12-05 13:00", "2026-12-05 15:00")],
    ),
    (
        "end of month: day 31 only in months that have it",
        "UTC",
        {"recurring": [{"cron": "0 23 31 * *", "duration": "1h"}]},
        "2027-01-01",
        "2027-06-01",
        [
            ("2027-01-31 23:00", "2027-02-01 00:00"),
            ("2027-03-31 23:00", "2027-04-01 00:00"),
            ("2027-05-31 23:00", "2027-06-01 00:00"),
        ],
    ),
    (
        "a window that spans midnight, and one already open at `since`",
        "UTC",
        {"recurring": [{"cron": "0 22 * * *", "duration": "4h"}]},
        "2026-12-01 23:00",
        "2026-12-02 23:00",
        [("2026-12-01 22:00", "2026-12-02 02:00"), ("2026-12-02 22:00", "2026-12-03 02:00")],
    ),
    (
        "a blackout wins over every window it covers; its `to` date is frozen too",
        "Europe/Amsterdam",
        {
            "recurring": [{"cron": "0 1 * * sat", "duration": "4h"}],
            "blackouts": [{"from": "2026-12-19", "to": "2027-01-02", "reason": "freeze"}],
        },
        "2026-12-11",
        "2027-01-10",
        [("2026-12-12 00:00", "2026-12-12 04:00"), ("2027-01-09 00:00", "2027-01-09 04:00")],
    ),
    (
        "a blackout that cuts a window keeps what is left of it",
        "UTC",
        {
            "recurring": [{"cron": "0 0 * * *", "duration": "6h"}],
            "blackouts": [{"from": "2026-12-02T02:00", "to": "2026-12-02T04:00"}],
        },
        "2026-12-02",
        "2026-12-02 12:00",
        [("2026-12-02 00:00", "2026-12-02 02:00"), ("2026-12-02 04:00", "2026-12-02 06:00")],
    ),
    (
        "a one-off window in local time, merged with an overlapping recurring one",
        "Europe/Amsterdam",
        {
            "recurring": [{"cron": "0 1 * * sun", "duration": "4h"}],
            "once": [{"start": "2026-12-05T22:00", "duration": "6h", "reason": "reindex"}],
        },
        "2026-12-05",
        "2026-12-07",
        [("2026-12-05 21:00", "2026-12-06 04:00")],
    ),
]


@pytest.mark.parametrize(
    ("what", "zone", "config", "since", "until", "expected"), CASES, ids=[c[0][:40] for c in CASES]
)
def test_calendar(
    what: str,
    zone: str,
    config: dict[str, Any],
    since: str,
    until: str,
    expected: list[tuple[str, str]],
) -> None:
    """Each configuration expands to exactly these windows (UTC)."""
    assert _spans(windows(_cfg(zone, **config), _u(since), _u(until))) == expected


W = [
    Window(_u("2026-12-05 00:00"), _u("2026-12-05 02:00")),
    Window(_u("2026-12-12 00:00"), _u("2026-12-12 06:00")),
]
PLACEMENTS = [
    # (what, now, estimate, expected start or the start of the reason)
    ("fits the first window", "2026-12-01", "1h", "2026-12-05 00:00"),
    ("too long for the first, fits the second", "2026-12-01", "2h", "2026-12-12 00:00"),
    (
        "inside an open window with enough left: starts now",
        "2026-12-05 00:10",
        "1h",
        "2026-12-05 00:10",
    ),
    (
        "inside an open window with too little left: the next",
        "2026-12-05 01:00",
        "1h",
        "2026-12-12 00:00",
    ),
    ("estimate larger than every window", "2026-12-01", "5h", "it needs 7h 30m"),
    ("no window within 60 days", "2026-12-13", "1m", "no window opens within 60 days"),
]


@pytest.mark.parametrize(
    ("what", "now", "estimate", "expected"), PLACEMENTS, ids=[p[0] for p in PLACEMENTS]
)
def test_place(what: str, now: str, estimate: str, expected: str) -> None:
    """A run goes in the first window whose remaining time holds estimate x 1.5."""
    got = place(W, _u(now), parse_duration(estimate))
    if isinstance(got, Placement):
        assert f"{got.start:%Y-%m-%d %H:%M}" == expected
    else:
        assert isinstance(got, NoFit) and got.reason.startswith(expected), got.reason


def test_place_at_a_named_window() -> None:
    """when=<local time> names the window open then (or opening that day), if it fits."""
    got = place_at(W, _u("2026-12-01"), timedelta(hours=1), _u("2026-12-11 20:00"))
    assert isinstance(got, Placement) and got.window == W[1]
    short = place_at(W, _u("2026-12-01"), timedelta(hours=2), _u("2026-12-05 00:00"))
    assert isinstance(short, NoFit) and "2h left" in short.reason
    nothing = place_at(W, _u("2026-12-01"), timedelta(hours=1), _u("2026-12-07 00:00"))
    assert isinstance(nothing, NoFit)


@pytest.mark.parametrize(
    ("now", "before", "due"),
    [
        ("2026-12-04 00:00", "24h", True),  # its moment
        ("2026-12-04 00:05", "24h", True),  # a pass a little later
        ("2026-12-04 02:00", "24h", False),  # passed while the bot was down: not sent late
        ("2026-12-03 23:59", "24h", False),  # not yet
        ("2026-12-04 23:00", "1h", True),
        ("2026-12-05 00:00", "1h", False),  # the window is open
    ],
)
def test_reminders(now: str, before: str, due: bool) -> None:
    """A reminder goes at its moment, or a little after, never late."""
    late = timedelta(minutes=15)
    assert reminder_due(W[0].start, parse_duration(before), _u(now), late=late) is due


def test_estimate_from_rates() -> None:
    """Rows over the rate each step achieved, else the target's overall rate, else unknown."""
    assert estimate_from_rates({"a": 1000, "b": 500}, {"a": 100.0}, 50.0) == timedelta(seconds=20)
    assert estimate_from_rates({"a": 1000}, {}, None) is None
    assert estimate_from_rates({"a": 0}, {}, None) == timedelta(0)


@pytest.mark.parametrize(
    ("windows_config", "message"),
    [
        (
            {"timezone": "Mars/Olympus", "recurring": [{"cron": "0 1 * * *", "duration": "1h"}]},
            "not an IANA time zone",
        ),
        (
            {"timezone": "UTC", "recurring": [{"cron": "0 25 * * *", "duration": "1h"}]},
            "is not valid",
        ),
        (
            {"timezone": "UTC", "recurring": [{"cron": "0 1 * *", "duration": "1h"}]},
            "needs 5 fields",
        ),
        (
            {"timezone": "UTC", "recurring": [{"cron": "0 1 * * *", "duration": "soon"}]},
            "is not a duration",
        ),
        (
            {
                "timezone": "UTC",
                "recurring": [{"cron": "0 1 * * *", "duration": "1h"}],
                "on_window_end": "stop",
            },
            "must be pause, rollback or overrun",
        ),
        ({"timezone": "UTC"}, "declare at least one"),
        (
            {
                "timezone": "UTC",
                "once": [{"start": "2026-12-01T01:00", "duration": "1h"}],
                "blackouts": [{"from": "2026-12-05", "to": "2026-12-01"}],
            },
            "before it begins",
        ),
    ],
)
def test_config_errors(windows_config: dict[str, Any], message: str) -> None:
    """A bad windows configuration is refused at start-up, saying what to write."""
    with pytest.raises(ConfigError, match=message):
        load_settings(targets={"p": {"url": "sqlite://", "windows": windows_config}})
