"""Host-side checks of one user's running container: limits, uid map, ports,
persistence, and the tools inside.

Every check takes `run`, a callable that runs one shell command line on the host and
returns its stdout, raising if the command exits non-zero (`machine.succeed` in a
NixOS VM test, `csm.checks.image.subprocess_runner` on this host), and `user`, the
plan's entry for the user (`plan["users"][name]`). Commands expected to fail
report their exit status on stdout instead, so `run` only raises on real trouble.

    for check in (memory_limit_matches_plan, processes_run_as_mapped_uid):
        print(check(server.succeed, plan["users"]["ada"]))

Needs podman, sh, bash, timeout and stat on the host, and python3 and curl in the
image. The destructive ones (memory hog, fork bomb, kill -9) leave the container
healthy again, or fail saying so.
"""
from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Callable

from csm.checks import CheckFailed

Runner = Callable[[str], str]
PODMAN = "podman"


# ---------------------------------------------------------------- helpers


def _name(user: dict) -> str:
    return user["container"]["name"]


def _exec(user: dict, *argv: str) -> str:
    """A command line running argv inside the user's container."""
    return shlex.join([PODMAN, "exec", _name(user), *argv])


def _python(run: Runner, user: dict, script: str, *args: object) -> dict:
    """Runs a Python script inside the container; it prints one JSON object."""
    out = run(_exec(user, "python3", "-c", script, *map(str, args)))
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise CheckFailed(f"the probe inside {_name(user)} printed {out[-400:]!r}") from e


def _healthy(run: Runner, user: dict) -> bool:
    """The plan's health check, run inside the container."""
    probe = _exec(user, *user["container"]["healthCheck"])
    return run(f"{probe} >/dev/null 2>&1 && echo healthy || echo not").strip() == "healthy"


def wait_healthy(run: Runner, user: dict, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy(run, user):
        if time.monotonic() > deadline:
            raise CheckFailed(f"{_name(user)} did not pass its health check within {timeout:.0f} s")
        time.sleep(1)


def _running(run: Runner, user: dict) -> bool:
    state = run(f"{PODMAN} inspect --format '{{{{.State.Running}}}}' {shlex.quote(_name(user))} 2>/dev/null || true")
    return state.strip() == "true"


def _workspace(user: dict) -> tuple[str, str]:
    """(host path, container path) of the folder code-server opens: its last argument."""
    inside = user["container"]["cmd"][-1]
    for volume in user["container"]["volumes"]:
        host, target = volume.split(":")[:2]
        if target == inside:
            return host, inside
    raise CheckFailed(f"no volume of {_name(user)} is mounted at {inside}, the folder code-server opens")


# Inside the container: a cgroup file under v2 or v1 names, whichever this host has.
CGROUP = """
import os
def cgroup(*names):
    for name in names:
        path = os.path.join("/sys/fs/cgroup", name)
        if os.path.exists(path):
            with open(path) as f:
                return f.read().strip()
    raise SystemExit("none of %s under /sys/fs/cgroup" % (names,))
def keyed(text):
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}
"""

# ---------------------------------------------------------------- limits


def memory_limit_matches_plan(run: Runner, user: dict) -> str:
    """The kernel's memory limit for the container is the plan's, with no swap beyond it."""
    seen = _python(run, user, CGROUP + """
import json
print(json.dumps({
    "limit": cgroup("memory.max", "memory/memory.limit_in_bytes"),
    "with_swap": cgroup("memory.swap.max", "memory/memory.memsw.limit_in_bytes") if any(
        os.path.exists("/sys/fs/cgroup/" + n) for n in ("memory.swap.max", "memory/memory.memsw.limit_in_bytes")) else None,
    "v2": os.path.exists("/sys/fs/cgroup/memory.max"),
}))
""")
    want = user["limits"]["memoryBytes"]
    if seen["limit"] != str(want):
        raise CheckFailed(f"the memory limit in force is {seen['limit']}, the plan's is {want}")
    # v2 counts swap separately (0 = none); v1 counts memory+swap together.
    swap_ok = seen["with_swap"] in (None, "0" if seen["v2"] else str(want))
    if not swap_ok:
        raise CheckFailed(f"swap is allowed beyond the memory limit: {seen['with_swap']}")
    return f"memory limit in force: {want} bytes, as planned" + (
        "" if seen["with_swap"] is None else ", no swap beyond it")


HOG = """
import sys
limit, chunk, held = int(sys.argv[1]), 64 << 20, []
while len(held) * chunk < 2 * limit:
    held.append(b"x" * chunk)  # written, so really resident
print("survived holding", len(held) * chunk, "bytes")
"""


def memory_hog_killed_neighbour_healthy(run: Runner, user: dict, neighbour: dict) -> str:
    """A process allocating past the limit is killed (exit 137); the container's
    code-server and the neighbour's container keep answering their health checks."""
    for u in (user, neighbour):
        if not _healthy(run, u):
            raise CheckFailed(f"{_name(u)} was not healthy before the memory hog started")
    limit = user["limits"]["memoryBytes"]
    out = run(_exec(user, "python3", "-c", HOG, str(limit)) + ' 2>&1; echo "exit=$?"')
    status = out.strip().splitlines()[-1]
    if status != "exit=137":
        raise CheckFailed(f"a hog allocating up to twice the {limit}-byte limit was not killed: {out.strip()[-300:]}")
    if not _healthy(run, neighbour):
        raise CheckFailed(f"the neighbour {_name(neighbour)} fails its health check after the hog in {_name(user)}")
    if not _healthy(run, user):
        raise CheckFailed(f"{_name(user)}'s code-server fails its health check after its hog was killed")
    return (f"a hog in {_name(user)} was killed at the {limit}-byte limit (exit 137); "
            f"its code-server and {_name(neighbour)} stay healthy")


FORK_BOMB = CGROUP + """
import errno, json, shutil, signal, sys
bound = int(sys.argv[1]) + 64
sleep = shutil.which("sleep")
events = lambda: keyed(cgroup("pids.events", "pids/pids.events")).get("max", 0)
before, children, refused = events(), [], None
try:
    while len(children) < bound:
        try:
            children.append(os.posix_spawn(sleep, ["sleep", "600"], os.environ))
        except OSError as e:
            refused = errno.errorcode.get(e.errno, str(e.errno))
            break
    after, current = events(), cgroup("pids.current", "pids/pids.current")
finally:
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
print(json.dumps({"max": cgroup("pids.max", "pids/pids.max"), "started": len(children),
                  "refused": refused, "limit_hits": after - before, "current": current}))
"""


def fork_bomb_stopped_by_pids_limit(run: Runner, user: dict) -> str:
    """Starting processes until the kernel refuses stops at the plan's pids limit
    (the cgroup counts the refusal); then they are all killed."""
    want = user["limits"]["pids"]
    seen = _python(run, user, FORK_BOMB, want)
    if seen["max"] != str(want):
        raise CheckFailed(f"the pids limit in force is {seen['max']}, the plan's is {want}")
    if seen["refused"] is None:
        raise CheckFailed(f"{seen['started']} processes started and none was refused (limit {want})")
    if seen["limit_hits"] < 1:
        raise CheckFailed(f"process {seen['started'] + 1} was refused ({seen['refused']}), but not by the pids "
                          f"limit (its counter did not move; an rlimit below {want}?)")
    wait_healthy(run, user, timeout=60)
    return (f"the pids limit {want} refused process {seen['started'] + 1} ({seen['refused']}, "
            f"{seen['current']} tasks in the container); code-server stayed healthy")


CPU_LOAD = CGROUP + """
import json, sys, time
cpus, seconds = float(sys.argv[1]), float(sys.argv[2])
if os.path.exists("/sys/fs/cgroup/cpu.max"):
    quota, period = cgroup("cpu.max").split()
else:
    quota, period = cgroup("cpu/cpu.cfs_quota_us"), cgroup("cpu/cpu.cfs_period_us")
stat = lambda: keyed(cgroup("cpu.stat", "cpu/cpu.stat")).get("nr_throttled", 0)
throttled, start, workers = stat(), time.monotonic(), []
for _ in range(int(cpus) + 2):  # more busy processes than the quota allows
    pid = os.fork()
    if pid == 0:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        os._exit(0)
    workers.append(pid)
used = 0.0
for pid in workers:
    usage = os.wait4(pid, 0)[2]
    used += usage.ru_utime + usage.ru_stime
wall = time.monotonic() - start
print(json.dumps({"quota": quota, "period": period, "workers": len(workers), "used": used,
                  "wall": wall, "throttled": stat() - throttled}))
"""


def cpu_quota_holds(run: Runner, user: dict, seconds: float = 3) -> str:
    """The CPU quota in force is the plan's, and busy processes beyond it together get
    no more CPU time than it allows."""
    cpus = float(user["limits"]["cpus"])
    seen = _python(run, user, CPU_LOAD, cpus, seconds)
    if seen["quota"] == "max" or int(seen["quota"]) < 0:
        raise CheckFailed(f"no CPU quota in force (the plan's is {cpus} CPUs)")
    in_force = int(seen["quota"]) / int(seen["period"])
    if abs(in_force - cpus) > 0.001:
        raise CheckFailed(f"the CPU quota in force is {in_force:g} CPUs, the plan's is {cpus:g}")
    share = seen["used"] / seen["wall"]
    if share > cpus * 1.1:
        raise CheckFailed(f"{seen['workers']} busy processes used {share:.2f} CPUs together, "
                          f"beyond the {cpus:g}-CPU quota")
    return (f"CPU quota {cpus:g} in force; {seen['workers']} busy processes got {share:.2f} CPUs together "
            f"(throttled {seen['throttled']} times)")


# ---------------------------------------------------------------- isolation


def processes_run_as_mapped_uid(run: Runner, user: dict) -> str:
    """Every process of the container is the user's mapped host uid (uid 1000 inside),
    none is root on the host."""
    out = run(f"{PODMAN} top {shlex.quote(_name(user))} huser user pid comm")
    rows = [line.split(None, 3) for line in out.strip().splitlines()[1:] if line.strip()]
    want_host, want_inside = str(user["ids"]["hostUid"]), str(user["ids"]["containerUid"])
    if not rows:
        raise CheckFailed(f"podman top listed no processes: {out!r}")
    wrong = [r for r in rows if r[0] != want_host or r[1] not in (want_inside, "coder")]
    if wrong:
        raise CheckFailed(f"processes not running as host uid {want_host} (uid {want_inside} inside): {wrong}")
    return f"all {len(rows)} processes run as host uid {want_host} (uid {want_inside} inside), none as root"


def ports_bound_to_loopback(run: Runner, user: dict) -> str:
    """The container publishes exactly the plan's ports, on 127.0.0.1 only: the same
    port on another loopback address (127.0.0.2) refuses connections."""
    out = run(f"{PODMAN} port {shlex.quote(_name(user))}")
    published = sorted(line.split("->")[1].strip() for line in out.splitlines() if "->" in line)
    planned = sorted(":".join(p.split(":")[:2]) for p in user["container"]["ports"])
    if published != planned:
        raise CheckFailed(f"published {published}, the plan says {planned}")
    if any(not p.startswith("127.0.0.1:") for p in published):
        raise CheckFailed(f"published beyond loopback: {published}")
    port = user["port"]
    probe = "timeout 5 bash -c 'exec 3<>/dev/tcp/{}/{}' 2>/dev/null && echo open || echo closed"
    answers = {ip: run(probe.format(ip, port)).strip() for ip in ("127.0.0.1", "127.0.0.2")}
    if answers != {"127.0.0.1": "open", "127.0.0.2": "closed"}:
        raise CheckFailed(f"port {port}: {answers}; it must be open on 127.0.0.1 only")
    return f"port {port} is published on 127.0.0.1 only; 127.0.0.2:{port} refuses"


# ---------------------------------------------------------------- persistence


def workspace_survives_kill(run: Runner, user: dict, restart: Callable[[], object] | None = None,
                            timeout: float = 180) -> str:
    """A file written in the workspace survives `kill -9` of the container and a restart,
    and belongs to the user's host uid on the host.

    restart: brings the killed container back; default `podman start`. Under systemd
    (NixOS), which restarts it by itself, pass a callable that waits for that."""
    cname = _name(user)
    host_dir, inside_dir = _workspace(user)
    token = secrets.token_hex(16)
    filename = f".csm-check-{token[:8]}"
    run(_exec(user, "sh", "-c", f"printf %s {token} > {inside_dir}/{filename}"))
    try:
        run(f"{PODMAN} kill --signal KILL {shlex.quote(cname)}")
        deadline = time.monotonic() + 30
        while _running(run, user) and time.monotonic() < deadline:
            time.sleep(0.5)
        if restart is None:
            run(f"{PODMAN} start {shlex.quote(cname)}")
        else:
            restart()
        wait_healthy(run, user, timeout)
        inside = run(_exec(user, "cat", f"{inside_dir}/{filename}"))
        owner, _, on_host = run(f"stat -c %u {shlex.quote(host_dir)}/{filename}; "
                                f"cat {shlex.quote(host_dir)}/{filename}").partition("\n")
    finally:
        run(f"rm -f {shlex.quote(host_dir)}/{filename}")
    if inside != token or on_host != token:
        raise CheckFailed(f"after kill -9 and a restart the file holds {inside!r} inside and "
                          f"{on_host!r} on the host, not {token!r}")
    if owner.strip() != str(user["ids"]["hostUid"]):
        raise CheckFailed(f"{host_dir}/{filename} belongs to host uid {owner.strip()}, "
                          f"not the user's {user['ids']['hostUid']}")
    return (f"a file written in {inside_dir} survived kill -9 and a restart; on the host it is "
            f"in {host_dir}, owned by uid {user['ids']['hostUid']}")


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


def start_upload_sink(run: Runner, user: dict, port: int, timeout: float = 120) -> None:
    """Starts, in the container, an app on 127.0.0.1:port that takes one POST and
    answers {"received": <bytes>}, then exits (after `timeout` s without one, too).
    For csm.checks.proxy.large_upload_passes_proxy."""
    run(shlex.join([PODMAN, "exec", "-d", _name(user), "python3", "-c", UPLOAD_SINK, str(port), str(timeout)]))
    listening = f"0100007F:{port:04X} 00000000:0000 0A"  # /proc/net/tcp: 127.0.0.1:port, LISTEN
    run(_exec(user, "sh", "-c", f"for i in $(seq 100); do grep -q '{listening}' /proc/net/tcp && exit 0; "
                                f"sleep 0.1; done; echo 'the upload sink did not start' >&2; exit 1"))


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


def opencode_answers(run: Runner, user: dict) -> str:
    """Inside the running container, `opencode --version` answers and `opencode serve`
    reports itself healthy (no API key needed). Uses a scratch HOME: the user's stays untouched."""
    out = run(_exec(user, "sh", "-c", OPENCODE_SERVE)).strip().splitlines()
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


EXTENSION_ID = "sst-dev.opencode"
IMAGE_EXTENSIONS_LABEL = "code-server-multi.extensions"  # "id@version,...", written by both image recipes


def _ids(entries) -> set[str]:
    return {e.strip().split("@")[0].lower() for e in entries if e.strip()}


def image_extensions_listed(run: Runner, user: dict, require_opencode: bool = False) -> str:
    """code-server in the running container lists, from the plan's extensions dir,
    every extension its image says it carries, and sst-dev.opencode when
    `require_opencode` (the Nix image always carries it; the portable one only when
    built with its VSIX)."""
    cmd = user["container"]["cmd"]
    extensions_dir = cmd[cmd.index("--extensions-dir") + 1]
    out = run(_exec(user, "code-server", "--extensions-dir", extensions_dir,
                    "--list-extensions", "--show-versions"))
    listed = sorted(line.strip() for line in out.splitlines() if "@" in line)
    # The image this container runs, which need not be what the tag names now.
    image_id = run(f"{PODMAN} inspect --format '{{{{.Image}}}}' {shlex.quote(_name(user))}").strip()
    label = run(f"{PODMAN} image inspect --format "
                f"'{{{{index .Config.Labels \"{IMAGE_EXTENSIONS_LABEL}\"}}}}' {image_id}").strip()
    carried = _ids(label.replace("<no value>", "").split(","))
    wanted = carried | ({EXTENSION_ID} if require_opencode else set())
    missing = wanted - _ids(listed)
    if missing:
        raise CheckFailed(f"code-server does not list {sorted(missing)} (the image carries {sorted(carried)}"
                          f"{', and sst-dev.opencode is required' if require_opencode else ''}); "
                          f"it lists {listed or 'nothing'}")
    if not wanted:
        return f"the image carries no extensions (its label is empty) and code-server lists {listed or 'none'}"
    return f"code-server lists {', '.join(listed)} from {extensions_dir}, all the image carries"
