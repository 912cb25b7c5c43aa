"""How status numbers are read and shown."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from csm import cli
from csm.idle import signals
from csm.runner import status
from csm.runner.status import parse_bytes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("708KiB / 1GiB", 708 * 1024),  # podman's {{.MemUsageBytes}}
        ("123.5MiB / 3GiB", int(123.5 * 2**20)),
        ("1.5GiB / 3GiB", 3 * 2**29),
        ("725kB / 1.074GB", 725_000),  # {{.MemUsage}}: decimal units
        ("612.3MB / 3.221GB", 612_300_000),
        ("0B / 0B", 0),
    ],
)
def test_memory_use_from_podman_stats(text, expected):
    assert parse_bytes(text) == expected


def test_sizes_and_times_for_people():
    assert cli._size(None) == "-"
    assert cli._size(59 * 2**20) == "59 MiB"
    assert cli._size(3 * 2**30) == "3.0 GiB"
    assert cli._when(None) == "none since start"
    assert cli._when(time.time() - 5).endswith("(5 s ago)")
    assert cli._when(time.time() - 600).endswith("(10 min ago)")


# ---- OOM kills: the kernel's own count for the container's memory cgroup ---------------
# The trees below are laid out as the kernel lays out /proc and /sys/fs/cgroup; the
# live test (tests/e2e/test_runner_stack.py) has the kernel write them.

V1_PROC_CGROUP = (
    "12:pids:/libpod_parent/libpod-abc\n11:memory:/libpod_parent/libpod-abc\n"
    "1:name=systemd:/libpod_parent/libpod-abc\n0::/\n"
)
V2_PROC_CGROUP = "0::/machine.slice/libpod-abc.scope/container\n"


def kernel_files(tmp_path, proc_cgroup: str, counters: dict[str, str], v2: bool = False):
    proc, cgroups = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text(proc_cgroup)
    cgroups.mkdir()
    if v2:
        (cgroups / "cgroup.controllers").write_text("cpu memory pids\n")
    for path, text in counters.items():
        (cgroups / path).parent.mkdir(parents=True, exist_ok=True)
        (cgroups / path).write_text(text)
    return proc, cgroups


def running(pid=4242, exit_code=0) -> dict:
    return {"State": {"Running": True, "Pid": pid, "ExitCode": exit_code}}


def test_oom_kills_from_cgroup_v1_memory_oom_control(tmp_path):
    proc, cgroups = kernel_files(
        tmp_path,
        V1_PROC_CGROUP,
        {
            "memory/libpod_parent/libpod-abc/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 9\n",
        },
    )  # the host's, not ours
    assert status.oom_kills(running(), proc, cgroups) == 2


def test_oom_kills_from_cgroup_v2_memory_events(tmp_path):
    proc, cgroups = kernel_files(
        tmp_path,
        V2_PROC_CGROUP,
        {"machine.slice/libpod-abc.scope/container/memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"},
        v2=True,
    )
    assert status.oom_kills(running(), proc, cgroups) == 1


def test_a_kill_9_is_no_oom_kill(tmp_path):
    # Exit code 137 is any SIGKILL (kill -9, `podman rm` after its timeout): only the
    # kernel's count says OOM. A stopped container's cgroup is gone: unknown, not 1.
    proc, cgroups = kernel_files(
        tmp_path,
        V1_PROC_CGROUP,
        {"memory/libpod_parent/libpod-abc/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
    )
    assert status.oom_kills(running(exit_code=137), proc, cgroups) == 0
    assert status.oom_kills({"State": {"Running": False, "Pid": 0, "ExitCode": 137}}, proc, cgroups) is None


def test_oom_kills_unreadable_is_unknown(tmp_path):
    proc, cgroups = kernel_files(tmp_path, V1_PROC_CGROUP, {})
    assert status.oom_kills(running(), proc, cgroups) is None  # no counter file
    assert status.oom_kills(running(pid=999), proc, cgroups) is None  # the process is gone


def test_last_activity_is_code_servers_heartbeat_in_seconds(tmp_path):
    """Read on code-server's Unix socket, as `csm status` and the idle check do."""
    beat_ms = 1_767_225_600_123  # what code-server's /healthz says: milliseconds since the epoch

    class Healthz(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "alive", "lastHeartbeat": beat_ms}).encode()
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    sock = str(tmp_path / "code-server.sock")

    class UnixServer(socketserver.UnixStreamServer):
        def get_request(self):
            request, _ = super().get_request()
            return request, ("local", 0)

    server = UnixServer(sock, Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert signals.heartbeat(sock, "/healthz") == beat_ms / 1000
        assert signals.healthy(sock, "/healthz")
    finally:
        server.shutdown()
        server.server_close()
    assert signals.heartbeat(sock, "/healthz") is None  # nothing answers there now
    assert not signals.healthy(sock, "/healthz")
