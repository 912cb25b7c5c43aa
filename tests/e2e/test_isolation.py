"""Containers reach nothing of each other's: from inside one user's container (jon),
an app in the other user's (ivy) does not answer by address or by name, and neither
does any port the host binds to loopback; the way out, a stand-in server on the host's
public side of the bridge, and DNS, stays open. On a stack of its own (ivy, jon);
the checks are csm.checks.network's, which nixos-tests/server.py runs too."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from csm.checks import commands, network
from csm.runner import podman
from csm.testing.stacks import free_port

pytestmark = pytest.mark.live
RUN = commands.subprocess_runner


@pytest.fixture(scope="module")
def pair(live_stack_factory):
    stack = live_stack_factory(["ivy", "jon"])
    yield stack
    stack.close()


def user(stack, name):
    return stack.plan.users[name]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def host_server():
    """A server on the host, bound to `address`, on a free port; yields a starter."""
    servers = []

    def start(address: str) -> int:
        port = free_port(address)
        server = http.server.ThreadingHTTPServer((address, port), _Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("who, other", [("jon", "ivy"), ("ivy", "jon")])
def test_an_app_in_a_neighbours_container_is_unreachable_by_address_and_name(pair, who, other):
    print(network.neighbour_unreachable(RUN, user(pair, who), user(pair, other)))


def test_ports_the_host_binds_to_loopback_are_unreachable(pair, host_server):
    print(network.host_loopback_unreachable(RUN, user(pair, "jon"), [host_server("127.0.0.1")]))


def test_the_way_out_stays_open(pair, host_server):
    # A stand-in for the internet: a server on all of the host's addresses, reached
    # through the bridge as any outside address is.
    public = host_server("0.0.0.0")
    jon = user(pair, "jon")
    print(network.outside_reachable(RUN, jon, f"http://{network.gateway(RUN, jon)}:{public}/"))
    resolvable = next((n for n in ("deb.debian.org", "registry.npmjs.org", "pypi.org") if _resolves(n)), None)
    assert resolvable, "this host resolves none of the public names it is known to reach"
    print(network.dns_resolves(RUN, jon, resolvable))


def test_each_user_has_a_network_of_its_own(pair):
    names = {user(pair, u).network.name for u in ("ivy", "jon")}
    ours = set(podman.networks(pair.stack.host, f"{podman.STACK_LABEL}={pair.state_dir}"))
    assert ours == names
    for name in names:
        info = podman.inspect_network(pair.stack.host, name)
        assert info["options"].get("isolate") == "true" and not info.get("dns_enabled"), info


def _resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, 443)
        return True
    except OSError:
        return False
