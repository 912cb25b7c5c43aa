"""Idle stop and wake on visit, live on the portable stack (csm/idle/, csm.checks.idle):
an idle user is stopped with their files intact and `csm up` leaves them so, a busy
one is not, a visit wakes a stopped user, starts are limited, and a container that
cannot start is not started again and again. The browser's view is in
tests/browser/test_idle_wake.py."""
from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from csm.checks import idle as checks
from csm.checks.image import subprocess_runner as run
from csm.idle.control import Podman
from csm.idle import markers, service
from csm.idle.service import stop_idle

pytestmark = pytest.mark.live

IDLE_AFTER = 20   # seconds: the shortened idleStopAfter of this stack
USERS = ["idla", "idlb", "idlr", "idlf"]


@pytest.fixture(scope="module")
def stack(live_stack_factory):
    s = live_stack_factory(USERS, extra_settings={"idleStopAfter": IDLE_AFTER})
    yield s
    s.close()


def user(stack, name):
    return stack.plan["users"][name]


def visit(stack, name, source="127.0.0.1"):
    """curl options for a request to name's address through the stack's nginx."""
    return dict(run=run, url=stack.url(name), connect_ip="127.0.0.1", source=source)


def stop_as_idle(stack, name):
    """What the idle checker does once the window has passed, without waiting for it."""
    assert stop_idle(stack.plan, Podman(state_dir=str(stack.state_dir)), name, time.time())


def test_idle_user_is_stopped_with_files_intact_and_up_leaves_them_stopped(stack):
    """idlb runs a busy loop meanwhile: it must not be stopped."""
    busy = subprocess.Popen(["podman", "exec", stack.container("idlb"), "sh", "-c", "while :; do :; done"])
    try:
        run(f"podman exec {stack.container('idla')} sh -c 'echo kept > ~/project/kept.txt'")
        print(checks.stopped_for_being_idle(run, stack.plan, user(stack, "idla"), timeout=IDLE_AFTER * 4))
        assert (stack.workspace("idla") / "kept.txt").read_text() == "kept\n"
        print(checks.keeps_running(run, user(stack, "idlb"), 5))
        # The busy loop is what keeps idlb active: its last activity is the last check.
        interval = stack.plan["idle"]["checkIntervalSeconds"]
        assert time.time() - service.last_activity(stack.plan)["idlb"] <= 2 * interval + 2
        status = {u.name: u for u in stack.stack.status().users}
        assert status["idla"].activity == "stopped-idle" and status["idla"].since and status["idla"].last_activity
        assert status["idlb"].activity == "running" and status["idlb"].health == "healthy"
        # By now idlb has been busy for longer than the window.
        assert stack.stack.up()["idla"] == "stopped-idle"
        assert checks._running(run, user(stack, "idla")) == "false"
        assert "Traceback" not in (stack.state_dir / "logs" / "idle.log").read_text()
    finally:
        busy.kill()
        run(f"podman exec {stack.container('idlb')} pkill -f 'while :' || true")


def test_csm_status_shows_who_is_stopped_for_being_idle(stack):
    stop_as_idle(stack, "idla")   # already stopped, or stopped now
    out = subprocess.run([".venv/bin/csm", "status", "--state-dir", str(stack.state_dir), "--json"],
                         capture_output=True, text=True)
    users = {u["name"]: u for u in json.loads(out.stdout)["users"]}
    assert users["idla"]["activity"] == "stopped-idle" and users["idla"]["since"]
    table = subprocess.run([".venv/bin/csm", "status", "--state-dir", str(stack.state_dir)],
                           capture_output=True, text=True).stdout
    assert any(line.startswith("idla ") and "stopped-idle" in line for line in table.splitlines()), table


def test_a_visit_wakes_a_stopped_user(stack):
    stop_as_idle(stack, "idla")
    print(checks.visit_shows_starting_page(**visit(stack, "idla", "127.0.0.2"), name="idla"))
    print(checks.told_ready(**visit(stack, "idla", "127.0.0.2"), plan=stack.plan))
    seconds = checks.woken(**visit(stack, "idla", "127.0.0.2"))
    print(f"idla answers again after {seconds:.1f} s")
    assert (stack.workspace("idla") / "kept.txt").read_text() == "kept\n"


def test_a_container_stopped_by_the_admin_is_not_woken(stack):
    markers.clear(stack.plan, "idla")   # whatever happened before: running, not stopped-idle
    run(f"podman start {stack.container('idla')}")
    run(f"podman stop {stack.container('idla')}")
    print(checks.wake_refused(**visit(stack, "idla", "127.0.0.3"), page="stopped"))
    time.sleep(2)
    assert checks._running(run, user(stack, "idla")) == "false"
    run(f"podman start {stack.container('idla')}")


def test_waking_one_user_is_limited(stack):
    limit = stack.plan["idle"]["startsPerUser"]["count"]
    for i in range(limit):   # each from another address: only the per-user limit applies
        stop_as_idle(stack, "idlr")
        print(checks.visit_shows_starting_page(**visit(stack, "idlr", f"127.0.1.{i + 1}"), name="idlr"))
        checks.woken(**visit(stack, "idlr", f"127.0.1.{i + 1}"))
    stop_as_idle(stack, "idlr")
    print(checks.wake_refused(**visit(stack, "idlr", "127.0.1.99"), page="rateLimited"))
    status, headers, _ = checks.get(**visit(stack, "idlr", "127.0.1.99"))
    assert status == 429 and int(headers["retry-after"]) > 0
    time.sleep(3)
    assert checks._running(run, user(stack, "idlr")) == "false"


def test_a_container_that_cannot_start_is_not_started_again_and_again(stack):
    name = "idlf"
    stop_as_idle(stack, name)
    # Something else takes the container's port: podman cannot start it.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", user(stack, name)["port"]))
    try:
        checks.visit_shows_starting_page(**visit(stack, name, "127.0.0.4"), name=name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, headers, _ = checks.get(**visit(stack, name, "127.0.0.4"))
            if headers.get("x-csm-wake") == "failed":
                break
            time.sleep(0.5)
        assert headers.get("x-csm-wake") == "failed" and status == 503, (status, headers)
        assert int(headers["retry-after"]) > 60
        log = (stack.state_dir / "logs" / "idle.log").read_text()
        tries = log.count(f"starting {name} (request")
        for _ in range(10):   # more visits, from other addresses too: no new start
            for source in ("127.0.0.4", "127.0.0.5"):
                print(checks.wake_refused(**visit(stack, name, source), page="failed"))
            time.sleep(0.5)
        assert (stack.state_dir / "logs" / "idle.log").read_text().count(f"starting {name} (request") == tries == 1
        assert checks._running(run, user(stack, name)) != "true"
        assert {u.name: u for u in stack.stack.status().users}[name].activity == "stopped-idle (start failed)"
    finally:
        blocker.close()
