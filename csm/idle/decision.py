"""The idle decision: when was a user last active, and is it time to stop them.

Active means: an open connection to code-server (a VS Code tab), a request to it
(code-server's heartbeat), or the container's CPU above the plan's threshold
between two samples (work running: a build, a training run). A user is stopped
once the last activity is idleStopAfter ago.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    connections: int  # established connections to code-server
    heartbeat: float | None  # code-server's lastHeartbeat, epoch seconds
    cpu_seconds: float | None  # CPU time the container used so far


class IdleClock:
    """Last activity per user, from successive samples.

    Whatever happened before `since` (the service start) is not known: a user is
    never stopped before a whole window has been watched."""

    def __init__(self, cpu_threshold: float, since: float):
        self.cpu_threshold = cpu_threshold
        self.since = since
        self._last: dict[str, float] = {}
        self._previous: dict[str, Sample] = {}

    def observe(
        self, name: str, sample: Sample, started_at: float | None = None, cpu_rate: float | None = None
    ) -> float:
        """Take a sample; returns the user's last activity (epoch seconds). `cpu_rate`
        (cores now, where a cluster's metrics say it) counts like the CPU between samples."""
        last = max(self._last.get(name, self.since), started_at or 0, sample.heartbeat or 0)
        previous = self._previous.get(name)
        busy = False
        if previous and previous.cpu_seconds is not None and sample.cpu_seconds is not None and sample.at > previous.at:
            busy = (sample.cpu_seconds - previous.cpu_seconds) / (sample.at - previous.at) > self.cpu_threshold
        busy = busy or (cpu_rate is not None and cpu_rate > self.cpu_threshold)
        if sample.connections > 0 or busy:
            last = sample.at
        self._last[name], self._previous[name] = last, sample
        return last

    def last_activity(self, name: str) -> float | None:
        return self._last.get(name)

    def forget(self, name: str) -> None:
        """The container stopped or restarted: its next run starts a fresh window."""
        self._last.pop(name, None)
        self._previous.pop(name, None)


def should_stop(last_activity: float, now: float, stop_after: float | None) -> bool:
    return stop_after is not None and now - last_activity >= stop_after
