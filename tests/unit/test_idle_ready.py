"""The waker's answer to the starting page's question (idle.readyPath): held until the
user's code-server passes its health check, given up after readyHoldSeconds, one
address holds only a few at once, and however many questions wait, the port is asked
at most every 0.2 s. A small HTTP
server on a free port plays code-server's health check; the live wake is in
tests/e2e/test_idle.py and tests/browser/test_idle_wake.py."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from csm.checks import http
from csm.idle.waker import Waker


class Health:
    """Answers the health path with 503 until `healthy_after` seconds have passed."""

    def __init__(self, healthy_after: float):
        self.asked = 0
        start = time.monotonic()
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                health.asked += 1
                ok = self.path == http.health_path() and time.monotonic() - start >= healthy_after
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]


@pytest.fixture
def waker_for():
    servers = []

    def make(healthy_after: float, hold: int = 2):
        health = Health(healthy_after)
        servers.append(health.server)
        plan = {"idle": {"startsPerClient": {"count": 5, "seconds": 600}, "startsPerUser": {"count": 4, "seconds": 3600},
                         "readyHoldSeconds": hold, "retryAfterSeconds": 2},
                "users": {"ada": {"port": health.port}}}
        waker = Waker(plan, control=None)
        waker.starting.add("ada")   # as when the waker has begun to start ada's container
        return waker, health

    yield make
    for server in servers:
        server.shutdown()


def test_the_question_is_held_until_code_server_answers(waker_for):
    waker, health = waker_for(healthy_after=0.6)
    start = time.monotonic()
    results = []
    clients = [f"192.0.2.{i // 4}" for i in range(20)]   # four questions from each of five addresses
    threads = [threading.Thread(target=lambda c=c: results.append(waker.ready("ada", c).page)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    assert results == ["ready"] * 20
    assert 0.6 <= took < 1.5, took
    assert health.asked <= took / 0.2 + 3, f"20 waiting questions asked the port {health.asked} times in {took:.1f} s"


def test_the_question_is_answered_not_yet_after_the_hold(waker_for):
    waker, _ = waker_for(healthy_after=60, hold=1)
    start = time.monotonic()
    assert waker.ready("ada", "192.0.2.1").page == "starting"
    assert 1 <= time.monotonic() - start < 2


def test_one_address_holds_only_a_few_questions(waker_for):
    waker, _ = waker_for(healthy_after=60, hold=2)
    held = [threading.Thread(target=waker.ready, args=("ada", "192.0.2.66")) for _ in range(4)]
    for t in held:
        t.start()
    time.sleep(0.3)
    start = time.monotonic()
    assert waker.ready("ada", "192.0.2.66").page == "starting"   # a fifth: answered at once
    assert time.monotonic() - start < 0.5
    for t in held:
        t.join()
