"""`csm idle serve`: the root side. The idle checker, and the waker the gate asks
through the control socket, in one process.

    csm idle serve --plan /etc/code-server-multi/plan.json --systemd   # NixOS
    csm idle serve --plan STATE/stack.json --state-dir STATE           # the runner

Every idle.checkIntervalSeconds it samples each running user with an idleStopAfter,
and stops those idle for that long (marking them, see markers.py); meanwhile the
waker answers the gate on the plan's control socket. For the runner (podman) it also
finishes the restarts podman leaves half-done (restarts.py), so it runs even when
no user has an idleStopAfter.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from csm.plan_types import Plan

from .. import sockets
from ..gate.control import Server as ControlServer
from ..plan import PlanError, load_plan
from ..runner import RunnerError, backends
from ..runner.host import Host
from . import markers, restarts, signals
from .decision import IdleClock, should_stop
from .waker import Waker

log = logging.getLogger("csm.idle")
ACTIVITY_FILE = "activity.json"


class Checker:
    def __init__(self, plan: Plan, control, waker: Waker, podman: str = "podman"):
        self.plan, self.control, self.waker, self.podman = plan, control, waker, podman
        self.clock = IdleClock(plan.idle.cpuThreshold, since=time.time())

    def check_once(self) -> None:
        activity = {}
        for name in self.plan.idle.users:
            user = self.plan.users[name]
            if name in self.waker.starting:
                continue
            info = signals.inspect(self.podman, user.container.name)
            if not signals.running(info):
                self.clock.forget(name)
                continue
            sample = signals.sample(info, user)
            last = self.clock.observe(name, sample, signals.parse_time(info["State"].get("StartedAt")))
            activity[name] = last
            if should_stop(last, sample.at, user.idle.stopAfterSeconds):
                self.stop(name, last)
        self._record(activity)

    def stop(self, name: str, last_activity: float) -> None:
        stop_idle(self.plan, self.control, name, last_activity)
        self.clock.forget(name)

    def _record(self, activity: dict) -> None:
        """Last activity of the running users, for `csm status`."""
        path = Path(self.plan.idle.stateDir) / ACTIVITY_FILE
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(activity) + "\n")
        os.replace(tmp, path)


def stop_idle(plan: Plan, control, name: str, last_activity: float) -> bool:
    """Stop a user for being idle: marked first, so a request meanwhile wakes them."""
    log.info("stopping %s: idle since %s", name, time.strftime("%H:%M:%S", time.localtime(last_activity)))
    markers.clear(plan, name)
    markers.write(plan, name, stoppedAt=time.time(), lastActivity=last_activity)
    try:
        control.stop(plan.users[name], "for being idle")
    except RunnerError as e:
        log.error("%s", e)
        markers.clear(plan, name)
        return False
    return True


def last_activity(plan: Plan) -> dict[str, float]:
    try:
        return json.loads((Path(plan.idle.stateDir) / ACTIVITY_FILE).read_text())
    except (OSError, ValueError, KeyError):
        return {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="csm idle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the idle checker and the waker")
    s.add_argument("--plan", required=True, metavar="PLAN.json")
    s.add_argument(
        "--systemd",
        action="store_true",
        help="start and stop users' units (the plan's container.unit, NixOS) instead of podman",
    )
    s.add_argument("--state-dir", help="the runner's state directory (podman starts containers from it)")
    s.add_argument("--podman", default="podman")
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        plan = load_plan(args.plan)
    except PlanError as e:
        print(f"csm idle: {e}", file=sys.stderr)
        return 2
    idle_on = plan.idle.enable
    # systemd restarts units itself; on podman the service also finishes restarts (restarts.py).
    if not idle_on and args.systemd:
        print("csm idle: no user has an idleStopAfter; nothing to do", file=sys.stderr)
        return 0
    # The one backend interface (csm/runner/backends.py): the units on NixOS, podman else.
    control: backends.Backend = (
        backends.Systemd(plan) if args.systemd else backends.Podman(plan, args.state_dir, Host(podman=args.podman))
    )
    server = checker = waker = None
    if idle_on:
        waker = Waker(plan, control, args.podman)
        where = plan.gate.control.socket
        try:
            server = ControlServer(where, set(plan.users), waker.answer, group=plan.gate.user)
        except (OSError, KeyError) as e:
            print(
                f"csm idle: cannot serve the control socket {where} ({e}); is another `csm idle serve` "
                "running for this plan, or the gate's account missing?",
                file=sys.stderr,
            )
            return 3
        threading.Thread(target=server.serve_forever, daemon=True).start()
        log.info(
            "answering the gate on %s; checking %s every %d s",
            where,
            ", ".join(plan.idle.users),
            plan.idle.checkIntervalSeconds,
        )
        checker = Checker(plan, control, waker, args.podman)
    if not args.systemd:
        log.info("finishing restarts podman leaves half-done, checking every %d s", restarts.CHECK_SECONDS)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    restarter = None if args.systemd else restarts.Restarter(plan, control, args.podman)
    loop(plan, checker, restarter, waker, done)
    if server:
        server.shutdown()
    return 0


def loop(
    plan: Plan,
    checker: Checker | None,
    restarter: restarts.Restarter | None,
    waker: Waker | None,
    done: threading.Event,
) -> None:
    """Until SIGTERM: finish podman's half-done restarts every few seconds (the runner
    only), and run the idle check every checkIntervalSeconds (when someone has one)."""
    interval = plan.idle.checkIntervalSeconds
    tick = restarts.CHECK_SECONDS if restarter else interval
    next_idle_check = time.monotonic() + interval

    def not_mine(name: str) -> bool:  # stopped for being idle, or being started by the waker
        return markers.read(plan, name) is not None or (waker is not None and name in waker.starting)

    try:
        while not done.wait(tick):
            try:
                for user in plan.users.values():  # a container restarted by itself made a new socket
                    sockets.link(user)
                if restarter:
                    restarter.finish(skip=not_mine)
                if checker and time.monotonic() >= next_idle_check:
                    next_idle_check = time.monotonic() + interval
                    checker.check_once()
            except Exception:  # noqa: BLE001 - one bad round must not end the service
                log.exception("check failed")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
