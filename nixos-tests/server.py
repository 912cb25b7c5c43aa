# Runbook of server.nix: two users behind nginx over HTTPS.
# server.nix defines above this script: PLAN (the server's plan, from the module),
# PLAN_FILE (where the module writes it for csm, its planFile option), SERVER_IP,
# CLIENT_IP, CA_FILE, PASSWORD_FILES (on the client), OUTSIDE_PORT (the
# client's stand-in for the internet), LOCKOUT_ADDRESSES (five more addresses of the
# client's), SERVER_IP6, CLIENT_IP6, LOCKOUT_ADDRESSES_6 (addresses of one /64 of the
# client's) and SOURCE_DIR (the csm package's copy of the sources it reads, as its
# wrapper's CSM_SOURCE_DIR).
import json
import os

from csm.checks import host, idle, image, limits, network, smoke  # type: ignore  # csm ships no type information
from csm.plan import from_json  # type: ignore

os.environ["CSM_SOURCE_DIR"] = SOURCE_DIR
PLAN = from_json(PLAN, "the server's plan")  # typed, as csm reads it: a plan csm refuses stops here

DOMAIN = PLAN.domain
# The users whose containers are always on; cy's stops when idle (the last subtest).
USERS = {name: user for name, user in PLAN.users.items() if user.idle.stopAfterSeconds is None}
ada, bo = USERS["ada"], USERS["bo"]
cy = PLAN.users["cy"]


def container(user):
    return user.container.name


def unit_of(user):
    return user.container.unit


start_all()
server.wait_for_unit("nginx.service")
server.wait_for_unit(PLAN.gate.unit)
for user in USERS.values():
    server.wait_for_unit(unit_of(user))
client.wait_for_unit("multi-user.target")

with subtest("csm status --plan sees nginx, the units and the containers healthy"):
    print(server.succeed(f"csm status --plan {PLAN_FILE}"))

with subtest("the image keeps its contract"):
    podman = image.Podman(server.succeed)
    for name, check in image.contract(require_extension=True):
        print(f"{name}: {check(PLAN.image, podman)}")

with subtest("each container runs within its limits, as its own host uid, on a socket only root and nginx reach"):
    for user in USERS.values():
        print(limits.memory_limit_matches_plan(server.succeed, user))
        print(host.processes_run_as_mapped_uid(server.succeed, user))
        print(host.no_tcp_port(server.succeed, user))
        print(host.socket_only_for_root_and_nginx(server.succeed, user, account="nobody"))
        probe = f"runuser -u nginx -- python3 -c {json.dumps(host.SOCKET_PROBE)} {user.socket}"
        assert server.succeed(probe).strip() == "connected", "nginx cannot reach the socket"
    assert "code-server" not in server.succeed("ss -Hltnp"), "something of code-server listens on TCP"

with subtest("the password reaches only the gate, which runs as its own account"):
    gate = PLAN.gate
    assert server.succeed(f"systemctl show -p User --value {gate.unit}").strip() == gate.user
    for user in USERS.values():
        value = server.succeed(f"cat {user.password.file}").strip()
        name = container(user)
        for where, command in {
            "the container's environment": f"podman inspect --format '{{{{json .Config.Env}}}}' {name}",
            "the container's command": f"podman inspect --format '{{{{json .Config.Cmd}}}} {{{{json .Args}}}}' {name}",
            "the host's process list": "(cat /proc/[0-9]*/cmdline 2>/dev/null || true) | tr '\\0' ' '",
            "the systemd units": f"systemctl cat {unit_of(user)} {gate.unit}",
            "the container's log": f"podman logs {name} 2>&1",
            "the gate's log": f"journalctl -u {gate.unit}",
        }.items():
            assert value not in server.succeed(command), f"the password of {user.name} is in {where}"

with subtest("opencode and its VS Code extension work in each container"):
    for user in USERS.values():
        print(host.opencode_answers(server.succeed, user))
        print(host.image_extensions_listed(server.succeed, user, require_opencode=True))

with subtest("from the client, through nginx over HTTPS, each workspace passes the deployment checks"):
    for name, other in (("ada", "bo"), ("bo", "ada")):
        report = client.succeed(
            f"csm smoke https://{DOMAIN} --user {name} --other-user {other} --connect {SERVER_IP}"
            f" --ca-file {CA_FILE} --password-file {PASSWORD_FILES[name]}")
        print(report)
        passed = {line.split()[1].rstrip(":") for line in report.splitlines() if line.startswith("PASS ")}
        expected = {check for check, _ in smoke.deployment_checks(other_user=other)}
        assert passed == expected, f"{name}: passed {sorted(passed)}, expected {sorted(expected)}"

with subtest("plain HTTP sends people to HTTPS, and HTTPS asks browsers to stay"):
    for user in USERS.values():
        address = user.hostname
        answer = client.succeed(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{address}/")
        assert answer == f"301 https://{address}/", f"http://{address}/ answered {answer!r}"
        headers = client.succeed(f"curl -sS -D - -o /dev/null https://{address}/healthz").lower()
        assert "strict-transport-security: max-age=31536000" in headers, headers

with subtest("no container reaches another or the host's loopback"):
    LOOPBACK_PORT = 8099
    server.succeed(f"python3 -m http.server --bind 127.0.0.1 {LOOPBACK_PORT} >/dev/null 2>&1 &")
    server.wait_for_open_port(LOOPBACK_PORT)
    for user, other in ((ada, bo), (bo, ada)):
        server.wait_for_unit(user.network.unit)
        print(network.neighbour_unreachable(server.succeed, user, other))
        print(network.host_loopback_unreachable(server.succeed, user, [LOOPBACK_PORT]))
    # The way out stays open: a server on another machine (the client) answers.
    client.succeed(f"python3 -m http.server {OUTSIDE_PORT} >/dev/null 2>&1 &")
    client.wait_for_open_port(OUTSIDE_PORT)
    print(network.outside_reachable(server.succeed, bo, f"http://{CLIENT_IP}:{OUTSIDE_PORT}/"))

with subtest("guesses from three addresses never keep the owner out, and a class behind one address gets in"):
    for address in LOCKOUT_ADDRESSES:
        client.succeed(f"ip addr add {address}/24 dev eth1")
    report = client.succeed(
        f"csm smoke https://{DOMAIN} --user ada --connect {SERVER_IP} --ca-file {CA_FILE}"
        f" --password-file {PASSWORD_FILES['ada']} --lockout {','.join(LOCKOUT_ADDRESSES)}")
    print(report)
    assert report.count("PASS ") == 6, report

with subtest("addresses of one IPv6 /64 share one wrong-password allowance"):
    for address in LOCKOUT_ADDRESSES_6:
        client.succeed(f"ip -6 addr add {address}/64 dev eth1 nodad")
    report = client.succeed(
        f"csm smoke https://{DOMAIN} --user bo --connect {SERVER_IP6} --ca-file {CA_FILE}"
        f" --password-file {PASSWORD_FILES['bo']} --shared-prefix {','.join(LOCKOUT_ADDRESSES_6)}")
    print(report)
    assert report.count("PASS ") == 1, report

with subtest("work in the workspace survives kill -9, and systemd brings the container back"):

    def back_under_systemd():
        server.wait_until_succeeds(
            f"podman inspect --format '{{{{.State.Running}}}}' {container(ada)} | grep -qx true", timeout=300)
        server.wait_for_unit(unit_of(ada))

    print(host.workspace_survives_kill(server.succeed, ada, restart=back_under_systemd, timeout=300))
    status = json.loads(server.succeed(f"csm status --plan {PLAN_FILE} --json || true"))
    restarts = {u["name"]: u["restarts"] for u in status["users"]}
    assert restarts["ada"] >= 1, f"csm status does not count systemd's restart of ada: {restarts}"

with subtest("a memory hog is killed at the limit, and the neighbour keeps working"):
    print(limits.memory_hog_killed_neighbour_healthy(server.succeed, ada, bo))

with subtest("a fork bomb stops at the pids limit"):
    print(limits.fork_bomb_stopped_by_pids_limit(server.succeed, bo))

with subtest("busy processes get no more CPU than the quota"):
    print(limits.cpu_quota_holds(server.succeed, bo))

with subtest("a user who fills their disk stops only themselves, and csm status shows it"):
    out = server.fail(f"podman exec {container(ada)} sh -c 'head -c 2G /dev/zero > ~/project/big' 2>&1")
    assert "No space left on device" in out, out
    image_bytes = int(server.succeed(f"du -B1 {ada.disk.image} | cut -f1"))
    assert image_bytes <= ada.disk.quotaBytes, f"ada's disk file holds {image_bytes} bytes"
    status = {u["name"]: u for u in json.loads(server.succeed(f"csm status --plan {PLAN_FILE} --json || true"))["users"]}
    assert status["ada"]["disk_percent"] == 100, status["ada"]
    server.succeed(f"podman exec {container(bo)} sh -c 'head -c 50M /dev/zero > ~/project/fine'")
    server.succeed(f"podman healthcheck run {container(ada)}")
    server.succeed(f"podman exec {container(ada)} sh -c 'rm ~/project/big && head -c 10M /dev/zero > ~/project/again'")

with subtest("csm restore --plan brings a user's files back through the user's unit"):
    notes = f"{PLAN.workspaceBase}/bo/workspace/restore-check.txt"
    server.succeed(f"echo backed-up > {notes}")
    archive = server.succeed(f"csm backup --plan {PLAN_FILE} --to /root/backups").strip()
    server.succeed(f"echo changed > {notes}")
    server.succeed(f"csm restore --plan {PLAN_FILE} --user bo {archive}")
    assert server.succeed(f"cat {notes}").strip() == "backed-up"
    server.succeed(f"systemctl is-active {unit_of(bo)}")
    print(server.succeed(f"csm status --plan {PLAN_FILE}"))

with subtest("an idle user's container stops, strangers start nothing, and the owner's login starts it again"):
    url = f"https://{cy.hostname}/"
    cookie = idle.log_in(client.succeed, url, PASSWORD_FILES["cy"], ca_file=CA_FILE)
    print(idle.stopped_for_being_idle(server.succeed, PLAN, cy, timeout=600))
    unit = unit_of(cy)
    server.sleep(15)  # Restart=always must not bring it back
    assert server.succeed(f"systemctl is-active {unit} || true").strip() == "inactive", f"{unit} came back"
    print(idle.stranger_starts_nothing(client.succeed, server.succeed, url, cy, 60, ca_file=CA_FILE))
    kept = f"{PLAN.workspaceBase}/cy/workspace/kept.txt"
    server.succeed(f"echo kept > {kept} && chmod 644 {kept}")
    print(idle.visit_shows_starting_page(client.succeed, url, "cy", ca_file=CA_FILE, cookie=cookie))
    print(idle.told_ready(client.succeed, url, PLAN, ca_file=CA_FILE, cookie=cookie))
    print(f"cy answers again {idle.woken(client.succeed, url, ca_file=CA_FILE, cookie=cookie):.1f} s after the visit")
    server.wait_for_unit(unit)
    assert server.succeed(f"podman exec {container(cy)} cat /home/coder/project/kept.txt").strip() == "kept"

with subtest("a container the admin stopped is not started by a visit"):
    server.succeed(f"systemctl stop {unit}")
    print(idle.wake_refused(client.succeed, url, "stopped", ca_file=CA_FILE, cookie=cookie))
    server.sleep(5)
    assert server.succeed(f"systemctl is-active {unit} || true").strip() == "inactive", f"{unit} was started"
