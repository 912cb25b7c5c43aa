"""wait_until (csm/waiting.py), the one wait of csm: the predicate's answer, a
TimeoutError naming what was awaited, the pause between questions."""

from __future__ import annotations

import time

import pytest

from csm.waiting import wait_until


def test_returns_the_first_truthy_answer():
    answers = iter([None, 0, "", {"pid": 7}, "later"])
    assert wait_until(lambda: next(answers), 5, "the pid", interval=0) == {"pid": 7}


def test_asks_once_even_without_time():
    assert wait_until(lambda: "here", 0, "something") == "here"


def test_times_out_naming_what_and_the_timeout():
    asked = []
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^nginx's pid file: not within 0.3 s$"):
        wait_until(lambda: asked.append(1), 0.3, "nginx's pid file", interval=0.05)
    waited = time.monotonic() - started
    assert 0.3 <= waited < 1.0
    assert 4 <= len(asked) <= 8  # every 0.05 s, and once more at the deadline


def test_asks_again_at_the_deadline():
    """A slow start is not cut short: the last question comes at the deadline."""
    now = [0.0]
    asked = []

    def predicate():
        asked.append(now[0])
        now[0] += 10  # each question takes longer than the whole timeout
        return len(asked) == 2

    assert wait_until(predicate, 5, "slow", interval=0, clock=lambda: now[0])
    assert asked == [0.0, 10.0]


def test_the_predicates_own_error_passes_through():
    def predicate():
        raise ValueError("the container stopped")

    with pytest.raises(ValueError, match="the container stopped"):
        wait_until(predicate, 5, "healthy")


def test_the_interval_is_the_pause_between_questions():
    times = []
    with pytest.raises(TimeoutError):
        wait_until(lambda: times.append(time.monotonic()), 0.5, "nothing", interval=0.2)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 0.09 for g in gaps), gaps  # the last pause is cut to the deadline
    assert min(gaps[:-1], default=0.2) >= 0.19, gaps
