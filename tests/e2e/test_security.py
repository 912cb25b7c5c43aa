"""What docs/security.md claims about a running container, checked live on the shared
stack (ada, bo): it sees only its own two directories (and its socket's) and its own processes, holds no
capability and cannot gain one; a forged Forwarded header does not get a foreign page
past the origin check (that no neighbour is reachable is test_isolation.py's). Nothing
is changed; the one login uses the right password, from a loopback address of its own
(nginx limits logins per address)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
import websocket

from csm.checks import http, workbench

pytestmark = pytest.mark.live

# Files podman itself bind-mounts into every container, from its own storage.
PODMAN_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"}
PODMAN_STORAGE = ("/run/containers/storage/", "/var/lib/containers/storage/")
KERNEL_TREES = ("/proc", "/sys", "/dev")
SOURCE = "127.0.0.12"
EVIL = "evil.example"


def in_container(name: str, script: str) -> str:
    return subprocess.run(
        ["podman", "exec", name, "sh", "-c", script], check=True, capture_output=True, text=True
    ).stdout


def container(stack, user: str) -> str:
    return stack.plan.users[user].container.name


def bind_mounts(name: str) -> dict[str, tuple[str, str]]:
    """Mount point -> (the directory or file it shows, its root in the source file
    system; the device it lies on, major:minor), for every mount that is not a whole
    file system or a kernel tree."""
    found = {}
    for line in in_container(name, "cat /proc/self/mountinfo").splitlines():
        fields = line.split()
        device, root, point = fields[2], fields[3], fields[4]
        if root != "/" and not point.startswith(KERNEL_TREES):
            found[point] = (root, device)
    return found


def device_of(path: str) -> str:
    st = os.stat(path)
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


@pytest.mark.parametrize("user", ["ada", "bo"])
def test_a_container_mounts_only_its_own_directories_and_socket(live_stack, user):
    mounts = bind_mounts(container(live_stack, user))
    from_podman = {p for p, (root, _) in mounts.items() if root.startswith(PODMAN_STORAGE)}
    assert from_podman <= PODMAN_FILES, from_podman
    ours = {p: shown for p, shown in mounts.items() if p not in from_podman}
    planned = dict(v.split(":")[1::-1] for v in live_stack.plan.users[user].container.volumes)
    socket_dir = live_stack.plan.users[user].container.socket.rsplit("/", 1)[0]
    assert set(ours) == set(planned) == {"/home/coder", "/home/coder/project", socket_dir}, ours
    for point, (root, device) in ours.items():
        # root is relative to the file system holding it (the user's own disk for the
        # home and workspace): the planned host path ends with it, on that device
        assert planned[point].endswith(root), f"{point} shows {root}, the plan says {planned[point]}"
        assert device == device_of(planned[point]), f"{point} lies on {device}, {planned[point]} on another"
    assert device_of(planned["/home/coder"]) != device_of(live_stack.plan.workspaceBase)  # the user's disk


@pytest.mark.parametrize("user", ["ada", "bo"])
def test_a_container_sees_only_its_own_processes_and_holds_no_capability(live_stack, user):
    script = r"""
for p in /proc/[0-9]*; do
  [ -r "$p/status" ] || continue
  caps=$(awk '/^Cap(Inh|Prm|Eff|Bnd|Amb):/ {printf "%s=%s ", $1, $2} /^NoNewPrivs:/ {printf "nnp=%s ", $2}' "$p/status")
  echo "${p#/proc/} $caps$(tr '\0\n' '  ' < "$p/cmdline" | cut -c1-80)"
done"""
    rows = [line for line in in_container(container(live_stack, user), script).splitlines() if line.strip()]
    assert rows, "no process listed"
    pid1 = next(r for r in rows if r.startswith("1 "))
    assert "/usr/bin/tini" in pid1, f"PID 1 in the container is not its own init: {pid1}"
    host_nginx = (live_stack.state_dir / "nginx.pid").read_text().strip()
    assert host_nginx and not any("nginx" in r for r in rows), "the host's nginx is visible inside"
    for row in rows:
        assert "nnp=1" in row, f"a process may gain privileges: {row}"
        for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert f"{field}:=0000000000000000" in row, f"{field} is not empty: {row}"


def forged_websocket_status(target: http.Target, sock: socket.socket, cookie: str) -> int:
    """The status of a WebSocket handshake on sock from Origin http://evil.example,
    carrying the Host of `target` and Forwarded/X-Forwarded-Host headers naming evil.example
    (101 if it upgraded)."""
    try:
        ws = websocket.create_connection(
            f"ws://{target.netloc}{workbench._vscode_path()}",
            socket=sock,
            timeout=30,
            origin=f"http://{EVIL}",
            cookie=f"{http.cookie_name(target)}={cookie}",
            header=[f"Forwarded: host={EVIL};proto=http", f"X-Forwarded-Host: {EVIL}"],
        )
        ws.close()
        return 101
    except websocket.WebSocketBadStatusException as e:
        return e.status_code
    finally:
        sock.close()


def test_a_forged_forwarded_header_does_not_pass_the_origin_check(live_stack):
    ada = http.Target(live_stack.url("ada"), live_stack.password("ada"), source_address=SOURCE)
    cookie = ada.session()
    # Through nginx, which sets X-Forwarded-Host itself and drops Forwarded: refused.
    through_nginx = socket.create_connection(("127.0.0.1", ada.port), timeout=30, source_address=(SOURCE, 0))
    assert forged_websocket_status(ada, through_nginx, cookie) == 403
    # Straight to code-server's socket (only root and nginx can) the same headers pass:
    # the refusal above is nginx's doing, not code-server's.
    direct = socket.socket(socket.AF_UNIX)
    direct.settimeout(30)
    direct.connect(live_stack.plan.users["ada"].socket)
    assert forged_websocket_status(ada, direct, cookie) == 101
