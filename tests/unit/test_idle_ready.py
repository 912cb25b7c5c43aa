"""The waker's answer to the starting page's question (idle.readyPath): held until the
user's code-server passes its health check, given up after readyHoldSeconds, and
however many questions wait, the port is asked at most every 0.2 s. A small HTTP
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
                         "readyHoldSeconds": hold},
                "users": {"ada": {"port": health.port}}}
        return Waker(plan, control=None), health

    yield make
    for server in servers:
        server.shutdown()


def test_the_question_is_held_until_code_server_answers(waker_for):
    waker, health = waker_for(healthy_after=0.6)
    start = time.monotonic()
    results = []
    threads = [threading.Thread(target=lambda: results.append(waker.ready("ada"))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    assert results == [True] * 20
    assert 0.6 <= took < 1.5, took
    assert health.asked <= took / 0.2 + 3, f"20 waiting questions asked the port {health.asked} times in {took:.1f} s"


def test_the_question_is_answered_not_yet_after_the_hold(waker_for):
    waker, _ = waker_for(healthy_after=60, hold=1)
    start = time.monotonic()
    assert waker.ready("ada") is False
    assert 1 <= time.monotonic() - start < 2
