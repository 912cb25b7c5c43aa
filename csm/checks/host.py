"""Host-side checks of one user's running container: uid map, ports, persistence,
and the tools inside (its resource limits: csm.checks.limits).

Every check takes `run`, a callable that runs one shell command line on the host and
returns its stdout, raising if the command exits non-zero (`machine.succeed` in a
NixOS VM test, `csm.checks.commands.subprocess_runner` on this host), and `user`, the
plan's entry for the user (`plan.users[name]`). Commands expected to fail
report their exit status on stdout instead, so `run` only raises on real trouble.

    for check in (processes_run_as_mapped_uid, no_tcp_port):
        print(check(server.succeed, plan.users["ada"]))

Needs podman, sh, bash, timeout and stat on the host, and python3 and curl in the
image. The destructive one (kill -9) leaves the container healthy again, or fails
saying so.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
from collections.abc import Callable

from csm.checks import CheckFailed
from csm.checks.commands import Runner
from csm.checks.container import PODMAN, container_name, exec_in, running, wait_healthy, workspace
from csm.checks.facts import opencode_extension_id
from csm.plan_types import User
from csm.waiting import wait_until

# ---------------------------------------------------------------- isolation


def processes_run_as_mapped_uid(run: Runner, user: User) -> str:
    """Every process of the container is the user's mapped host uid (uid 1000 inside),
    none is root on the host."""
    out = run(f"{PODMAN} top {shlex.quote(container_name(user))} huser user pid comm")
    rows = [line.split(None, 3) for line in out.strip().splitlines()[1:] if line.strip()]
    want_host, want_inside = str(user.ids.hostUid), str(user.ids.containerUid)
    if not rows:
        raise CheckFailed(f"podman top listed no processes: {out!r}")
    wrong = [r for r in rows if r[0] != want_host or r[1] not in (want_inside, "coder")]
    if wrong:
        raise CheckFailed(f"processes not running as host uid {want_host} (uid {want_inside} inside): {wrong}")
    return f"all {len(rows)} processes run as host uid {want_host} (uid {want_inside} inside), none as root"


# Inside the container: the TCP listeners that code-server's own processes hold (its
# sockets' inodes among the LISTEN entries of /proc/net/tcp*), whatever else runs there.
CODE_SERVER_LISTENERS = """
import os
listen = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A":
            listen.add(f[9])
held = set()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if b"code-server" not in open(f"/proc/{pid}/cmdline", "rb").read():
            continue
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in listen:
                held.add(target)
    except OSError:
        pass
print(len(held))
"""


def no_tcp_port(run: Runner, user: User) -> str:
    """Nothing of the container is published on the host, and code-server listens on
    no TCP port inside it either: its only door is the Unix socket."""
    published = run(f"{PODMAN} port {shlex.quote(container_name(user))}").strip()
    if published:
        raise CheckFailed(f"{container_name(user)} publishes {published!r}; code-server must listen on its socket only")
    held = run(exec_in(user, "python3", "-c", CODE_SERVER_LISTENERS)).strip()
    if held != "0":
        raise CheckFailed(f"inside {container_name(user)} code-server holds {held} TCP listener(s); it must not")
    return f"{container_name(user)} publishes no port and code-server listens on no TCP port: only its socket"


SOCKET_PROBE = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n    s.connect(sys.argv[1]); print('connected')\n"
    "except OSError as e:\n    print(e.strerror)\n"
)


def socket_only_for_root_and_nginx(run: Runner, user: User, account: str = "nobody") -> str:
    """code-server's socket answers root, and refuses an ordinary host account
    (`account`) with "Permission denied" at the directory only root and nginx's group
    traverse."""
    path = user.socket
    health = run(
        f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 --unix-socket {shlex.quote(path)} "
        f"http://localhost{user.container.healthPath}"
    ).strip()
    if health != "200":
        raise CheckFailed(f"root could not reach {user.name}'s code-server on {path} (HTTP {health})")
    answer = run(
        f"runuser -u {shlex.quote(account)} -- python3 -c {shlex.quote(SOCKET_PROBE)} {shlex.quote(path)}"
    ).strip()
    if answer != "Permission denied":
        raise CheckFailed(f"the host account {account} connecting to {path}: {answer!r}, not Permission denied")
    return f"{path} answers root; the host account {account} gets Permission denied"


# ---------------------------------------------------------------- persistence


def workspace_survives_kill(
    run: Runner, user: User, restart: Callable[[], object] | None = None, timeout: float = 180
) -> str:
    """A file written in the workspace survives `kill -9` of the container and a restart,
    and belongs to the user's host uid on the host.

    restart: brings the killed container back; default `podman start`. Under systemd
    (NixOS), which restarts it by itself, pass a callable that waits for that."""
    cname = container_name(user)
    host_dir, inside_dir = workspace(user)
    token = secrets.token_hex(16)
    filename = f".csm-check-{token[:8]}"
    run(exec_in(user, "sh", "-c", f"printf %s {token} > {inside_dir}/{filename}"))
    try:
        run(f"{PODMAN} kill --signal KILL {shlex.quote(cname)}")
        with contextlib.suppress(TimeoutError):  # still running: the start below says what is wrong
            wait_until(lambda: not running(run, user), 30, f"{cname} stopped", interval=0.5)
        if restart is None:
            run(f"{PODMAN} start {shlex.quote(cname)}")
        else:
            restart()
        wait_healthy(run, user, timeout)
        inside = run(exec_in(user, "cat", f"{inside_dir}/{filename}"))
        owner, _, on_host = run(
            f"stat -c %u {shlex.quote(host_dir)}/{filename}; cat {shlex.quote(host_dir)}/{filename}"
        ).partition("\n")
    finally:
        run(f"rm -f {shlex.quote(host_dir)}/{filename}")
    if inside != token or on_host != token:
        raise CheckFailed(
            f"after kill -9 and a restart the file holds {inside!r} inside and {on_host!r} on the host, not {token!r}"
        )
    if owner.strip() != str(user.ids.hostUid):
        raise CheckFailed(
            f"{host_dir}/{filename} belongs to host uid {owner.strip()}, not the user's {user.ids.hostUid}"
        )
    return (
        f"a file written in {inside_dir} survived kill -9 and a restart; on the host it is "
        f"in {host_dir}, owned by uid {user.ids.hostUid}"
    )


# ---------------------------------------------------------------- tools


UPLOAD_SINK = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        left, received = int(self.headers.get("Content-Length", 0)), 0
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            received, left = received + len(chunk), left - len(chunk)
        body = json.dumps({"received": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
server.timeout = float(sys.argv[2])
server.handle_request()  # one upload, or none within the timeout; then it is gone
"""


def start_upload_sink(run: Runner, user: User, port: int, timeout: float = 120) -> None:
    """Starts, in the container, an app on 127.0.0.1:port that takes one POST and
    answers {"received": <bytes>}, then exits (after `timeout` s without one, too).
    For csm.checks.proxy.large_upload_passes_proxy."""
    run(shlex.join([PODMAN, "exec", "-d", container_name(user), "python3", "-c", UPLOAD_SINK, str(port), str(timeout)]))
    listening = f"0100007F:{port:04X} 00000000:0000 0A"  # /proc/net/tcp: 127.0.0.1:port, LISTEN
    run(
        exec_in(
            user,
            "sh",
            "-c",
            f"for i in $(seq 100); do grep -q '{listening}' /proc/net/tcp && exit 0; "
            f"sleep 0.1; done; echo 'the upload sink did not start' >&2; exit 1",
        )
    )


OPENCODE_SERVE = r"""
home=$(mktemp -d); port=$((20000 + $$ % 20000))
HOME=$home opencode --version
HOME=$home opencode serve --port $port > $home/serve.log 2>&1 & pid=$!
n=0  # a request during start-up can go unanswered: each try gets 5 s
until curl -fsS --max-time 5 http://127.0.0.1:$port/global/health; do
  n=$((n+1)); [ $n -ge 60 ] && { echo; tail -5 $home/serve.log; break; }; sleep 1
done
echo; kill $pid; n=0
while kill -0 $pid 2>/dev/null && [ $n -lt 20 ]; do n=$((n+1)); sleep 0.25; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf $home
"""


def opencode_answers(run: Runner, user: User) -> str:
    """Inside the running container, `opencode --version` answers and `opencode serve`
    reports itself healthy (no API key needed). Uses a scratch HOME: the user's stays untouched."""
    out = run(exec_in(user, "sh", "-c", OPENCODE_SERVE)).strip().splitlines()
    version = out[0].strip() if out else ""
    if not version or not version.lstrip("v")[:1].isdigit():
        raise CheckFailed(f"opencode --version printed {out[:1]}")
    try:
        health = json.loads(out[1])
    except (ValueError, IndexError):
        health = {}
    if health.get("healthy") is not True:
        raise CheckFailed(f"opencode serve did not report healthy: {out[1:]}")
    return f"opencode {version} answers; opencode serve reports healthy (version {health.get('version')})"


IMAGE_EXTENSIONS_LABEL = "code-server-multi.extensions"  # "id@version,...", written by both image recipes


def _ids(entries) -> set[str]:
    return {e.strip().split("@")[0].lower() for e in entries if e.strip()}


def image_extensions_listed(run: Runner, user: User, require_opencode: bool = False) -> str:
    """code-server in the running container lists, from the plan's extensions dir,
    every extension its image says it carries, and sst-dev.opencode when
    `require_opencode` (the Nix image always carries it; the portable one only when
    built with its VSIX)."""
    cmd = user.container.cmd
    extensions_dir = cmd[cmd.index("--extensions-dir") + 1]
    out = run(exec_in(user, "code-server", "--extensions-dir", extensions_dir, "--list-extensions", "--show-versions"))
    listed = sorted(line.strip() for line in out.splitlines() if "@" in line)
    # The image this container runs, which need not be what the tag names now.
    image_id = run(f"{PODMAN} inspect --format '{{{{.Image}}}}' {shlex.quote(container_name(user))}").strip()
    label = run(
        f"{PODMAN} image inspect --format '{{{{index .Config.Labels \"{IMAGE_EXTENSIONS_LABEL}\"}}}}' {image_id}"
    ).strip()
    carried = _ids(label.replace("<no value>", "").split(","))
    wanted = carried | ({opencode_extension_id()} if require_opencode else set())
    missing = wanted - _ids(listed)
    if missing:
        raise CheckFailed(
            f"code-server does not list {sorted(missing)} (the image carries {sorted(carried)}"
            f"{', and sst-dev.opencode is required' if require_opencode else ''}); "
            f"it lists {listed or 'nothing'}"
        )
    if not wanted:
        return f"the image carries no extensions (its label is empty) and code-server lists {listed or 'none'}"
    return f"code-server lists {', '.join(listed)} from {extensions_dir}, all the image carries"
