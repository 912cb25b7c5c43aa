"""The one way csm waits for something: ask a predicate until it answers, or until
the time is up.

Callers that must say more than "not within N s" (which log to read, which unit to
look at) catch the TimeoutError and raise their own error with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """The predicate's first truthy answer, asked every `interval` seconds; a
    TimeoutError naming `what` once `timeout` seconds have passed without one.
    It is asked at least once, and once more after the deadline has passed, so a
    slow predicate is never cut short by its own duration."""
    deadline = clock() + timeout
    while True:
        late = clock() >= deadline
        answer = predicate()
        if answer:
            return answer
        if late:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(max(0.0, min(interval, deadline - clock())))
