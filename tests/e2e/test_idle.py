"""Idle stop and wake after login, live on the portable stack (csm/idle/, csm/gate/,
csm.checks.idle): an idle user is stopped with their files intact and `csm up` leaves
them so, a busy one is not, a minute of strangers' visits starts nothing, the owner's
login wakes them (as often as needed), and a container that cannot start is not
started again and again. The browser's view is in tests/browser/test_idle_wake.py."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from csm.checks import idle as checks
from csm.checks.commands import subprocess_runner as run
from csm.idle import markers, service
from csm.idle.service import stop_idle
from csm.runner import backends

pytestmark = pytest.mark.live

IDLE_AFTER = 20  # seconds: the shortened idleStopAfter of this stack
USERS = ["idla", "idlb", "idlr", "idlf"]


@pytest.fixture(scope="module")
def stack(live_stack_factory):
    s = live_stack_factory(USERS, extra_settings={"idleStopAfter": IDLE_AFTER})
    yield s
    s.close()


def user(stack, name):
    return stack.plan.users[name]


def visit(stack, name, source="127.0.0.1", logged_in=True):
    """curl options for a request to name's address through the stack's nginx, with
    the owner's session (logged in once per user and address)."""
    connection = dict(connect_ip="127.0.0.1", source=source)
    if logged_in:
        key = (name, source)
        if key not in SESSIONS:
            password_file = stack.base / f"{name}.password"
            password_file.write_text(stack.password(name))
            password_file.chmod(0o600)
            SESSIONS[key] = checks.log_in(run, stack.url(name), str(password_file), **connection)
        connection["cookie"] = SESSIONS[key]
    return dict(run=run, url=stack.url(name), **connection)


SESSIONS: dict[tuple[str, str], str] = {}


def stop_as_idle(stack, name):
    """What the idle checker does once the window has passed, without waiting for it."""
    assert stop_idle(stack.plan, backends.Podman(stack.plan, stack.state_dir), name, time.time())


def test_idle_user_is_stopped_with_files_intact_and_up_leaves_them_stopped(stack):
    """idlb runs a busy loop meanwhile: it must not be stopped."""
    busy = subprocess.Popen(["podman", "exec", stack.container("idlb"), "sh", "-c", "while :; do :; done"])
    try:
        run(f"podman exec {stack.container('idla')} sh -c 'echo kept > ~/project/kept.txt'")
        print(checks.stopped_for_being_idle(run, stack.plan, user(stack, "idla"), timeout=IDLE_AFTER * 4))
        assert (stack.workspace("idla") / "kept.txt").read_text() == "kept\n"
        print(checks.keeps_running(run, user(stack, "idlb"), 5))
        # The busy loop is what keeps idlb active: its last activity is the last check.
        interval = stack.plan.idle.checkIntervalSeconds
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
    stop_as_idle(stack, "idla")  # already stopped, or stopped now
    out = subprocess.run(
        [".venv/bin/csm", "status", "--state-dir", str(stack.state_dir), "--json"], capture_output=True, text=True
    )
    users = {u["name"]: u for u in json.loads(out.stdout)["users"]}
    assert users["idla"]["activity"] == "stopped-idle" and users["idla"]["since"]
    table = subprocess.run(
        [".venv/bin/csm", "status", "--state-dir", str(stack.state_dir)], capture_output=True, text=True
    ).stdout
    assert any(line.startswith("idla ") and "stopped-idle" in line for line in table.splitlines()), table


def test_strangers_start_nothing_and_the_owners_login_wakes_a_stopped_user(stack):
    stop_as_idle(stack, "idla")
    stranger = visit(stack, "idla", "127.0.0.6", logged_in=False)
    print(
        checks.stranger_starts_nothing(
            stranger.pop("run"), run, stranger.pop("url"), user(stack, "idla"), seconds=60, **stranger
        )
    )
    print(checks.visit_shows_starting_page(**visit(stack, "idla", "127.0.0.2"), name="idla"))
    print(checks.told_ready(**visit(stack, "idla", "127.0.0.2"), plan=stack.plan))
    seconds = checks.woken(**visit(stack, "idla", "127.0.0.2"))
    print(f"idla answers again after {seconds:.1f} s")
    assert (stack.workspace("idla") / "kept.txt").read_text() == "kept\n"


def test_a_container_stopped_by_the_admin_is_not_woken(stack):
    markers.clear(stack.plan, "idla")  # whatever happened before: running, not stopped-idle
    run(f"podman start {stack.container('idla')}")
    run(f"podman stop {stack.container('idla')}")
    print(checks.wake_refused(**visit(stack, "idla", "127.0.0.3"), page="stopped"))
    time.sleep(2)
    assert checks._running(run, user(stack, "idla")) == "false"
    run(f"podman start {stack.container('idla')}")


def test_the_owner_wakes_a_user_as_often_as_needed(stack):
    """No start limit stands between the owner and their workspace (strangers cannot
    start anything, so none is needed): five wakes in a row from one address."""
    for _ in range(5):
        stop_as_idle(stack, "idlr")
        print(checks.visit_shows_starting_page(**visit(stack, "idlr", "127.0.1.1"), name="idlr"))
        checks.woken(**visit(stack, "idlr", "127.0.1.1"))


def test_a_container_that_cannot_start_is_not_started_again_and_again(stack):
    name = "idlf"
    stop_as_idle(stack, name)
    # The directory of its socket is gone: podman cannot mount it, the start fails.
    socket_dir = Path(user(stack, name).socket).parent
    moved = socket_dir.with_name("moved-away")
    socket_dir.rename(moved)
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
        tries = log.count(f"starting {name} (its owner")
        for _ in range(10):  # more visits, from other addresses too: no new start
            for source in ("127.0.0.4", "127.0.0.5"):
                print(checks.wake_refused(**visit(stack, name, source), page="failed"))
            time.sleep(0.5)
        assert (stack.state_dir / "logs" / "idle.log").read_text().count(f"starting {name} (its owner") == tries == 1
        assert checks._running(run, user(stack, name)) != "true"
        assert {u.name: u for u in stack.stack.status().users}[name].activity == "stopped-idle (start failed)"
    finally:
        moved.rename(socket_dir)
