"""code-server directly, on its Unix socket (--auth none), which root (the bench) may
open: an HTTP connection over AF_UNIX, the wait for its health, and a TCP forwarder
for Chromium. Shared by the benches that compare the front with the socket."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading

from csm.checks import facts as checks_facts
from csm.idle.signals import UnixConnection
from csm.waiting import wait_until

# ---- code-server directly, on its Unix socket ---------------------------------------


def socket_get(path: str, url: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    """One GET on a Unix socket: (status, headers, body)."""
    conn = UnixConnection(path, timeout)
    try:
        conn.request("GET", url)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def wait_for_health(path: str, timeout: float = 120) -> None:
    """Poll code-server's /healthz on its socket every 20 ms until it answers 200 (a
    socket file left by the last run refuses connections until code-server binds)."""

    def answers() -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            return socket_get(path, checks_facts.health_path(), timeout=2)[0] == 200
        return False

    wait_until(answers, timeout, f"code-server on {path}", interval=0.02)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from reader to writer until EOF, then a half-close (the other way may go on)."""
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class UnixForwarder:
    """127.0.0.1:<free port> to a Unix socket, byte for byte, on a thread of its own:
    Chromium cannot open a Unix socket. It adds no auth (code-server runs with --auth
    none), listens on loopback only and lives for one measurement.

        with UnixForwarder(plan.users["bn1"].socket) as fwd:
            page.goto(fwd.url)
    """

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unix-forwarder", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UnixForwarder:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the forwarder closes with connections open (a workbench's WebSockets)
        finally:
            up_writer.close()
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            while tasks := asyncio.all_tasks(self._loop):  # a connection accepted meanwhile adds one
                for task in tasks:
                    task.cancel()
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()
