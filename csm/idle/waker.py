"""The waker: nginx hands it the requests a stopped user's container refused
(error_page 502 = @csm_wake, with X-CSM-User naming the user). It starts the
container of a user who was stopped for being idle and answers with the plan's
"Starting <name>'s workspace…" page (503, Retry-After, reloading itself) until
code-server answers; nginx then proxies to code-server again, so the same address
turns into the login page or the workbench by itself. The page learns when by asking
idle.readyPath, which nginx always sends here: the answer is held until code-server
answers (X-CSM-Wake: ready) or readyHoldSeconds pass (starting).

Strangers can reach it too, so starts are limited per client address and per user,
and a start that does not become healthy is stopped and not tried again for
idle.retryFailedAfterSeconds.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import markers, restarts, signals

log = logging.getLogger("csm.idle")
HELD = 64            # starting pages' questions held at once (each is a thread)
HELD_PER_CLIENT = 4  # of those, from one client address


class Window:
    """At most `count` events per `seconds` for each key (a sliding window)."""

    def __init__(self, count: int, seconds: float):
        self.count, self.seconds = count, seconds
        self._events: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def _trim(self, key: str, now: float) -> collections.deque:
        events = self._events[key]
        while events and events[0] <= now - self.seconds:
            events.popleft()
        return events

    def wait(self, key: str, now: float) -> float:
        """Seconds until an event for key is allowed again (0: now)."""
        events = self._trim(key, now)
        return 0 if len(events) < self.count else events[0] + self.seconds - now

    def add(self, key: str, now: float) -> None:
        self._trim(key, now).append(now)


@dataclass
class Answer:
    status: int
    page: str                    # which of the user's idle.pages
    retry_after: int | None


class Waker:
    def __init__(self, plan: dict, control, podman: str = "podman", clock=time.time):
        self.plan, self.control, self.podman, self.clock = plan, control, podman, clock
        idle = plan["idle"]
        self.per_client = Window(idle["startsPerClient"]["count"], idle["startsPerClient"]["seconds"])
        self.per_user = Window(idle["startsPerUser"]["count"], idle["startsPerUser"]["seconds"])
        self.starting: set[str] = set()
        self._lock = threading.Lock()
        self._holding: collections.Counter = collections.Counter()   # client -> questions held
        self._asking = {name: threading.Lock() for name in plan["users"]}
        self._health: dict[str, tuple[float, bool]] = {}   # name -> (when asked, answer)

    def answer(self, name: str, client: str) -> Answer:
        """What a request for `name` from `client` gets; starts the container if due."""
        idle = self.plan["idle"]
        retry = idle["retryAfterSeconds"]
        user = self.plan["users"][name]
        with self._lock:
            now = self.clock()
            if name in self.starting:
                return Answer(503, "starting", retry)
            marker = markers.read(self.plan, name)
            failed = (marker or {}).get("failedAt")
            if failed and now - failed < idle["retryFailedAfterSeconds"]:
                return Answer(503, "failed", int(failed + idle["retryFailedAfterSeconds"] - now) + 1)
            info = signals.inspect(self.podman, user["container"]["name"])
            if signals.running(info) or (info and restarts.half_restarted(info)) or self.control.starting(user):
                return Answer(503, "starting", retry)   # on its way up (or restarting), or just stopping
            if marker is None:
                return Answer(503, "stopped", None)
            wait = max(self.per_client.wait(client, now), self.per_user.wait(name, now))
            if wait > 0:
                log.warning("not starting %s for %s: start limit reached (%.0f s to wait)", name, client, wait)
                return Answer(429, "rateLimited", int(wait) + 1)
            self.per_client.add(client, now)
            self.per_user.add(name, now)
            self.starting.add(name)
        log.info("starting %s (request from %s)", name, client)
        threading.Thread(target=self._start, args=(name,), daemon=True).start()
        return Answer(503, "starting", retry)

    def ready(self, name: str, client: str) -> Answer:
        """The answer to the starting page's question (idle.readyPath): "ready" as soon
        as code-server passes its health check, held up to readyHoldSeconds while the
        container starts; otherwise what a visit gets (which may start it). A client
        holds at most HELD_PER_CLIENT questions (all clients HELD) at once, and however
        many wait, one of them at a time asks the user's port, at most every 0.2 s."""
        if self._healthy(name):
            return Answer(200, "ready", None)
        a = self.answer(name, client)
        if a.page != "starting" or not self._hold(client):
            return a
        try:
            deadline = time.monotonic() + self.plan["idle"]["readyHoldSeconds"]
            while time.monotonic() < deadline:
                time.sleep(0.1)
                if self._healthy(name):
                    return Answer(200, "ready", None)
            return a
        finally:
            with self._lock:
                self._holding[client] -= 1

    def _hold(self, client: str) -> bool:
        with self._lock:
            if self._holding[client] >= HELD_PER_CLIENT or sum(self._holding.values()) >= HELD:
                return False
            self._holding[client] += 1
            return True

    def _healthy(self, name: str) -> bool:
        with self._asking[name]:   # one asker per user; the others take its answer
            at, answer = self._health.get(name, (0.0, False))
            if time.monotonic() - at >= 0.2:
                answer = signals.healthy(self.plan["users"][name]["port"])
                self._health[name] = (time.monotonic(), answer)
            return answer

    def _start(self, name: str) -> None:
        user = self.plan["users"][name]
        deadline = self.clock() + self.plan["idle"]["healthTimeoutSeconds"]
        try:
            self._wait_stopped(user)
            self.control.start(user)
            checked = 0.0
            while self.clock() < deadline:
                if self._healthy(name):   # the same asker the held questions share
                    markers.clear(self.plan, name)
                    log.info("%s is up", name)
                    return
                if self.clock() - checked >= 2:   # gave up already: no need to wait it out
                    checked = self.clock()
                    info = signals.inspect(self.podman, user["container"]["name"])
                    if not signals.running(info) and not self.control.starting(user):
                        code = info["State"].get("ExitCode") if info else None
                        raise RuntimeError(f"the container stopped (exit code {code})")
                time.sleep(0.25)
            raise TimeoutError(f"not healthy within {self.plan['idle']['healthTimeoutSeconds']} s")
        except Exception as e:   # noqa: BLE001 - whatever failed, the start failed
            log.error("starting %s failed (%s); not trying again for %d s", name, e,
                      self.plan["idle"]["retryFailedAfterSeconds"])
            markers.write(self.plan, name, failedAt=self.clock())
            try:
                self.control.stop(user)   # no restart loop: it stays stopped
            except Exception as stop_error:   # noqa: BLE001
                log.error("stopping %s after the failed start failed too: %s", name, stop_error)
        finally:
            with self._lock:
                self.starting.discard(name)


    def _wait_stopped(self, user: dict, timeout: float = 30) -> None:
        """A request can come while the container is still stopping (the idle stop of a
        tab's last connection): start it once it has stopped."""
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            info = signals.inspect(self.podman, user["container"]["name"])
            if not info or info["State"].get("Status") != "stopping":
                return
            time.sleep(0.25)


def handler(waker: Waker):
    class Handler(BaseHTTPRequestHandler):
        server_version = "csm-idle"
        sys_version = ""

        def _serve(self) -> None:
            name = self.headers.get("X-CSM-User", "")
            if name not in waker.plan["users"] or name not in waker.plan["idle"]["users"]:
                self.send_error(404, "no such user")
                return
            client = self.headers.get("X-Real-IP") or self.client_address[0]
            if self.path.split("?")[0] == waker.plan["idle"]["readyPath"]:
                a = waker.ready(name, client)
            else:
                a = waker.answer(name, client)
            body = b"ready\n" if a.page == "ready" else waker.plan["users"][name]["idle"]["pages"][a.page].encode()
            self.send_response(a.status)
            self.send_header("X-CSM-Wake", a.page)   # the starting page asks until this changes
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            if a.retry_after:
                self.send_header("Retry-After", str(a.retry_after))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _serve

        def log_message(self, fmt, *args) -> None:
            log.debug("%s %s", self.address_string(), fmt % args)

    return Handler


def serve(waker: Waker) -> ThreadingHTTPServer:
    """The waker's HTTP server on the plan's loopback address (not yet serving)."""
    address = waker.plan["idle"]["waker"]
    server = ThreadingHTTPServer((address["address"], address["port"]), handler(waker))
    server.daemon_threads = True
    return server
