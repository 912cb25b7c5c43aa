"""The root side of wake-after-login: the gate (csm/gate) asks, through the control
socket (csm/gate/control.py), for a user's state or for a start; only a logged-in
person's request reaches it. It starts the container of a user who was stopped for
being idle; a start that does not become healthy is stopped and not tried again for
idle.retryFailedAfterSeconds. A container an admin stopped stays stopped.

One start per user at a time, each in a thread of its own; podman is asked without
holding any lock, and each user's health is asked at most every 0.2 s however many
questions wait.
"""

from __future__ import annotations

import logging
import threading
import time

from csm.plan_types import Plan, User

from .. import sockets
from ..waiting import wait_until
from . import markers, restarts, signals

log = logging.getLogger("csm.idle")


class Waker:
    def __init__(self, plan: Plan, control, podman: str = "podman", clock=time.time):
        self.plan, self.control, self.podman, self.clock = plan, control, podman, clock
        self.starting: set[str] = set()
        self._lock = threading.Lock()  # guards `starting` only
        self._asking = {name: threading.Lock() for name in plan.users}
        self._health: dict[str, tuple[float, bool]] = {}  # name -> (when asked, answer)

    def answer(self, verb: str, name: str) -> dict:
        """The control socket's answerer: "state" or "start" of a user of the plan."""
        return self.start(name) if verb == "start" else self.state(name)

    def state(self, name: str) -> dict:
        if self._healthy(name):
            return {"state": "ready"}
        with self._lock:
            if name in self.starting:
                return {"state": "starting", "retryAfter": self.plan.gate.retryAfterSeconds}
        marker = markers.read(self.plan, name)
        failed = (marker or {}).get("failedAt")
        wait = self.plan.idle.retryFailedAfterSeconds
        if failed and self.clock() - failed < wait:
            return {"state": "failed", "retryAfter": int(failed + wait - self.clock()) + 1}
        user = self.plan.users[name]
        info = signals.inspect(self.podman, user.container.name)
        if signals.running(info) or (info and restarts.half_restarted(info)) or self.control.starting(user):
            return {"state": "starting", "retryAfter": self.plan.gate.retryAfterSeconds}
        return {"state": "idle" if marker is not None else "stopped"}

    def start(self, name: str) -> dict:
        """Start a user stopped for being idle; otherwise the state as it is."""
        now = self.state(name)
        if now["state"] != "idle":
            return now
        with self._lock:
            if name in self.starting:
                return {"state": "starting", "retryAfter": self.plan.gate.retryAfterSeconds}
            self.starting.add(name)
        log.info("starting %s (its owner is logged in)", name)
        threading.Thread(target=self._start, args=(name,), daemon=True).start()
        return {"state": "starting", "retryAfter": self.plan.gate.retryAfterSeconds}

    def _healthy(self, name: str) -> bool:
        with self._asking[name]:  # one asker per user; the others take its answer
            at, answer = self._health.get(name, (0.0, False))
            if time.monotonic() - at >= 0.2:
                user = self.plan.users[name]
                answer = sockets.link(user) and signals.healthy(user.socket, user.container.healthPath)
                self._health[name] = (time.monotonic(), answer)
            return answer

    def _start(self, name: str) -> None:
        user = self.plan.users[name]
        deadline = self.clock() + self.plan.idle.healthTimeoutSeconds
        try:
            self._wait_stopped(user)
            self.control.start(user, wait=False)
            checked = [0.0]

            def up() -> bool:
                if self._healthy(name):
                    return True
                if self.clock() - checked[0] >= 2:  # gave up already: no need to wait it out
                    checked[0] = self.clock()
                    self._raise_if_stopped(user)
                return False

            try:
                wait_until(up, deadline - self.clock(), f"{name} healthy", interval=0.25, clock=self.clock)
            except TimeoutError:
                raise TimeoutError(f"not healthy within {self.plan.idle.healthTimeoutSeconds} s") from None
            markers.clear(self.plan, name)
            log.info("%s is up", name)
        except Exception as e:  # noqa: BLE001 - whatever failed, the start failed
            log.error(
                "starting %s failed (%s); not trying again for %d s",
                name,
                e,
                self.plan.idle.retryFailedAfterSeconds,
            )
            markers.write(self.plan, name, failedAt=self.clock())
            try:
                self.control.stop(user, "after a failed start")  # no restart loop: it stays stopped
            except Exception as stop_error:  # noqa: BLE001
                log.error("stopping %s after the failed start failed too: %s", name, stop_error)
        finally:
            with self._lock:
                self.starting.discard(name)

    def _wait_stopped(self, user: User, timeout: float = 30) -> None:
        """A request can come while the container is still stopping (the idle stop of a
        tab's last connection): start it once it has stopped."""

        def stopped() -> bool:
            info = signals.inspect(self.podman, user.container.name)
            return not info or info["State"].get("Status") != "stopping"

        try:
            wait_until(stopped, timeout, f"{user.container.name} stopped", interval=0.25, clock=self.clock)
        except TimeoutError:
            pass  # still stopping: the start says what is wrong

    def _raise_if_stopped(self, user: User) -> None:
        info = signals.inspect(self.podman, user.container.name)
        if not signals.running(info) and not self.control.starting(user):
            code = info["State"].get("ExitCode") if info else None
            raise RuntimeError(f"the container stopped (exit code {code})")
