"""Blocking episodes, the throttle and the pause at the limit (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bot.domain.blocking import (
    MAX_AUTO_LEVEL,
    MonitorSettings,
    MonitorState,
    Throttle,
    Wait,
    close_all,
    episode_text,
    manual_level,
    observe,
    truncate,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = MonitorSettings(
    poll_seconds=1, throttle_after_seconds=5, pause_after_seconds=60, clear_polls=2
)
OURS = frozenset({101})
THEIRS = Wait(session=202, blocker=101, wait_type="LCK_M_U", wait_ms=1000, command="UPDATE")
BLOCKER = Wait(
    session=101,
    blocker=303,
    wait_type="Lock:transactionid",
    wait_ms=2500,
    command="UPDATE",
    blocker_login="reporting",
    blocker_host="10.1.2.3",
    blocker_program="psql",
    blocker_statement="UPDATE Tasks   SET Title = `x`\n WHERE Id = 5",
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(polls: list[tuple[float, list[Wait]]], settings: MonitorSettings = SETTINGS) -> list:
    state, decisions = MonitorState(), []
    for second, waits in polls:
        decision = observe(state, waits, OURS, at(second), settings)
        state = decision.state
        decisions.append(decision)
    return decisions


def test_a_short_wait_on_a_batch_is_no_episode_to_show() -> None:
    """Another session waiting a moment on a batch is normal: no message, no throttle."""
    decisions = run([(0, [THEIRS]), (1, []), (2, [])])
    assert [d.changed for d in decisions] == [(), (), ()]
    assert [d.throttle for d in decisions] == [0.0, 0.0, 0.0]
    assert decisions[-1].state.open == {}


def test_blocking_past_the_threshold_throttles_harder_each_poll_until_it_clears() -> None:
    decisions = run([(s, [THEIRS]) for s in range(0, 8)] + [(8, []), (9, []), (10, [])])
    levels = [d.throttle for d in decisions]
    assert levels[:4] == [0, 0, 0, 0], "1 s waited at 0 s: 5 s are reached at 4 s"
    assert levels[4:8] == [0.5, 0.75, 0.875, 0.9375]
    assert levels[8] == 0.9375, "one quiet poll does not clear it (batches release locks)"
    assert levels[9] == 0.0, "two quiet polls do"
    shown = [e for d in decisions for e in d.changed]
    assert {e.key for e in shown} == {"blocking:1:20260301T115959000000"}, "one message"
    closed = decisions[9].changed[0]
    assert closed.ended_at == at(7) and closed.seconds(at(99)) == 8.0
    assert "blocked other sessions for 8.0 s; cleared" in episode_text(7, closed, at(99))
    assert all(d.pause is None for d in decisions)


def test_the_automatic_throttle_is_bounded() -> None:
    decisions = run([(s, [THEIRS]) for s in range(0, 30)])
    assert decisions[-1].throttle == MAX_AUTO_LEVEL


def test_blocking_past_the_limit_pauses_once_per_episode() -> None:
    settings = MonitorSettings(throttle_after_seconds=1, pause_after_seconds=3, clear_polls=1)
    decisions = run([(s, [THEIRS]) for s in range(0, 6)], settings)
    pauses = [d.pause for d in decisions]
    assert pauses[:2] == [None, None] and pauses[3:] == [None, None, None]
    assert pauses[2] is not None and "blocked other sessions for 3 s (limit 3 s)" in pauses[2]
    text = episode_text(7, decisions[-1].state.open["blocking"], at(5))
    assert "pauses at its next boundary; on-call paged" in text
    assert "session 202 (UPDATE LCK_M_U, 1.0 s)" in text


def test_a_blocked_run_is_shown_at_once_with_the_blocker() -> None:
    decisions = run([(0, [BLOCKER]), (1, [BLOCKER]), (2, []), (3, [])])
    first = decisions[0].changed[0]
    assert first.kind == "blocked" and first.key == "blocked:1:20260301T115957500000"
    text = episode_text(7, first, at(0))
    assert "#7 is blocked, waiting for 2.5 s" in text
    assert "by session 303 (login reporting, host 10.1.2.3, program psql)" in text
    assert "`UPDATE Tasks SET Title = 'x' WHERE Id = 5`" in text
    assert "our session 101 waits: UPDATE Lock:transactionid, 2.5 s" in text
    assert [e.key for e in decisions[1].changed] == [first.key], "updated in place"
    assert decisions[2].changed == ()
    (closed,) = decisions[3].changed
    assert episode_text(7, closed, at(9)) == "✅ #7 was blocked for 3.5 s; cleared.".replace(
        "✅", ":white_check_mark:"
    )
    assert all(d.throttle == 0 for d in decisions), "being blocked does not throttle"


def test_sessions_of_others_blocking_each_other_are_ignored() -> None:
    strangers = Wait(session=5, blocker=6, wait_ms=99_000)
    assert run([(0, [strangers]), (70, [strangers])])[-1].changed == ()


def test_a_new_episode_gets_a_new_message() -> None:
    seen = [BLOCKER]
    decisions = run([(0, seen), (1, []), (2, []), (3, seen)])
    assert decisions[3].changed[0].key.startswith("blocked:2:")


def test_stopping_closes_the_open_episodes_that_have_a_message() -> None:
    state = run([(0, [BLOCKER, THEIRS])])[0].state
    (closed,) = close_all(state, at(4))
    assert closed.kind == "blocked" and closed.ended_at == at(4)
    assert episode_text(7, closed, at(9)).endswith("for 6.5 s; it ended when the run stopped.")


def test_throttle_sizes_waits_and_sessions() -> None:
    throttle = Throttle(max_wait_seconds=2)
    assert throttle.size(1000) == 1000 and throttle.wait_after(0.5) == 0
    throttle.auto = 0.75
    assert throttle.size(1000) == 250 and throttle.wait_after(0.5) == 1.5
    throttle.manual = 0.9
    assert throttle.level() == 0.9 and throttle.size(1000) == 100
    assert throttle.wait_after(0.5) == 2, "bounded by max_wait_seconds"
    throttle.manual = 1.0
    assert throttle.size(1000) == 1 and throttle.wait_after(0.01) == 2
    throttle.enter(7)
    throttle.enter(7)
    throttle.leave(7)
    assert throttle.own() == {7}
    throttle.leave(7)
    assert throttle.own() == frozenset()
    with throttle.owning(8), throttle.owning(None):
        assert throttle.own() == {8}
    assert throttle.own() == frozenset()


@pytest.mark.parametrize(
    ("said", "level"), [("50%", 0.5), ("0", 0.0), ("100%", 1.0), ("OFF", None), ("12.5%", 0.125)]
)
def test_manual_levels(said: str, level: float | None) -> None:
    assert manual_level(said) == level


@pytest.mark.parametrize("said", ["150%", "-1", "half", ""])
def test_bad_manual_levels_say_what_to_type(said: str) -> None:
    with pytest.raises(ValueError, match="give 0 to 100%"):
        manual_level(said)


def test_settings_refuse_a_pause_before_the_throttle() -> None:
    with pytest.raises(ValidationError, match="a run is throttled before it is paused"):
        MonitorSettings(throttle_after_seconds=10, pause_after_seconds=5)


def test_statements_are_truncated_to_one_line() -> None:
    assert truncate("SELECT\n  1", 50) == "SELECT 1"
    assert truncate("x" * 300) == "x" * 199 + "…"


def test_a_level_set_by_hand_wins_over_a_record_recalled_after_it() -> None:
    recalled = Throttle()
    recalled.recall(0.5)  # the run starts or resumes with its recorded level
    assert recalled.manual == 0.5 and recalled.size(10) == 5
    raced = Throttle()
    raced.set_by_hand(None)  # `off` while the run was reading its (older) record...
    raced.recall(0.5)  # ... which must not throttle it again
    assert raced.manual is None and raced.size(10) == 10
