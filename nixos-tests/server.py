# Runbook of server.nix: two users behind nginx over HTTPS.
# server.nix defines above this script: PLAN (the server's plan, from the module),
# SERVER_IP, CLIENT_IP, CA_FILE, PASSWORD_FILES (on the client), OUTSIDE_PORT (the
# client's stand-in for the internet), LOCKOUT_ADDRESSES (five more addresses of the
# client's) and IMAGE_DIR (image/contract.json and versions.json, which the image
# contract reads).
import json
import os

from csm.checks import host, idle, image, limits, network, smoke  # type: ignore  # csm ships no type information

os.environ["CSM_IMAGE_DIR"] = IMAGE_DIR

DOMAIN = PLAN["domain"]
# The users whose containers are always on; cy's stops when idle (the last subtest).
USERS = {name: user for name, user in PLAN["users"].items() if user["idle"]["stopAfterSeconds"] is None}
ada, bo = USERS["ada"], USERS["bo"]
cy = PLAN["users"]["cy"]


def container(user):
    return user["container"]["name"]


def unit_of(user):
    return f"podman-{container(user)}.service"


start_all()
server.wait_for_unit("nginx.service")
for user in USERS.values():
    server.wait_for_unit(f"podman-{container(user)}.service")
client.wait_for_unit("multi-user.target")
PLAN_FILE = "/etc/code-server-multi/plan.json"

with subtest("csm status --plan sees nginx, the units and the containers healthy"):
    print(server.succeed(f"csm status --plan {PLAN_FILE}"))

with subtest("the image keeps its contract"):
    podman = image.Podman(server.succeed)
    for name, check in image.contract(require_extension=True):
        print(f"{name}: {check(PLAN['image'], podman)}")

with subtest("each container runs within its limits, as its own host uid, published on loopback only"):
    for user in USERS.values():
        print(limits.memory_limit_matches_plan(server.succeed, user))
        print(host.processes_run_as_mapped_uid(server.succeed, user))
        print(host.ports_bound_to_loopback(server.succeed, user))

with subtest("a password reaches its container only through the root-only env file"):
    for user in USERS.values():
        env_file = user["secrets"]["envFile"]
        assert server.succeed(f"stat -c '%a %U' {env_file}").strip() == "600 root", env_file
        for secret in user["secrets"]["fromFiles"]:
            server.succeed(f"grep -q '^{secret['variable']}=' {env_file}")
            value = server.succeed(f"cat {secret['file']}").strip()
            name = container(user)
            for where, command in {
                "the container's command": f"podman inspect --format '{{{{json .Config.Cmd}}}} {{{{json .Args}}}}' {name}",
                "the host's process list": "(cat /proc/[0-9]*/cmdline 2>/dev/null || true) | tr '\\0' ' '",
                "the systemd unit": f"systemctl cat podman-{name}.service",
                "the container's log": f"podman logs {name} 2>&1",
            }.items():
                assert value not in server.succeed(command), f"{secret['variable']} of {user['name']} is in {where}"

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
        address = user["hostname"]
        answer = client.succeed(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{address}/")
        assert answer == f"301 https://{address}/", f"http://{address}/ answered {answer!r}"
        headers = client.succeed(f"curl -fsS -D - -o /dev/null https://{address}/healthz").lower()
        assert "strict-transport-security: max-age=31536000" in headers, headers

with subtest("only nginx reaches a code-server: no container reaches another or the host's loopback"):
    for user, other in ((ada, bo), (bo, ada)):
        server.wait_for_unit(f"podman-network-{user['network']['name']}.service")
        print(network.neighbour_unreachable(server.succeed, user, other))
        print(network.host_loopback_unreachable(server.succeed, user, [ada["port"], bo["port"]]))
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
    assert report.count("PASS ") == 3, report

with subtest("no container port answers from the network: only nginx does"):
    for user in USERS.values():
        client.fail(f"curl -sS --max-time 5 http://{SERVER_IP}:{user['port']}/healthz")

with subtest("work in the workspace survives kill -9, and systemd brings the container back"):

    def back_under_systemd():
        server.wait_until_succeeds(
            f"podman inspect --format '{{{{.State.Running}}}}' {container(ada)} | grep -qx true", timeout=300)
        server.wait_for_unit(f"podman-{container(ada)}.service")

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

with subtest("csm restore --plan brings a user's files back through the user's unit"):
    notes = f"{PLAN['workspaceBase']}/bo/workspace/restore-check.txt"
    server.succeed(f"echo backed-up > {notes}")
    archive = server.succeed(f"csm backup --plan {PLAN_FILE} --to /root/backups").strip()
    server.succeed(f"echo changed > {notes}")
    server.succeed(f"csm restore --plan {PLAN_FILE} --user bo {archive}")
    assert server.succeed(f"cat {notes}").strip() == "backed-up"
    server.succeed(f"systemctl is-active {unit_of(bo)}")
    print(server.succeed(f"csm status --plan {PLAN_FILE}"))

with subtest("an idle user's container stops, systemd leaves it stopped, and a visit starts it again"):
    print(idle.stopped_for_being_idle(server.succeed, PLAN, cy, timeout=600))
    unit = f"podman-{container(cy)}.service"
    server.sleep(15)  # Restart=always must not bring it back
    assert server.succeed(f"systemctl is-active {unit} || true").strip() == "inactive", f"{unit} came back"
    kept = f"{PLAN['workspaceBase']}/cy/workspace/kept.txt"
    server.succeed(f"echo kept > {kept} && chmod 644 {kept}")
    url = f"https://{cy['hostname']}/"
    print(idle.visit_shows_starting_page(client.succeed, url, "cy", ca_file=CA_FILE))
    print(idle.told_ready(client.succeed, url, PLAN, ca_file=CA_FILE))
    print(f"cy answers again {idle.woken(client.succeed, url, ca_file=CA_FILE):.1f} s after the visit")
    server.wait_for_unit(unit)
    assert server.succeed(f"podman exec {container(cy)} cat /home/coder/project/kept.txt").strip() == "kept"

with subtest("a container the admin stopped is not started by a visit"):
    server.succeed(f"systemctl stop {unit}")
    print(idle.wake_refused(client.succeed, url, "stopped", ca_file=CA_FILE))
    server.sleep(5)
    assert server.succeed(f"systemctl is-active {unit} || true").strip() == "inactive", f"{unit} was started"
