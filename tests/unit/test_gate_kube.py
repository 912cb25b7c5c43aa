"""The gate on a cluster (csm/gate/kube.py): its answers from the Kubernetes API's scale
subresource and pods, the idle stop, and the login wall Traefik's forwardAuth shows.
No API server runs on these hosts: csm/testing/kube_api.py serves the three calls the
gate makes, allowed by the rendered Role as RBAC would. The whole path through real
Traefik, the gate and a played pod is tests/e2e/test_kube_gate.py's."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from csm import kube
from csm import plan as planlib
from csm.gate import kube as gatekube
from csm.gate.control import ControlError
from csm.gate.core import Gate
from csm.gate.server import TCPServer
from csm.idle.decision import IdleClock
from csm.testing.kube_api import KubeApi, ready_status, waiting_status
from csm.testing.stacks import free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("kube")
    settings = {
        "domain": "code.test",
        "runtimeDir": str(base / "run"),
        "workspaceBase": str(base / "ws"),
        "gate": {"stateDir": str(base / "gate")},
        "users": {
            "ada": {"passwordFile": str(base / "ada.pw"), "idleStopAfter": "30m", "diskQuota": "1G"},
            "bo": {"passwordFile": str(base / "bo.pw"), "idleStopAfter": None, "diskQuota": "1G"},
        },
    }
    (base / "ada.pw").write_text("ada's password\n")
    (base / "settings.json").write_text(json.dumps(settings))
    rendered = kube.render(base / "settings.json", namespace="csm-unit")
    (config,) = [o for o in rendered["objects"] if o["kind"] == "ConfigMap"]
    (base / "kube.json").write_text(config["data"]["kube.json"])
    plan = planlib.from_json(json.loads(config["data"]["plan.json"]), "the ConfigMap")
    api = KubeApi(rendered, secrets.token_hex(16), base)
    yield base, plan, rendered, api
    api.close()


@pytest.fixture
def control(cluster):
    base, plan, _, api = cluster
    api.replicas = dict.fromkeys(api.replicas, 1)
    api.on_scale, api.pod_status, api.metrics = (lambda sts, n: None), (lambda sts: ready_status()), None
    facts = gatekube.load_facts(base / "kube.json", plan)
    return gatekube.KubeControl(plan, facts, gatekube.Api(api.url, api.account))


def sts_of(control, user):
    return control.users[user]["statefulSet"]


def test_waking_scales_the_users_statefulset_to_one_and_reports_until_ready(cluster, control):
    _, _, _, api = cluster
    scaled, status = [], {"now": None}
    api.replicas[sts_of(control, "ada")] = 0
    api.on_scale = lambda sts, n: scaled.append((sts, n))
    api.pod_status = lambda sts: status["now"]
    assert control.ask("state", "ada") == {"state": "idle"}
    assert control.ask("start", "ada") == {"state": "starting", "retryAfter": 2}
    assert scaled == [(sts_of(control, "ada"), 1)]
    assert control.ask("start", "ada")["state"] == "starting" and len(scaled) == 1  # asked again: no second scale
    status["now"] = waiting_status()
    assert control.ask("state", "ada")["state"] == "starting"
    status["now"] = waiting_status("CrashLoopBackOff")
    assert control.ask("state", "ada") == {"state": "failed", "retryAfter": control.plan.idle.retryFailedAfterSeconds}
    status["now"] = ready_status()
    assert control.ask("state", "ada") == {"state": "ready"}


def test_a_user_without_idle_stop_is_the_admins_to_scale(cluster, control):
    _, _, _, api = cluster
    api.replicas[sts_of(control, "bo")] = 0
    assert control.ask("start", "bo") == {"state": "stopped"}
    assert api.replicas[sts_of(control, "bo")] == 0


def test_the_role_is_all_the_gate_may_do(cluster, control):
    """A StatefulSet the Role does not name is refused as RBAC would: the gate
    reports why, and scales nothing."""
    _, _, _, api = cluster
    control.users["ada"] = {**control.users["ada"], "statefulSet": "someone-else"}
    with pytest.raises(ControlError, match="403"):
        control.ask("start", "ada")
    assert all(status == 403 for method, path, status in api.requests[-1:])


def test_a_wrong_token_is_refused(cluster, control):
    _, _, _, api = cluster
    (api.account / "token").write_text("not-the-token")
    try:
        with pytest.raises(ControlError, match="401"):
            control.ask("state", "ada")
    finally:
        (api.account / "token").write_text(api.token)


class Heartbeat:
    """code-server's health answer, with the lastHeartbeat given."""

    def __init__(self, beat: float):
        self.beat = beat
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"status": "alive", "lastHeartbeat": int(outer.beat * 1000)}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port("127.0.0.1")), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("cpu", [None, "2m", "900m"])
def test_idle_users_are_scaled_to_zero_unless_their_pod_works(cluster, control, cpu):
    """Idle past idleStopAfter by code-server's heartbeat: scaled to 0, unless the pod's
    CPU (metrics-server) says it works; without metrics the heartbeat decides alone."""
    _, plan, _, api = cluster
    api.metrics = None if cpu is None else {sts_of(control, "ada"): cpu}
    stop_after = plan.users["ada"].idle.stopAfterSeconds
    heart = Heartbeat(time.time() - stop_after - 60)
    try:
        control.users["ada"] = {**control.users["ada"], "url": heart.url}
        control.clock = IdleClock(plan.idle.cpuThreshold, since=time.time() - 2 * stop_after)
        stopped = control.check_idle()
    finally:
        heart.close()
    busy = cpu == "900m"
    assert stopped == ([] if busy else ["ada"])
    assert api.replicas[sts_of(control, "ada")] == (1 if busy else 0)
    assert api.replicas[sts_of(control, "bo")] == 1, "bo has no idle stop"


def test_a_recent_heartbeat_keeps_the_user_running(cluster, control):
    _, plan, _, api = cluster
    heart = Heartbeat(time.time() - 5)
    try:
        control.users["ada"] = {**control.users["ada"], "url": heart.url}
        control.clock = IdleClock(plan.idle.cpuThreshold, since=time.time() - 7200)
        assert control.check_idle() == []
    finally:
        heart.close()
    assert api.replicas[sts_of(control, "ada")] == 1


def test_kube_json_of_another_plan_is_refused(cluster, tmp_path):
    base, plan, _, _ = cluster
    facts = json.loads((base / "kube.json").read_text())
    del facts["users"]["bo"]
    (tmp_path / "kube.json").write_text(json.dumps(facts))
    with pytest.raises(ValueError, match="does not match the plan's users .ada, bo.; render both again"):
        gatekube.load_facts(tmp_path / "kube.json", plan)
    (tmp_path / "kube.json").write_text("{}")
    with pytest.raises(ValueError, match="not the kube.json `csm kube render` writes"):
        gatekube.load_facts(tmp_path / "kube.json", plan)


def test_forward_auth_answers_a_stranger_with_the_login_page(cluster, control):
    """Traefik hands the gate's 401 to the browser: it is the login page, sending them
    back to the address they asked for (X-Forwarded-Uri); after the login, 204."""
    base, plan, _, _ = cluster
    credentials = base / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "ada").write_text("ada's password\n")  # a passwordFile: plain
    (base / "gate").mkdir(exist_ok=True)
    server = TCPServer(free_port("127.0.0.1"), Gate(plan, credentials, control_answer=control.ask), "127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    traefik = {"X-CSM-User": "ada", "X-Forwarded-Proto": "http", "X-Real-Ip": "192.0.2.9"}
    try:
        wall = request(url + plan.gate.paths.auth, {**traefik, "X-Forwarded-Uri": "/project/?folder=/x"})
        assert wall.status == 401 and 'value="/project/?folder=/x"' in wall.body
        login = request(
            url + plan.gate.paths.login,
            {**traefik, "Origin": "http://ada.code.test", "Content-Type": "application/x-www-form-urlencoded"},
            b"password=ada%27s+password&next=%2Fproject%2F",
        )
        assert login.status == 303 and login.headers["X-CSM-Login"] == "ok"
        cookie = login.headers["Set-Cookie"].split(";")[0]
        assert request(url + plan.gate.paths.auth, {**traefik, "Cookie": cookie}).status == 204
        assert request(url + plan.gate.paths.auth, {**traefik, "X-CSM-User": "bo", "Cookie": cookie}).status == 401
        # The catch-all route names no user: any path gets the landing page, with 404.
        for path in ("/", "/healthz", plan.gate.paths.auth, plan.gate.paths.wake):
            landing = request(url + path, {"X-Forwarded-Proto": "http", "Cookie": cookie})
            assert (landing.status, landing.body) == (404, plan.nginx["defaultServer"]["landingHtml"]), path
    finally:
        server.shutdown()
        server.server_close()


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


def request(url, headers, data=None) -> Answer:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data, headers), timeout=10) as r:
            return Answer(r.status, r.headers, r.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read().decode())
