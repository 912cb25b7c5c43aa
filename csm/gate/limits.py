"""Wrong-password limits per client address, and the bound on argon2 work in flight.

The allowance is code-server's own (2 a minute plus 12 an hour) but kept per key
(address and user) in sliding windows, and charged BEFORE the password is checked:
N guesses sent at once get at most the allowance checked, the rest are refused
unchecked. A right password gives its charge back, so logging in costs nothing.
"""
from __future__ import annotations

import collections
import ipaddress
import threading
import time

MINUTE, HOUR = 60.0, 3600.0


def client_key(address: str, ipv6_prefix: int = 64) -> str:
    """An IPv4 address as it is; an IPv6 one as its network of ipv6_prefix bits (one
    /64 is one household or office, and holds 2^64 addresses of its own)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))
    return str(ip)


class Allowance:
    """Per key: a try is charged to the minute window while it holds fewer than
    per_minute tries of the last 60 s, else to the hour window while it holds fewer
    than per_hour of the last hour; with neither, nothing is charged."""

    def __init__(self, per_minute: int = 2, per_hour: int = 12, max_keys: int = 10000, clock=time.monotonic):
        self.per_minute, self.per_hour, self.max_keys, self.clock = per_minute, per_hour, max_keys, clock
        # key -> (minute window, hour window): deques of charge times, oldest first
        self._keys: collections.OrderedDict[str, tuple[collections.deque, collections.deque]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def _windows(self, key: str, now: float) -> tuple[collections.deque, collections.deque]:
        windows = self._keys.get(key)
        if windows is None:
            if len(self._keys) >= self.max_keys:
                self._evict(now)
            windows = self._keys[key] = (collections.deque(), collections.deque())
        minute, hour = windows
        while minute and minute[0] <= now - MINUTE:
            minute.popleft()
        while hour and hour[0] <= now - HOUR:
            hour.popleft()
        return windows

    def _evict(self, now: float) -> None:
        """Drop the keys whose last charge is oldest (least recently charged first);
        keys empty by now go first, so a flood of new addresses pushes out only those
        that stopped guessing longest ago."""
        for key in [k for k, (m, h) in self._keys.items() if not m and (not h or h[-1] <= now - HOUR)]:
            del self._keys[key]
        while len(self._keys) >= self.max_keys:
            self._keys.popitem(last=False)

    def charge(self, key: str) -> float:
        """0.0: one try charged. Otherwise the seconds until a try is allowed (nothing charged)."""
        with self._lock:
            now = self.clock()
            minute, hour = self._windows(key, now)
            self._keys.move_to_end(key)
            if len(minute) < self.per_minute:
                minute.append(now)
                return 0.0
            if len(hour) < self.per_hour:
                hour.append(now)
                return 0.0
            waits = [minute[0] + MINUTE - now] + ([hour[0] + HOUR - now] if hour else [])
            return max(min(waits), 0.001)

    def refund(self, key: str) -> None:
        """Give back the newest charge of key (its password was right)."""
        with self._lock:
            windows = self._keys.get(key)
            if not windows:
                return
            minute, hour = windows
            newest = max(((w[-1], w) for w in (minute, hour) if w), default=None, key=lambda x: x[0])
            if newest:
                newest[1].pop()


class InFlight:
    """At most `limit` at once; the rest are told to come back, never queued."""

    def __init__(self, limit: int):
        self._slots = threading.BoundedSemaphore(limit)

    def try_enter(self) -> bool:
        return self._slots.acquire(blocking=False)

    def leave(self) -> None:
        self._slots.release()
