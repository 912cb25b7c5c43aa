"""Wrong-password limits per client, and the bound on password checks in flight.

Allowance counts tries the way code-server's own limiter does (2 a minute, plus 12
an hour: 14 in the first minute, then 2 a minute), but per client key, and it is
charged BEFORE the password is checked: N concurrent wrong guesses get at most the
allowance checked, never N. A right password gets its try back (refund), so a
person who mistypes once is not slowed down.

Memory is bounded by `max_keys`. When a new key comes and the table is full, one
key goes: the one whose newest try is oldest, if that was a minute ago or more;
otherwise (every key tried within the last minute) the idlest "light" key, one
with fewer than `per_minute` tries counted. A flood of fresh addresses, one try
each, then only pushes out its own kind and never resets a guesser who used up
its minute's tries. The trade-off: once `max_keys` keys have each used up their
minute's tries within one minute, the idlest of them is forgotten and may try
anew. An attacker who can do that already holds `max_keys` addresses, each with
its own allowance, so forgetting one gains little; the bound on checks in flight
(InFlight) and the argon2 cost are what limit such a crowd.

InFlight bounds how many argon2 verifications run at once (each takes 64 MiB and
a good part of a CPU); the caller answers the rest "busy, retry", never queues.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

MINUTE = 60.0
HOUR = 3600.0


def client_key(address: str, ipv6_prefix: int = 64) -> str:
    """The key a client's tries are counted under: an IPv4 address as is (an
    IPv4-mapped IPv6 one as its IPv4), an IPv6 address as its /`ipv6_prefix`
    network, since one host or home usually holds a whole /64."""
    if not 0 <= ipv6_prefix <= 128:
        raise ValueError(f"ipv6_prefix must be 0 to 128, not {ipv6_prefix!r}")
    if not isinstance(address, str):
        raise ValueError(f"not an IP address (a string): {address!r}")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"not an IP address: {address!r}") from None
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    mask = ((1 << ipv6_prefix) - 1) << (128 - ipv6_prefix)
    return str(ipaddress.IPv6Network((int(ip) & mask, ipv6_prefix)))


@dataclass
class _Tries:
    # (time, sequence number) of each charge still in its window, oldest first; the
    # sequence number tells which of the two windows holds the most recent charge.
    minute: deque = field(default_factory=deque)
    hour: deque = field(default_factory=deque)
    last: float = 0.0  # time of the newest try, charged or refused


class Allowance:
    def __init__(self, per_minute: int = 2, per_hour: int = 12, max_keys: int = 10000, clock=time.monotonic):
        if per_minute < 1 or per_hour < 0 or max_keys < 1:
            raise ValueError(
                f"need per_minute >= 1, per_hour >= 0, max_keys >= 1; got {per_minute}, {per_hour}, {max_keys}"
            )
        self.per_minute, self.per_hour, self.max_keys = per_minute, per_hour, max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, _Tries] = OrderedDict()  # idlest first
        self._light: OrderedDict[str, None] = OrderedDict()  # the light ones, idlest first
        self._sequence = itertools.count()

    def charge(self, key: str) -> float:
        """0.0: a try was charged to `key`, check the password. Otherwise the seconds
        until `key` may try again (> 0), and nothing was charged."""
        now = self._clock()
        with self._lock:
            tries = self._keys.get(key)
            if tries is None:
                if len(self._keys) >= self.max_keys:
                    self._drop(self._victim(now))
                tries = self._keys[key] = _Tries()
            self._age(tries, now)
            # An address still hammering stays the newest, refused or not.
            tries.last = now
            self._keys.move_to_end(key)
            if len(tries.minute) < self.per_minute:
                tries.minute.append((now, next(self._sequence)))
            elif len(tries.hour) < self.per_hour:
                tries.hour.append((now, next(self._sequence)))
            else:
                wait = [w[0][0] + span - now for w, span in ((tries.minute, MINUTE), (tries.hour, HOUR)) if w]
                self._place(key, tries)
                return min(wait)
            self._place(key, tries)
            return 0.0

    def refund(self, key: str) -> None:
        """Give back the most recent charge of `key` (its password was right). With
        concurrent tries of one key that may be another try's charge: the count is
        what matters. Nothing happens if `key` holds no charge."""
        now = self._clock()
        with self._lock:
            tries = self._keys.get(key)
            if tries is None:
                return
            self._age(tries, now)
            held = [w for w in (tries.minute, tries.hour) if w]
            if held:
                max(held, key=lambda w: w[-1][1]).pop()
            if not tries.minute and not tries.hour:
                self._drop(key)  # as if it never tried: frees the table too
            else:
                self._place(key, tries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    # --- under the lock ---

    @staticmethod
    def _age(tries: _Tries, now: float) -> None:
        for window, span in ((tries.minute, MINUTE), (tries.hour, HOUR)):
            while window and now - window[0][0] >= span:
                window.popleft()

    def _place(self, key: str, tries: _Tries) -> None:
        """Keep `_light` in step: light keys, newest try last."""
        self._light.pop(key, None)
        if len(tries.minute) + len(tries.hour) < self.per_minute:
            self._light[key] = None

    def _victim(self, now: float) -> str:
        idlest, tries = next(iter(self._keys.items()))
        if now - tries.last >= MINUTE or not self._light:
            return idlest
        return next(iter(self._light))

    def _drop(self, key: str) -> None:
        del self._keys[key]
        self._light.pop(key, None)


class InFlight:
    """At most `limit` holders at once, and at most one per key (a client address):
    a crowd of addresses cannot hold every slot twice over, and one address never
    holds two. A caller may wait up to `wait` seconds for a free slot (first come,
    roughly), never longer: the rest are answered "busy", not queued. Either

        if not in_flight.try_enter(key, wait=2): answer busy
        try: verify  finally: in_flight.leave(key)

    or `with in_flight.slot(key) as entered: ...` (entered False: answer busy)."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"InFlight limit must be at least 1, not {limit!r}")
        self.limit = limit
        self._keys: collections.Counter = collections.Counter()
        self._free = threading.Condition()

    def try_enter(self, key: str = "", wait: float = 0.0) -> bool:
        deadline = time.monotonic() + wait
        with self._free:
            while self.count >= self.limit or (key and self._keys[key]):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (key and self._keys[key]):
                    return False
                self._free.wait(remaining)
            self._keys[key] += 1
            return True

    def leave(self, key: str = "") -> None:
        with self._free:
            if self._keys[key] == 0:
                raise RuntimeError("InFlight.leave() without a matching try_enter()")
            self._keys[key] -= 1
            self._free.notify()

    @property
    def count(self) -> int:
        return sum(self._keys.values())

    @contextmanager
    def slot(self, key: str = "", wait: float = 0.0) -> Iterator[bool]:
        entered = self.try_enter(key, wait)
        try:
            yield entered
        finally:
            if entered:
                self.leave(key)
