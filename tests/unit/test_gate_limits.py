"""csm.gate.limits: client keys, the wrong-password allowance, the bound on checks in flight."""

from __future__ import annotations

import ipaddress
import threading
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from csm.gate.limits import Allowance, InFlight, client_key


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- client_key ---


@pytest.mark.parametrize(
    "address, key",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::FFFF:c000:0207", "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
    ],
)
def test_client_key(address, key):
    assert client_key(address) == key


def test_client_key_other_prefix():
    assert client_key("2001:db8:1:2::1", ipv6_prefix=48) == "2001:db8:1::/48"
    assert client_key("2001:db8:1:2::1", ipv6_prefix=128) == "2001:db8:1:2::1/128"


@pytest.mark.parametrize("address", ["", "unix:", "1.2.3", "1.2.3.4/32", "[::1]", "01.2.3.4", "localhost", 17])
def test_client_key_refuses_what_is_not_an_address(address):
    with pytest.raises(ValueError, match="not an IP address") as err:
        client_key(address)
    assert repr(address) in str(err.value)


def test_client_key_refuses_a_bad_prefix():
    with pytest.raises(ValueError, match="ipv6_prefix"):
        client_key("::1", ipv6_prefix=129)


ipv6 = st.integers(0, 2**128 - 1)


@given(ipv6, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_client_key_is_one_per_64(address, low1, low2):
    net = address >> 64 << 64
    a, b = (str(ipaddress.IPv6Address(net | low)) for low in (low1, low2))
    if ipaddress.IPv6Address(a).ipv4_mapped is None:
        assert client_key(a) == client_key(b)


@given(ipv6, ipv6)
def test_client_key_differs_across_64s(a, b):
    a6, b6 = ipaddress.IPv6Address(a), ipaddress.IPv6Address(b)
    if a >> 64 != b >> 64 and a6.ipv4_mapped is None and b6.ipv4_mapped is None:
        assert client_key(str(a6)) != client_key(str(b6))


# --- Allowance ---


def test_fourteen_in_the_first_minute_then_two_a_minute():
    clock = Clock()
    allowance = Allowance(clock=clock)
    assert [allowance.charge("k") for _ in range(14)] == [0.0] * 14
    assert allowance.charge("k") == 60.0  # the minute window's oldest ages out first
    clock.now += 59.5
    assert allowance.charge("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert [allowance.charge("k") for _ in range(3)] == [0.0, 0.0, 60.0]
    for _ in range(50):  # 2 a minute, for as long as the hour window is full
        clock.now += 60
        assert [allowance.charge("k") for _ in range(3)][:2] == [0.0, 0.0]
    assert allowance.charge("other") == 0.0  # keys are separate


def test_wait_is_to_the_hour_window_when_sooner():
    clock = Clock()
    allowance = Allowance(per_minute=1, per_hour=1, clock=clock)
    allowance.charge("k")  # minute window
    clock.now += 30
    allowance.charge("k")  # hour window
    clock.now += 3590  # the minute charge aged out; now 10 s before the hour one does
    assert allowance.charge("k") == 0.0
    assert allowance.charge("k") == pytest.approx(10.0)


def test_refund_gives_the_try_back():
    clock = Clock()
    allowance = Allowance(clock=clock)
    for _ in range(13):
        allowance.charge("k")
    assert allowance.charge("k") == 0.0
    allowance.refund("k")  # the 14th was the right password
    assert allowance.charge("k") == 0.0
    assert allowance.charge("k") > 0
    allowance.refund("nobody")  # no error


def test_refund_takes_the_newest_charge_from_its_own_window():
    clock = Clock()
    allowance = Allowance(per_minute=1, per_hour=1, clock=clock)
    allowance.charge("k")  # minute window, t=0
    clock.now += 10
    allowance.charge("k")  # hour window, t=10
    allowance.refund("k")  # gives back the hour one: the minute one stays
    assert allowance.charge("k") == 0.0  # the hour window again
    assert allowance.charge("k") == pytest.approx(50.0)  # the minute charge of t=0 ages out at 60


def test_a_right_first_try_leaves_nothing_behind():
    allowance = Allowance(clock=Clock())
    assert allowance.charge("k") == 0.0
    allowance.refund("k")
    assert len(allowance) == 0
    allowance.refund("k")
    assert len(allowance) == 0


def test_concurrent_guesses_get_exactly_the_allowance():
    allowance = Allowance()
    barrier = threading.Barrier(60)
    results = []

    def guess():
        barrier.wait()
        results.append(allowance.charge("203.0.113.9"))

    threads = [threading.Thread(target=guess) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(0.0) == 14
    assert all(r > 0 for r in results if r != 0.0)


def test_a_flood_of_fresh_keys_does_not_reset_a_guesser():
    clock = Clock()
    allowance = Allowance(max_keys=10_000, clock=clock)
    for _ in range(14):
        allowance.charge("guesser")
    clock.now += 30
    for i in range(20_000):
        assert allowance.charge(f"fresh-{i}") == 0.0
        assert len(allowance) <= 10_000
    assert allowance.charge("guesser") > 0


def test_among_active_keys_a_light_one_goes_and_then_a_key_idle_a_minute():
    clock = Clock()
    allowance = Allowance(per_minute=2, per_hour=0, max_keys=3, clock=clock)
    allowance.charge("heavy")
    allowance.charge("heavy")  # used up its minute: heavy
    clock.now += 1
    allowance.charge("light")
    allowance.charge("light2")
    clock.now += 29
    allowance.charge("new")  # every key active: the idlest light one goes, not heavy
    assert len(allowance) == 3
    assert allowance.charge("heavy") == pytest.approx(30.0)  # (the refusal counts as activity)
    assert allowance.charge("light2") == 0.0 and allowance.charge("light2") > 0  # remembered


def test_a_key_idle_a_minute_goes_before_an_active_light_one():
    clock = Clock()
    allowance = Allowance(per_minute=2, per_hour=0, max_keys=3, clock=clock)
    allowance.charge("idle")
    clock.now += 60
    allowance.charge("heavy")
    allowance.charge("heavy")
    allowance.charge("light")
    allowance.charge("new")
    assert allowance.charge("heavy") == pytest.approx(60.0)
    assert allowance.charge("light") == 0.0 and allowance.charge("light") > 0  # remembered


def test_when_every_key_is_heavy_and_active_the_idlest_goes():
    """The documented trade-off: max_keys keys each used up their minute's tries."""
    clock = Clock()
    allowance = Allowance(per_minute=1, per_hour=0, max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        allowance.charge(key)
        clock.now += 1
    allowance.charge("d")
    assert allowance.charge("a") == 0.0  # forgotten
    assert allowance.charge("c") > 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="per_minute"):
        Allowance(per_minute=0)


# Clock steps in half seconds, mostly short, now and then past a window.
STEPS = st.one_of(st.integers(1, 40).map(lambda h: h / 2), st.sampled_from([60.0, 3600.0]))
OPS = st.lists(st.one_of(st.just("wrong"), st.just("right"), STEPS), max_size=80)


@settings(max_examples=400, deadline=None)
@given(OPS, st.integers(1, 3), st.integers(0, 3))
@example(["wrong", 10.0, "right", "wrong", "wrong"], 2, 0)  # a refund of the oldest charge shows here
def test_guesses_in_any_span_are_bounded(ops, per_minute, per_hour):
    """Wrong guesses within any span of m minutes (m < 60): at most per_minute*(m+1)+per_hour.
    A right try (charge, then refund) gives its try back and leaves the allowance as it was:
    a second allowance that never saw the right tries answers every wrong one the same."""
    clock = Clock()
    allowance = Allowance(per_minute, per_hour, clock=clock)
    without_rights = Allowance(per_minute, per_hour, clock=clock)
    guesses = []
    for op in ops:
        if op == "wrong":
            wait = allowance.charge("k")
            assert wait == without_rights.charge("k")
            if wait == 0.0:
                guesses.append(clock.now)
        elif op == "right":
            if allowance.charge("k") == 0.0:
                allowance.refund("k")
        else:
            clock.now += op
    for i, start in enumerate(guesses):
        for minutes in range(1, 60):
            in_span = sum(1 for t in guesses[i:] if t - start <= 60 * minutes)
            assert in_span <= per_minute * (minutes + 1) + per_hour


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 200).map(lambda h: h / 4), max_size=80), st.integers(1, 3), st.integers(0, 5))
def test_the_wait_is_exact(steps, per_minute, per_hour):
    """Refused with wait w: still refused a moment before w, allowed at w."""
    clock = Clock()
    allowance = Allowance(per_minute, per_hour, clock=clock)
    for step in steps:
        clock.now += step
        wait = allowance.charge("k")
        if wait > 0:
            assert 0 < wait <= 3600
            clock.now += wait - 0.25
            if wait > 0.25:
                assert allowance.charge("k") > 0
            clock.now += 0.25
            assert allowance.charge("k") == 0.0


# --- InFlight ---


def test_in_flight_never_blocks_beyond_its_limit():
    flight = InFlight(2)
    assert flight.try_enter() and flight.try_enter()
    assert not flight.try_enter()
    flight.leave()
    assert flight.try_enter()
    assert flight.count == 2
    flight.leave()
    flight.leave()
    with pytest.raises(RuntimeError, match="without a matching try_enter"):
        flight.leave()
    with pytest.raises(ValueError, match="at least 1"):
        InFlight(0)


def test_in_flight_slot():
    flight = InFlight(1)
    with flight.slot() as outer:
        assert outer
        with flight.slot() as inner:
            assert not inner
        assert flight.count == 1
    assert flight.count == 0
    with pytest.raises(KeyError):
        with flight.slot():
            raise KeyError("the slot is left on error too")
    assert flight.count == 0


def test_in_flight_under_threads():
    flight = InFlight(3)
    barrier, release = threading.Barrier(40), threading.Event()
    answers = []

    def work():
        barrier.wait()
        entered = flight.try_enter()
        answers.append(entered)
        if entered:
            release.wait(10)  # nobody leaves until every thread has tried
            flight.leave()

    threads = [threading.Thread(target=work) for _ in range(40)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(answers) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert answers.count(True) == 3 and flight.count == 3
    release.set()
    for t in threads:
        t.join()
    assert flight.count == 0
