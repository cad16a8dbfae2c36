"""Errors raised by the BARQ migration bot.

Every error subclasses the nearest builtin and builds its message from the bad value, so that
the message can be shown to the person who caused it::

    BarqError
    ├── RunbookError(ValueError)          a runbook file is invalid (file, field, reason)
    ├── UsageError(ValueError)            a command is malformed; says how to write it
    │   ├── UnknownRunbook                no runbook by that name
    │   ├── UnknownTarget                 no target database by that name
    │   ├── ParameterError                a parameter is missing, unknown or ill-typed
    │   └── InvalidInteraction            a click or form carries data the bot did not make
    ├── InvalidTransition(ValueError)     a lifecycle event not allowed in the current state
    ├── NotFound(LookupError)             no migration with that id
    ├── Refused(PermissionError)          the user may not do that (approve, cancel, ...)
    │   └── Conflict                      another migration changes the same data now
    ├── ConfigError(ValueError)           the bot's configuration is invalid
    ├── TargetUnavailable(ConnectionError) a target database cannot be reached, or is gone
    ├── QueryFailed(RuntimeError)         a planning query failed on a target (its own message)
    ├── StateUnavailable(ConnectionError)  the bot's own state database cannot be reached
    ├── DirectoryUnavailable(ConnectionError) Slack could not say who is in a user group
    ├── StepFailed(RuntimeError)          a migration step failed; carries the cause's own message
    ├── BackupError(RuntimeError)         a backup, verification or restore could not be done
    │   └── BackupVerificationError       a backup is missing, altered or unreadable
    ├── CommandFailed(RuntimeError)       a command step exited non-zero or could not start
    │   └── CommandTimeout(TimeoutError)  a command outlived its timeout and was stopped
    └── TargetFieldError(ValueError)      a {target.*} placeholder cannot be filled
"""

from __future__ import annotations

import signal
from collections.abc import Sequence


class BarqError(Exception):
    """Base of every error the bot raises on purpose."""


class RunbookError(BarqError, ValueError):
    """Raised when a runbook file cannot be loaded: names the file, the field and the reason."""

    def __init__(self, file: str, field: str, reason: str) -> None:
        self.file, self.field, self.reason = file, field, reason
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {reason}")


class UsageError(BarqError, ValueError):
    """Raised when a command is malformed; the message says what to type instead."""


class UnknownRunbook(UsageError):
    """Raised when a command names a runbook that does not exist."""


class UnknownTarget(UsageError):
    """Raised when a command names a target database that is not configured."""


class ParameterError(UsageError):
    """Raised when a runbook parameter is missing, unknown, ill-typed or out of range."""


class InvalidInteraction(UsageError):
    """Raised when a button click or modal submission lacks what the bot put in it, or carries
    something else (a truncated, forged or out-of-date payload); says what was wrong."""

    def __init__(self, what: str, kind: str = "button") -> None:
        self.what = what
        super().__init__(
            f"this {kind} is not valid any more ({what}); "
            "see `/migrate status` for where the migration stands"
        )


class InvalidTransition(BarqError, ValueError):
    """Raised when a lifecycle event is not allowed in the migration's current state."""

    def __init__(self, state: str, event: str) -> None:
        self.state, self.event = state, event
        super().__init__(f"cannot {event} a migration that is {state}")


class NotFound(BarqError, LookupError):
    """Raised when no migration has the given id."""


class Refused(BarqError, PermissionError):
    """Raised when a user may not do what they asked; the message says why and what to do."""


class Conflict(Refused):
    """Raised when a migration would change data that a pending or running migration on the
    same target changes; names that migration and what to do."""


class ConfigError(BarqError, ValueError):
    """Raised when the bot's configuration is invalid; names the setting."""


class TargetUnavailable(BarqError, ConnectionError):
    """Raised when a run's target database cannot be reached or is no longer configured."""


class QueryFailed(BarqError, RuntimeError):
    """Raised when a query run while planning (a step's row count, a parameter's existence
    check) fails on a target; names the query and carries the database's own message, never
    the SQL or a password."""

    def __init__(self, target: str, message: str, query: str = "a query") -> None:
        self.target, self.message, self.query = target, message, query
        super().__init__(
            f"{query} failed on {target}: {message}; nothing was planned, check the runbook"
            " against the target's schema"
        )

    def naming(self, query: str) -> QueryFailed:
        """The same failure, naming which query it was."""
        return QueryFailed(self.target, self.message, query)


class DirectoryUnavailable(BarqError, ConnectionError):
    """Raised when Slack cannot list a user group's members just now (rate limited, an error
    on Slack's side, a timeout or a dropped connection); asking again later may work."""

    def __init__(self, group: str, cause: str) -> None:
        self.group, self.cause = group, cause
        super().__init__(
            f"your Slack user groups could not be checked (Slack did not list user group "
            f"{group}: {cause}); nothing was done, try again in a moment"
        )


class StateUnavailable(BarqError, ConnectionError):
    """Raised when the bot's state database cannot be reached; while the bot runs it keeps
    retrying. At start-up (``where`` given) it names the database, without its password, and
    the driver's reason."""

    def __init__(self, where: str = "", cause: str = "") -> None:
        self.where, self.cause = where, cause
        if where:
            super().__init__(f"cannot reach the state database {where}: {cause}")
            return
        super().__init__(
            "the bot's state database is unreachable; the bot keeps retrying, so try again in"
            " a moment"
        )


class StepFailed(BarqError, RuntimeError):
    """Raised when a step fails on the target database; carries the database's own message."""

    def __init__(self, step: str, message: str) -> None:
        self.step, self.message = step, message
        super().__init__(f"step {step!r} failed: {message}")


class BackupError(BarqError, RuntimeError):
    """Raised when a backup, its verification or a restore cannot be carried out."""


class BackupVerificationError(BackupError):
    """Raised when a backup exists but is missing, altered or unreadable."""


class CommandFailed(BarqError, RuntimeError):
    """Raised when a command exits non-zero or cannot start (``exit_code`` None); the message
    names the command and ends with its last lines."""

    def __init__(
        self, command: str, exit_code: int | None, tail: Sequence[str], reason: str = ""
    ) -> None:
        self.command, self.exit_code, self.tail = command, exit_code, list(tail)
        if not reason and exit_code is not None:
            killed = exit_code < 0 and f"was killed by {signal.Signals(-exit_code).name}"
            reason = killed or f"exited with code {exit_code}"
        text = f"command `{command}` {reason}"
        lines = f"; last {len(self.tail)} lines:\n" + "\n".join(self.tail) if self.tail else ""
        super().__init__(text + lines)


class CommandTimeout(CommandFailed, TimeoutError):
    """Raised when a command outlives its timeout; its process group has been stopped."""

    def __init__(self, command: str, seconds: float, tail: Sequence[str]) -> None:
        self.seconds = seconds
        super().__init__(command, None, tail, f"did not finish within {seconds:g} s; stopped it")


class TargetFieldError(BarqError, ValueError):
    """Raised when a ``{target.*}`` placeholder cannot be filled: the target's URL lacks the
    value, or the password is asked for on the command line. Never shows the URL."""

    def __init__(self, field: str, reason: str, step: str = "") -> None:
        self.field, self.reason, self.step = field, reason, step
        where = f"step {step!r} cannot fill" if step else "cannot fill"
        super().__init__(f"{where} {{{field}}}: {reason}")

    def in_step(self, step: str) -> TargetFieldError:
        """The same error, naming the step whose command has the placeholder."""
        return TargetFieldError(self.field, self.reason, step)
