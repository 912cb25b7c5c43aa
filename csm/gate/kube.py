"""The gate's root side on Kubernetes: no root at all, the Kubernetes API instead.
A user's StatefulSet is scaled 1 to wake them and 0 when idle, by the gate's
ServiceAccount, whose Role allows exactly that (the KubeSpawner pattern; kube.nix).

It answers the gate's two questions as the host's root side does (control.py):
    start(user) -> {"state": "starting", "retryAfter": 2}
    state(user) -> ready | starting | failed | idle | stopped
and stops idle users with the host's idle decision (csm/idle/decision.py), from
code-server's heartbeat (every request, and every minute while a tab is open) and,
where the cluster has metrics-server, the pod's CPU.

What the gate knows of the cluster is kube.json, rendered beside the plan by kube.nix:
    {"namespace": "...", "port": 8000, "users": {"ada": {"statefulSet": "...",
     "selector": "app.kubernetes.io/instance=ada", "url": "http://<service>:8080"}}}
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from csm.idle.decision import IdleClock, Sample, should_stop
from csm.plan_types import Plan

from .control import ControlError

log = logging.getLogger("csm.gate.kube")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT = 5.0
# A container that waits for one of these will not start by waiting longer.
FAILED = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}


def in_cluster_url(environ=os.environ) -> str:
    """The API server as every pod is told of it."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ControlError("KUBERNETES_SERVICE_HOST is not set: run the gate in the cluster, or give --api URL")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class Api:
    """JSON over HTTPS with the ServiceAccount's token, reread for each request
    (the kubelet rotates it)."""

    def __init__(self, url: str, account: Path = SERVICE_ACCOUNT):
        self.url, self.token = url.rstrip("/"), account / "token"
        self.tls = ssl.create_default_context(cafile=str(account / "ca.crt"))

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(self.url + path, method=method)
        request.add_header("Authorization", f"Bearer {self.token.read_text().strip()}")
        request.add_header("Accept", "application/json")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/merge-patch+json")
        try:
            with urllib.request.urlopen(request, data, timeout=TIMEOUT, context=self.tls) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise ControlError(f"the Kubernetes API refused {method} {path}: {e.code} {e.read(300)!r}") from None
        except (OSError, ValueError) as e:
            raise ControlError(f"the Kubernetes API ({self.url}) did not answer {method} {path}: {e}") from None


class KubeControl:
    def __init__(self, plan: Plan, facts: dict, api: Api):
        self.plan, self.api = plan, api
        self.namespace, self.users = facts["namespace"], facts["users"]
        self.wakeable = set(plan.idle.users)  # the others are the admin's to scale
        self.clock = IdleClock(plan.idle.cpuThreshold, since=time.time())
        self._metrics = True  # until the cluster says it has no metrics-server

    # ---- the gate's two questions --------------------------------------------------
    def ask(self, verb: str, user: str) -> dict:
        if verb == "start" and user in self.wakeable and self.replicas(user) == 0:
            log.info("waking %s", user)
            self.scale(user, 1)
            return {"state": "starting", "retryAfter": 2}
        return self.state(user)

    def state(self, user: str) -> dict:
        if self.replicas(user) == 0:
            return {"state": "idle" if user in self.wakeable else "stopped"}
        pods = self.pods(user)
        if any(_ready(p) for p in pods):
            return {"state": "ready"}
        if any(_failed(p) for p in pods):
            return {"state": "failed", "retryAfter": self.plan.idle.retryFailedAfterSeconds}
        return {"state": "starting", "retryAfter": 2}

    # ---- the API: the scale subresource and the pods, nothing else ----------------------
    def _scale_path(self, user: str) -> str:
        sts = urllib.parse.quote(self.users[user]["statefulSet"])
        return f"/apis/apps/v1/namespaces/{self.namespace}/statefulsets/{sts}/scale"

    def replicas(self, user: str) -> int:
        return int(self.api.call("GET", self._scale_path(user)).get("spec", {}).get("replicas") or 0)

    def scale(self, user: str, replicas: int) -> None:
        self.api.call("PATCH", self._scale_path(user), {"spec": {"replicas": replicas}})

    def pods(self, user: str) -> list[dict]:
        query = urllib.parse.urlencode({"labelSelector": self.users[user]["selector"]})
        return self.api.call("GET", f"/api/v1/namespaces/{self.namespace}/pods?{query}").get("items", [])

    def cpu(self, user: str) -> float | None:
        """Cores the user's pod uses now (metrics-server), None where it is not known."""
        if not self._metrics:
            return None
        query = urllib.parse.urlencode({"labelSelector": self.users[user]["selector"]})
        try:
            found = self.api.call("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.namespace}/pods?{query}")
        except ControlError as e:
            log.warning("no pod metrics (%s): idle users are judged by code-server's heartbeat alone", e)
            self._metrics = False
            return None
        usage = [c.get("usage", {}).get("cpu", "0") for p in found.get("items", []) for c in p.get("containers", [])]
        return sum(_cores(u) for u in usage) if usage else None

    # ---- idle stop -------------------------------------------------------------------------
    def heartbeat(self, user: str) -> float | None:
        url = self.users[user]["url"] + self.plan.users[user].container.healthPath
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
                beat = json.loads(r.read()).get("lastHeartbeat")
        except (OSError, ValueError, AttributeError):
            return None
        return beat / 1000 if beat else None

    def check_idle(self) -> list[str]:
        """One round over the idle users: those idle long enough scaled to 0 (returned)."""
        stopped = []
        for name in sorted(self.wakeable):
            try:
                if self.state(name)["state"] != "ready":
                    self.clock.forget(name)
                    continue
                sample = Sample(at=time.time(), connections=0, heartbeat=self.heartbeat(name), cpu_seconds=None)
                last = self.clock.observe(name, sample, cpu_rate=self.cpu(name))
                if should_stop(last, sample.at, self.plan.users[name].idle.stopAfterSeconds):
                    log.info("stopping %s: idle since %s", name, time.strftime("%H:%M:%S", time.gmtime(last)))
                    self.scale(name, 0)
                    self.clock.forget(name)
                    stopped.append(name)
            except ControlError as e:
                log.error("idle check of %s: %s", name, e)
        return stopped

    def watch_idle(self, done: threading.Event) -> None:
        while not done.wait(self.plan.idle.checkIntervalSeconds):
            self.check_idle()


def load_facts(path: str | Path, plan: Plan) -> dict:
    """kube.json, checked against the plan it was rendered with."""
    try:
        facts = json.loads(Path(path).read_text())
        namespace, port, users = facts["namespace"], int(facts["port"]), facts["users"]
        missing = [n for n in plan.users if {"statefulSet", "selector", "url"} - set(users.get(n, {}))]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not the kube.json `csm kube render` writes ({e}); render it again") from None
    if missing or set(users) != set(plan.users) or not namespace or not 0 < port < 65536:
        raise ValueError(f"{path} does not match the plan's users ({', '.join(sorted(plan.users))}); render both again")
    return facts


def _ready(pod: dict) -> bool:
    return pod.get("metadata", {}).get("deletionTimestamp") is None and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def _failed(pod: dict) -> bool:
    status = pod.get("status", {})
    waiting = [
        (c.get("state") or {}).get("waiting", {}).get("reason")
        for c in status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
    ]
    return status.get("phase") == "Failed" or any(w in FAILED for w in waiting)


def _cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("250m", "12345678n", "1") in cores."""
    for suffix, scale in (("n", 1e-9), ("u", 1e-6), ("m", 1e-3)):
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * scale
    return float(quantity)
