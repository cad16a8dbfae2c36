"""The lifecycle's table of allowed transitions (pure)."""

from __future__ import annotations

import pytest

from bot.domain.lifecycle import TERMINAL, TRANSITIONS, Event, State, next_state
from bot.errors import InvalidTransition


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (State.REQUESTED, Event.APPROVE, State.APPROVED),
        (State.REQUESTED, Event.REJECT, State.REJECTED),
        (State.REQUESTED, Event.EXPIRE, State.EXPIRED),
        (State.APPROVED, Event.START, State.RUNNING),
        (State.RUNNING, Event.SUCCEED, State.SUCCEEDED),
        (State.RUNNING, Event.FAIL, State.FAILED),
        (State.RUNNING, Event.CANCEL, State.CANCELLING),
        (State.CANCELLING, Event.STOP, State.CANCELLED),
        (State.APPROVED, Event.CANCEL, State.CANCELLED),
        (State.RUNNING, Event.PAUSE, State.PAUSED),
        (State.PAUSED, Event.RESUME, State.RUNNING),
        (State.PAUSED, Event.CANCEL, State.CANCELLED),
        (State.PAUSED, Event.FAIL, State.FAILED),  # its window ended: rolled back
        (State.FAILED, Event.RESUME, State.RUNNING),
        (State.APPROVED, Event.RECOUNT, State.REQUESTED),  # counts moved: approve again
    ],
)
def test_allowed_transitions(state: State, event: Event, after: State) -> None:
    """Each allowed event leads to its state."""
    assert next_state(state, event) is after


@pytest.mark.parametrize("state", sorted(TERMINAL))
@pytest.mark.parametrize("event", list(Event))
def test_terminal_states_accept_no_event(state: State, event: Event) -> None:
    """Nothing moves a finished migration."""
    with pytest.raises(InvalidTransition):
        next_state(state, event)


def test_illegal_transition_names_state_and_event() -> None:
    """The error says which state and which event."""
    with pytest.raises(InvalidTransition, match="cannot start a migration that is requested"):
        next_state(State.REQUESTED, Event.START)


def test_every_state_is_reachable_from_requested() -> None:
    """The table has no dead state."""
    reached, frontier = {State.REQUESTED}, [State.REQUESTED]
    while frontier:
        state = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is state and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(State)
