"""Retry a whole target transaction while it fails with a transient error (deadlock,
serialization failure, lock timeout, lost connection), as the target's dialect classifies it.

Each retry logs one line naming where it happened and what kind of error it was, and the
last failure logs "giving up after N retries"; the caller gets the number of retries back
(the batch runner reports it per batch). Retry ``n`` waits 0.05 s doubling, at most 5 s.
Test suites call ``set_testing(True)`` once to wait no time at all; a test that checks a wait
happened patches :func:`wait_before_retry`, the one place the loop sleeps.

Kept by hand rather than taken from a library (stamina, tenacity): the loop is short, and it
must return the retry count and log through the caller's logger, which those would wrap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError

from bot.adapters.targets.dialect import Dialect, error_message

__all__ = ["backoff_seconds", "retry_transient", "set_testing", "wait_before_retry"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_testing = False


def set_testing(testing: bool) -> None:
    """Make retries wait no time (True), or the real backoff again (False): for test suites."""
    global _testing
    _testing = testing


def backoff_seconds(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): 0.05 s doubling, at most 5 s
    (0 while testing)."""
    return 0.0 if _testing else float(min(5.0, 0.05 * 2**attempt))


def wait_before_retry(attempt: int) -> None:
    """Sleep the backoff before retry ``attempt``."""
    time.sleep(backoff_seconds(attempt))


def retry_transient(
    call: Callable[[], T],
    dialect: Dialect,
    *,
    retries: int,
    where: str,
    log: logging.Logger = logger,
) -> tuple[T, int]:
    """Run ``call`` (one whole transaction), again after a backoff while it fails with a
    transient error, at most ``retries`` more times; return its result and how many retries
    it took. Any other error, or the last transient one, propagates; each retry logs a line
    to ``log`` naming ``where``."""
    attempt = 0
    while True:
        try:
            return call(), attempt
        except (DBAPIError, sa_exc.TimeoutError) as exc:
            kind = dialect.classify(exc)
            if kind == "permanent":
                raise
            if attempt >= retries:
                log.error("%s: %s, giving up after %d retries", where, kind, attempt)
                raise
            attempt += 1
            log.warning(
                "%s: %s, retry %d of %d in %.2f s: %s",
                *(where, kind, attempt, retries, backoff_seconds(attempt)),
                error_message(exc).split("\n")[0],
            )
            wait_before_retry(attempt)
