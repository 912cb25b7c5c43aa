"""Network isolation of a user's container, checked from inside it: only nginx
reaches a code-server. Another user's container is unreachable by address and by
name, so is every port the host binds to loopback; the way out (the internet, a
server on the host's public side, DNS) stays open.

Same conventions as csm.checks.host: `run(shell_command) -> stdout` runs on the
host (`machine.succeed` in a NixOS VM test), `user` is the plan's entry. Each check
first proves that what must be unreachable is really there (seen from the host), so
it cannot pass because something is simply down.

    print(neighbour_unreachable(server.succeed, plan.users["bo"], plan.users["ada"]))
"""

from __future__ import annotations

import json
import shlex

from csm.checks import CheckFailed
from csm.checks.commands import Runner
from csm.checks.container import PODMAN, container_name, exec_in
from csm.plan_types import User

# curl's exit codes when nothing answered: cannot resolve, refused, timed out, no route.
UNREACHED = {"6": "cannot resolve", "7": "refused", "28": "timed out", "56": "reset", "52": "no answer"}


def _networks(run: Runner, user: User) -> dict:
    out = run(f"{PODMAN} inspect --format '{{{{json .NetworkSettings.Networks}}}}' {shlex.quote(container_name(user))}")
    networks = json.loads(out)
    if not networks:
        raise CheckFailed(f"{container_name(user)} is on no podman network")
    return networks


def address(run: Runner, user: User) -> str:
    """The container's address on its own network."""
    return next(iter(_networks(run, user).values()))["IPAddress"]


def gateway(run: Runner, user: User) -> str:
    """The host's address on the container's network: the host's side of the bridge."""
    return next(iter(_networks(run, user).values()))["Gateway"]


def _curl_from(run: Runner, user: User, url: str, timeout: int = 5) -> str:
    """curl's exit status for url from inside the user's container ("0": something answered)."""
    probe = exec_in(user, "curl", "-sS", "-o", "/dev/null", "--max-time", str(timeout), url)
    return run(f"{probe} >/dev/null 2>&1; echo $?").strip()


def _curl_from_host(run: Runner, url: str) -> str:
    return run(f"curl -sS -o /dev/null --max-time 5 {shlex.quote(url)} >/dev/null 2>&1; echo $?").strip()


def _unreached(run: Runner, user: User, urls: list[str]) -> dict[str, str]:
    """url -> why it was not reached; raises if any answered."""
    seen = {url: _curl_from(run, user, url) for url in urls}
    reached = [url for url, code in seen.items() if code not in UNREACHED]
    if reached:
        raise CheckFailed(
            f"from inside {container_name(user)}, {', '.join(reached)} answered "
            f"(curl exit {', '.join(seen[u] for u in reached)}); only nginx may reach a code-server"
        )
    return {url: UNREACHED[code] for url, code in seen.items()}


def serve_in(run: Runner, user: User, port: int, seconds: int = 120) -> None:
    """A throwaway web server in the user's container on port (all addresses), as a
    learner's app would run; it exits by itself after `seconds`."""
    run(f"{PODMAN} exec -d {shlex.quote(container_name(user))} timeout {seconds} python3 -m http.server {port}")
    listening = f":{port:04X} 00000000:0000 0A"
    run(
        f"for i in $(seq 50); do {exec_in(user, 'cat', '/proc/net/tcp')} | grep -q '{listening}' && exit 0; "
        "sleep 0.1; done; exit 1"
    )


def neighbour_unreachable(run: Runner, user: User, neighbour: User, port: int = 8731) -> str:
    """From user's container, an app in the neighbour's container (started here on
    `port`) does not answer at the neighbour's address, container name or host name,
    though the host reaches it."""
    serve_in(run, neighbour, port)
    there = address(run, neighbour)
    direct = f"http://{there}:{port}/"
    if _curl_from_host(run, direct) != "0":
        raise CheckFailed(f"the app in {container_name(neighbour)} does not answer the host at {direct}")
    urls = [direct] + [f"http://{name}:{port}/" for name in (container_name(neighbour), neighbour.name)]
    why = _unreached(run, user, urls)
    return f"from {container_name(user)}, an app in {neighbour.name}'s container is unreachable: " + "; ".join(
        f"{url} {reason}" for url, reason in why.items()
    )


def host_loopback_unreachable(run: Runner, user: User, ports: list[int]) -> str:
    """From user's container, ports the host binds to 127.0.0.1 (the containers'
    published ports, say) do not answer, at the host's side of the bridge or at
    127.0.0.1, though they answer on the host."""
    closed = [p for p in ports if _curl_from_host(run, f"http://127.0.0.1:{p}/") in UNREACHED]
    if closed:
        raise CheckFailed(f"nothing answers on the host at 127.0.0.1:{closed}; give ports something listens on")
    host_side = gateway(run, user)
    urls = [f"http://{ip}:{p}/" for p in ports for ip in (host_side, "127.0.0.1")]
    why = _unreached(run, user, urls)
    return f"from {container_name(user)}, the host's loopback ports {ports} are unreachable: " + "; ".join(
        f"{url} {reason}" for url, reason in why.items()
    )


def outside_reachable(run: Runner, user: User, url: str) -> str:
    """From user's container, a server outside (the internet, or a stand-in on the
    host's public side) answers: the way out is open."""
    code = _curl_from(run, user, url, timeout=10)
    if code != "0":
        raise CheckFailed(
            f"from inside {container_name(user)}, {url} did not answer (curl exit {code}); "
            "containers must reach package registries and AI providers"
        )
    return f"from {container_name(user)}, {url} answers"


def dns_resolves(run: Runner, user: User, name: str) -> str:
    """From user's container, a public name resolves."""
    script = "import socket, sys; print(socket.getaddrinfo(sys.argv[1], 443)[0][4][0])"
    out = run(exec_in(user, "python3", "-c", script, name) + ' 2>&1; echo " exit=$?"').strip()
    if not out.endswith("exit=0"):
        raise CheckFailed(f"from inside {container_name(user)}, {name} does not resolve: {out[-300:]}")
    return f"from {container_name(user)}, {name} resolves to {out.split()[0]}"
