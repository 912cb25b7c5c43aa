"""The cluster's front door, live here (csm/testing/kube_gate.py): real Traefik with the
rendered Ingresses and Middlewares, `csm gate serve --kube` as the gate's account
scaling the user's StatefulSet through the API (the Role-enforcing stand-in of
csm/testing/kube_api.py, as no API server runs here), and the user's pod under
`podman kube play`, played and taken down as the gate scales it.

A stranger gets the login page and starts nothing; the owner passes `csm smoke`; an
idle user is scaled to zero with their files kept; the owner's visit wakes them (the
starting page, then code-server); and nothing is left behind."""

from __future__ import annotations

import secrets
import shutil
import time

import pytest
import requests

from csm.checks import idle as checks
from csm.checks.commands import subprocess_runner as run
from csm.testing.kube_gate import KubeGate
from csm.testing.kube_play import smoke_passes
from csm.testing.stacks import fresh_base_dir, require_image, stack_settings, write_password

pytestmark = pytest.mark.live

USER = "kg"  # no other live stack of a session uses it
IDLE_AFTER = 20  # seconds: the shortened idleStopAfter of this front
MARKER = "kept-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def front():
    require_image()
    base = fresh_base_dir("csm-kgate-")
    settings = stack_settings(base, [USER], {"idleStopAfter": IDLE_AFTER, "diskQuota": "2G"}, name_prefix="csm-kgate")
    password = write_password(settings, USER)
    password_file = base / "password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    try:
        made = KubeGate(settings, base)
        made.password, made.password_file = password, str(password_file)
        yield made
        made.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def connection(front, **more) -> dict:
    return dict(run=run, url=front.user_url(), connect_ip="127.0.0.1", **more)


def test_a_stranger_gets_the_login_page_from_traefik(front):
    status, headers, body = checks.get(**connection(front))
    assert status == 401, (status, headers)
    assert 'name="password"' in body  # the gate's own page, handed on by forwardAuth
    # The user the gate is asked about is the host's (the user's headers middleware),
    # never one a stranger names: the gate would answer 404 for an unknown one.
    spoofed = requests.get(
        f"http://127.0.0.1:{front.http_port}/",
        headers={"Host": front.user.hostname, "X-CSM-User": "nobody"},
        timeout=10,
    )
    assert spoofed.status_code == 401


def test_a_name_nobody_is_served_on_is_the_landing_page_whoever_the_request_names(front):
    # The catch-all route reaches the gate naming no user: a header a stranger adds must
    # not turn another name into the user's login page, nor log them in there.
    landing = front.plan.nginx["defaultServer"]["landingHtml"]
    elsewhere = {"Host": f"nobody.{front.plan.domain}", "X-CSM-User": USER}
    base = f"http://127.0.0.1:{front.http_port}"
    for path in ("/", front.plan.gate.paths.login, front.plan.gate.paths.wake):
        answer = requests.get(base + path, headers=elsewhere, timeout=10)
        assert (answer.status_code, answer.text) == (404, landing), path
    form = {"password": front.password, "next": "/"}
    answer = requests.post(base + front.plan.gate.paths.login, data=form, headers=elsewhere, timeout=10)
    assert (answer.status_code, answer.text, answer.cookies.keys()) == (404, landing, [])


def test_smoke_login_and_workbench_through_traefik_and_the_gate(front):
    smoke_passes(front.url(), USER, front.password)


def test_an_idle_user_is_scaled_to_zero_with_their_files_kept(front):
    project = next(v.split(":")[1] for v in front.user.container.volumes if "/workspace:" in v)
    front.play._podman("exec", front.play.container, "sh", "-c", f"echo {MARKER} > {project}/kept.txt")
    front.wait_scaled(0, timeout=IDLE_AFTER * 4 + 60)
    assert ("PATCH", f"/apis/apps/v1/namespaces/{front.api.namespace}/statefulsets/{front.sts}/scale", 200) in (
        front.api.requests
    )
    assert front.play._podman("pod", "exists", front.play.pod, check=False).returncode == 1


def test_a_stranger_starts_nothing_while_stopped(front):
    front.wait_scaled(0, timeout=IDLE_AFTER * 4 + 60)
    for _ in range(10):
        for path in ("/", "/?folder=/", front.plan.gate.paths.wake, front.plan.gate.paths.ready):
            status, headers, _ = checks.get(**{**connection(front), "url": front.user_url() + path})
            assert status == 401, (path, status, headers.get("x-csm-wake"))
        time.sleep(0.5)
    assert front.api.replicas[front.sts] == 0


def test_the_owners_visit_wakes_them_through_traefiks_error_page(front):
    front.wait_scaled(0, timeout=IDLE_AFTER * 4 + 60)
    cookie = checks.log_in(run, front.user_url(), front.password_file, connect_ip="127.0.0.1")
    owner = connection(front, cookie=cookie)
    # Traefik meets no pod (502) and asks the gate's wake page: the gate scales to one.
    status, headers, body = checks.get(**owner)
    assert headers.get("x-csm-wake") == "starting" and "Starting" in body, (status, headers, body[:300])
    assert front.api.replicas[front.sts] == 1
    print(checks.told_ready(**owner, plan=front.plan))
    print(f"{USER} answers again after {checks.woken(**owner):.1f} s")
    project = next(v.split(":")[1] for v in front.user.container.volumes if "/workspace:" in v)
    kept = front.play._podman("exec", front.play.container, "cat", f"{project}/kept.txt").stdout
    assert kept.strip() == MARKER


def test_close_leaves_nothing(front):
    front.close()
    assert front.play.leftovers() == []
    assert front.leftovers() == []
