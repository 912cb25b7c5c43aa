"""The narrow interface between the gate (an unprivileged account) and the root side
(`csm idle serve`), which alone may start containers: a Unix socket that only the
gate's group can reach, one JSON line in, one JSON line out, two verbs.

    {"verb": "start", "user": "ada"}  -> {"state": "starting", "retryAfter": 2}
    {"verb": "state", "user": "ada"}  -> {"state": "ready"}

States: ready (code-server answers), starting, failed (a start did not become
healthy; not tried again before retryAfter s), stopped (stopped by an admin: not
started from here), idle (stopped for being idle; `start` wakes it). The gate has no
verb to stop anything, run anything or name anything but a user of the plan.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("csm.control")
VERBS = ("start", "state")
MAX_LINE = 256  # a verb and a DNS label fit many times over
TIMEOUT = 5.0  # seconds a question may take, either side
CONNECTIONS = 32  # answered at once; more are closed unanswered


class ControlError(Exception):
    pass


def ask(socket_path: str, verb: str, user: str, timeout: float = TIMEOUT) -> dict:
    """The gate's side: one question, its answer, or ControlError saying why not."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(socket_path)
            s.sendall(json.dumps({"verb": verb, "user": user}).encode() + b"\n")
            line = s.makefile("rb").readline(4096)
        except OSError as e:
            raise ControlError(f"the root side ({socket_path}) did not answer: {e}") from None
    try:
        answer = json.loads(line)
    except ValueError:
        raise ControlError(f"the root side answered {line[:100]!r}, not JSON") from None
    if "error" in answer:
        raise ControlError(answer["error"])
    return answer


Answerer = Callable[[str, str], dict]  # (verb, user) -> answer


class _Handler(socketserver.StreamRequestHandler):
    timeout = TIMEOUT

    def handle(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        try:
            request = json.loads(self.rfile.readline(MAX_LINE + 1)[:MAX_LINE] or b"null")
            verb, user = request["verb"], request["user"]
            if verb not in VERBS or user not in server.users:
                raise ValueError
        except (ValueError, TypeError, KeyError):
            self._send({"error": f"ask one of {', '.join(VERBS)} for a user of the plan"})
            return
        try:
            self._send(server.answerer(verb, user))
        except Exception as e:  # noqa: BLE001 - the gate gets a reason, the log the rest
            log.exception("control: %s %s failed", verb, user)
            self._send({"error": f"{verb} {user} failed: {e}"})

    def _send(self, answer: dict) -> None:
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class _Bounded:
    """A thread per connection, at most `connections` at once: one more is closed
    unanswered, never queued without bound. The gate and the root side both serve so."""

    daemon_threads = True
    request_queue_size = 1024  # a burst waits in the backlog instead of failing to connect
    _slots: threading.BoundedSemaphore

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        super().process_request(request, client_address)  # type: ignore[misc]

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._slots.release()


class BoundedUnixServer(_Bounded, socketserver.ThreadingUnixStreamServer):
    def __init__(self, socket_path: str, handler, connections: int):
        self._slots = threading.BoundedSemaphore(connections)
        super().__init__(socket_path, handler)

    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)  # a Unix socket has no client address


class BoundedTCPServer(_Bounded, socketserver.ThreadingTCPServer):
    """The same on a TCP port (the gate in a cluster, where a NetworkPolicy lets only
    the ingress controller reach it)."""

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler, connections: int):
        self._slots = threading.BoundedSemaphore(connections)
        super().__init__(address, handler)


class Server(BoundedUnixServer):
    def __init__(self, socket_path: str, users: set[str], answerer: Answerer, group: str | None):
        self.users, self.answerer = users, answerer
        Path(socket_path).unlink(missing_ok=True)
        super().__init__(socket_path, _Handler, CONNECTIONS)
        # The directory (root:<gate group> 0750) decides who gets here; the socket
        # itself is the group's to write.
        if group is not None:
            import grp

            os.chown(socket_path, 0, grp.getgrnam(group).gr_gid)
        os.chmod(socket_path, 0o660)
