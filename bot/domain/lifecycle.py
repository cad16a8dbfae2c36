"""The migration lifecycle: states, events and the table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum

from bot.errors import InvalidTransition


class State(StrEnum):
    """Where a migration is in its life."""

    REQUESTED = "requested"
    APPROVED = "approved"
    RUNNING = "running"
    CANCELLING = "cancelling"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Event(StrEnum):
    """Something that happens to a migration."""

    APPROVE = "approve"
    REJECT = "reject"
    EXPIRE = "expire"
    START = "start"
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    RECOUNT = "recount"  # counts moved since the approval: ask again (production)


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.REQUESTED, Event.APPROVE): State.APPROVED,
    (State.REQUESTED, Event.REJECT): State.REJECTED,
    (State.REQUESTED, Event.EXPIRE): State.EXPIRED,
    (State.REQUESTED, Event.CANCEL): State.CANCELLED,
    (State.APPROVED, Event.START): State.RUNNING,
    (State.APPROVED, Event.CANCEL): State.CANCELLED,
    (State.APPROVED, Event.EXPIRE): State.EXPIRED,
    (State.APPROVED, Event.RECOUNT): State.REQUESTED,
    (State.RUNNING, Event.SUCCEED): State.SUCCEEDED,
    (State.RUNNING, Event.FAIL): State.FAILED,
    (State.RUNNING, Event.CANCEL): State.CANCELLING,
    (State.RUNNING, Event.PAUSE): State.PAUSED,
    (State.PAUSED, Event.RESUME): State.RUNNING,
    (State.PAUSED, Event.CANCEL): State.CANCELLED,
    (State.PAUSED, Event.FAIL): State.FAILED,  # a guard ends it (window over, rolled back)
    (State.FAILED, Event.RESUME): State.RUNNING,
    (State.CANCELLING, Event.STOP): State.CANCELLED,
    (State.CANCELLING, Event.SUCCEED): State.SUCCEEDED,
    (State.CANCELLING, Event.FAIL): State.FAILED,
}

# A failed run is not terminal: once its cause is fixed it may resume from its checkpoints.
TERMINAL = frozenset({State.SUCCEEDED, State.CANCELLED, State.REJECTED, State.EXPIRED})
ACTIVE = frozenset({State.RUNNING, State.CANCELLING})


def next_state(state: State | str, event: Event | str) -> State:
    """Return the state after ``event``; raise InvalidTransition if it is not allowed."""
    try:
        return TRANSITIONS[(State(state), Event(event))]
    except (KeyError, ValueError):
        raise InvalidTransition(str(state), str(event)) from None


_PHRASE = {  # "#7 succeeded", "#7 is running": each state with the verb it reads well with
    State.REQUESTED: "is waiting for approval",
    State.APPROVED: "is approved",
    State.RUNNING: "is running",
    State.CANCELLING: "is being cancelled",
    State.PAUSED: "is paused",
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.CANCELLED: "was cancelled",
    State.REJECTED: "was rejected",
    State.EXPIRED: "expired",
}


def state_phrase(state: State) -> str:
    """What a migration in ``state`` is, as the end of a sentence: "succeeded", "is running"."""
    return _PHRASE[state]


def in_state(migration_id: int, state: State) -> str:
    """The migration and its state as a phrase: "#7 succeeded", "#7 is running"."""
    return f"#{migration_id} {state_phrase(state)}"
