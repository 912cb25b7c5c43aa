"""The resource limits of one user's running container, checked from the host: the
memory limit (and no swap beyond it), the pids limit, the CPU quota; a process that
passes one is stopped while code-server and the neighbours stay healthy.

Same conventions as csm.checks.host: `run(shell_command) -> stdout` runs on the host
(`machine.succeed` in a NixOS VM test), `user` is the plan's entry for the user.

    print(memory_limit_matches_plan(server.succeed, plan.users["ada"]))
"""

from __future__ import annotations

from csm.checks import CheckFailed
from csm.checks.commands import Runner
from csm.checks.container import container_name, exec_in, healthy, python_in, wait_healthy
from csm.plan_types import User

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


def memory_limit_matches_plan(run: Runner, user: User) -> str:
    """The kernel's memory limit for the container is the plan's, with no swap beyond it."""
    seen = python_in(
        run,
        user,
        CGROUP
        + """
import json
print(json.dumps({
    "limit": cgroup("memory.max", "memory/memory.limit_in_bytes"),
    "with_swap": cgroup("memory.swap.max", "memory/memory.memsw.limit_in_bytes") if any(
        os.path.exists("/sys/fs/cgroup/" + n)
        for n in ("memory.swap.max", "memory/memory.memsw.limit_in_bytes")) else None,
    "v2": os.path.exists("/sys/fs/cgroup/memory.max"),
}))
""",
    )
    want = user.limits.memoryBytes
    if seen["limit"] != str(want):
        raise CheckFailed(f"the memory limit in force is {seen['limit']}, the plan's is {want}")
    # v2 counts swap separately (0 = none); v1 counts memory+swap together.
    swap_ok = seen["with_swap"] in (None, "0" if seen["v2"] else str(want))
    if not swap_ok:
        raise CheckFailed(f"swap is allowed beyond the memory limit: {seen['with_swap']}")
    return f"memory limit in force: {want} bytes, as planned" + (
        "" if seen["with_swap"] is None else ", no swap beyond it"
    )


HOG = """
import sys
limit, chunk, held = int(sys.argv[1]), 64 << 20, []
while len(held) * chunk < 2 * limit:
    held.append(b"x" * chunk)  # written, so really resident
print("survived holding", len(held) * chunk, "bytes")
"""


def memory_hog_killed_neighbour_healthy(run: Runner, user: User, neighbour: User) -> str:
    """A process allocating past the limit is killed (exit 137); the container's
    code-server and the neighbour's container keep answering their health checks."""
    for u in (user, neighbour):
        if not healthy(run, u):
            raise CheckFailed(f"{container_name(u)} was not healthy before the memory hog started")
    limit = user.limits.memoryBytes
    out = run(exec_in(user, "python3", "-c", HOG, str(limit)) + ' 2>&1; echo "exit=$?"')
    status = out.strip().splitlines()[-1]
    if status != "exit=137":
        raise CheckFailed(f"a hog allocating up to twice the {limit}-byte limit was not killed: {out.strip()[-300:]}")
    if not healthy(run, neighbour):
        raise CheckFailed(
            f"the neighbour {container_name(neighbour)} fails its health check after the hog in {container_name(user)}"
        )
    if not healthy(run, user):
        raise CheckFailed(f"{container_name(user)}'s code-server fails its health check after its hog was killed")
    return (
        f"a hog in {container_name(user)} was killed at the {limit}-byte limit (exit 137); "
        f"its code-server and {container_name(neighbour)} stay healthy"
    )


FORK_BOMB = (
    CGROUP
    + """
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
)


def fork_bomb_stopped_by_pids_limit(run: Runner, user: User) -> str:
    """Starting processes until the kernel refuses stops at the plan's pids limit
    (the cgroup counts the refusal); then they are all killed."""
    want = user.limits.pids
    seen = python_in(run, user, FORK_BOMB, want)
    if seen["max"] != str(want):
        raise CheckFailed(f"the pids limit in force is {seen['max']}, the plan's is {want}")
    if seen["refused"] is None:
        raise CheckFailed(f"{seen['started']} processes started and none was refused (limit {want})")
    if seen["limit_hits"] < 1:
        raise CheckFailed(
            f"process {seen['started'] + 1} was refused ({seen['refused']}), but not by the pids "
            f"limit (its counter did not move; an rlimit below {want}?)"
        )
    wait_healthy(run, user, timeout=60)
    return (
        f"the pids limit {want} refused process {seen['started'] + 1} ({seen['refused']}, "
        f"{seen['current']} tasks in the container); code-server stayed healthy"
    )


CPU_LOAD = (
    CGROUP
    + """
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
)


def cpu_quota_holds(run: Runner, user: User, seconds: float = 3) -> str:
    """The CPU quota in force is the plan's, and busy processes beyond it together get
    no more CPU time than it allows."""
    cpus = float(user.limits.cpus)
    seen = python_in(run, user, CPU_LOAD, cpus, seconds)
    if seen["quota"] == "max" or int(seen["quota"]) < 0:
        raise CheckFailed(f"no CPU quota in force (the plan's is {cpus} CPUs)")
    in_force = int(seen["quota"]) / int(seen["period"])
    if abs(in_force - cpus) > 0.001:
        raise CheckFailed(f"the CPU quota in force is {in_force:g} CPUs, the plan's is {cpus:g}")
    share = seen["used"] / seen["wall"]
    if share > cpus * 1.1:
        raise CheckFailed(
            f"{seen['workers']} busy processes used {share:.2f} CPUs together, beyond the {cpus:g}-CPU quota"
        )
    return (
        f"CPU quota {cpus:g} in force; {seen['workers']} busy processes got {share:.2f} CPUs together "
        f"(throttled {seen['throttled']} times)"
    )
