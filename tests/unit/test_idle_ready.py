"""The starting page's question (gate.paths.ready), end to end below HTTP: the gate
holds it, asking the root side's control socket, whose waker asks the user's
code-server socket at most every 0.2 s however many wait; it gives up after
readyHoldSeconds, and holds only heldAtOnce questions at once. A small HTTP server
on a Unix socket plays code-server's health check; the live wake is in
tests/e2e/test_idle.py and tests/browser/test_idle_wake.py."""

from __future__ import annotations

import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from csm import plan as planlib
from csm.gate import control
from csm.gate.core import Gate
from csm.idle.waker import Waker


class Health:
    """Answers the health path with 503 until `healthy_after` seconds have passed."""

    def __init__(self, path: str, health_path: str, healthy_after: float):
        self.asked = 0
        start = time.monotonic()
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                health.asked += 1
                ok = self.path == health_path and time.monotonic() - start >= healthy_after
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

            def get_request(self):
                request, _ = super().get_request()
                return request, ("local", 0)

        self.server = Server(path, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class NoPodman:
    """The waker's start/stop: nothing to do here, the test marks ada as starting."""

    def starting(self, user: dict) -> bool:
        return False


@pytest.fixture
def gate_for(tmp_path):
    servers = []

    def make(healthy_after: float, hold: int = 2, held: int = 64) -> tuple[Gate, Health]:
        plan = planlib.from_settings(
            {
                "domain": "code.test",
                "runtimeDir": str(tmp_path / "run"),
                "workspaceBase": str(tmp_path / "ws"),
                "gate": {"stateDir": str(tmp_path / "gate")},
                "users": {"ada": {"hashedPasswordFile": str(tmp_path / "ada.hash")}},
            }
        )
        plan.gate.readyHoldSeconds, plan.gate.heldAtOnce = hold, held
        plan.gate.control.socket = str(tmp_path / "control.sock")
        user = plan.users["ada"]
        # code-server's socket as the container makes it (owned here by this test's
        # uid), and root's link to it, which the waker makes before it asks.
        user.socketSource = str(tmp_path / "code-server.sock")
        user.socket = str(tmp_path / "link.sock")
        user.ids.hostUid = os.getuid()
        health = Health(user.socketSource, user.container.healthPath, healthy_after)
        waker = Waker(plan, NoPodman(), podman="false")
        waker.starting.add("ada")  # as when the waker has begun to start ada's container
        root = control.Server(plan.gate.control.socket, {"ada"}, waker.answer, group=None)
        threading.Thread(target=root.serve_forever, daemon=True).start()
        servers.extend([health.server, root])
        (tmp_path / "gate").mkdir(exist_ok=True)
        return Gate(plan, tmp_path), health

    yield make
    for server in servers:
        server.shutdown()


def test_the_question_is_held_until_code_server_answers(gate_for):
    gate, health = gate_for(healthy_after=0.6)
    start = time.monotonic()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(gate.wait_ready("ada", "192.0.2.1")["state"])) for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    assert results == ["ready"] * 20
    assert 0.6 <= took < 1.5, took
    assert health.asked <= took / 0.2 + 3, (
        f"20 waiting questions asked code-server {health.asked} times in {took:.1f} s"
    )


def test_the_question_is_answered_not_yet_after_the_hold(gate_for):
    gate, _ = gate_for(healthy_after=60, hold=1)
    start = time.monotonic()
    assert gate.wait_ready("ada", "192.0.2.1")["state"] == "starting"
    assert 1 <= time.monotonic() - start < 2


def test_only_so_many_questions_are_held_at_once(gate_for):
    gate, _ = gate_for(healthy_after=60, hold=2, held=4)
    held = [threading.Thread(target=gate.wait_ready, args=("ada", "192.0.2.66")) for _ in range(4)]
    for t in held:
        t.start()
    time.sleep(0.3)
    start = time.monotonic()
    assert gate.wait_ready("ada", "192.0.2.66")["state"] == "starting"  # a fifth: answered at once
    assert time.monotonic() - start < 0.5
    for t in held:
        t.join()


def test_the_control_socket_answers_only_its_verbs_for_its_users(gate_for, tmp_path):
    gate, _ = gate_for(healthy_after=0)
    where = gate.settings.control.socket
    assert control.ask(where, "state", "ada")["state"] in ("ready", "starting")
    for verb, user in (("stop", "ada"), ("start", "bo"), ("exec", "ada"), ("state", "../ada")):
        with pytest.raises(control.ControlError, match="ask one of start, state for a user of the plan"):
            control.ask(where, verb, user)
