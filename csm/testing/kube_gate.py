"""The cluster's front door, run here for real: Traefik (the ingress controller k3s
ships) with the rendered Ingresses and Middlewares, the gate as `csm gate serve
--kube` under its own account, and one user's pod under `podman kube play`, played
and taken down as the gate scales its StatefulSet (csm/testing/kube_api.py).

    front = KubeGate(settings, base)     # settings with one user, idle stop on
    ... front.user_url(), front.api.replicas, front.play (KubePlay) ...
    front.close()                         # Traefik, the gate, the pod: gone

What this host does where a cluster would, each said where it is done:
- Traefik reads the rendered objects from a file (its file provider), not from the
  API: `traefik_config` maps each Ingress to a router and each Middleware as it is,
  with the Services' addresses on this host.
- Services' addresses: the pod's published port and the gate's port on 127.0.0.1
  take the place of the cluster's DNS names, in kube.json too.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import requests

from csm.runner import files, gate
from csm.runner.stack import Stack
from csm.waiting import wait_until

from .kube_api import KubeApi, ready_status, waiting_status
from .kube_play import KubePlay
from .stacks import free_port

TRAEFIK = str(Path(sys.executable).parent / "traefik")


def traefik_config(rendered: dict, addresses: dict[str, str], entry_point: str) -> dict:
    """Traefik's dynamic configuration of the rendered Ingresses and Middlewares;
    `addresses` maps each Service name to its URL on this host."""
    prefix = rendered["namespace"] + "-"
    objects = rendered["objects"]
    middlewares = {}
    for o in (o for o in objects if o["kind"] == "Middleware"):
        spec = json.loads(json.dumps(o["spec"]))
        if "errors" in spec:  # a Service reference becomes a service of this file
            spec["errors"]["service"] = spec["errors"]["service"]["name"]
        if "forwardAuth" in spec:
            path = urllib.parse.urlsplit(spec["forwardAuth"]["address"]).path
            service = next(s for s in addresses if spec["forwardAuth"]["address"].startswith(f"http://{s}."))
            spec["forwardAuth"]["address"] = addresses[service] + path
        middlewares[o["metadata"]["name"]] = spec
    routers = {}
    for o in (o for o in objects if o["kind"] == "Ingress"):
        annotations = o["metadata"].get("annotations", {})
        chain = annotations.get("traefik.ingress.kubernetes.io/router.middlewares", "")
        for i, rule in enumerate(o["spec"]["rules"]):
            (path,) = rule["http"]["paths"]
            host = rule.get("host")
            match = f"PathPrefix(`{path['path']}`)"
            if host:  # Traefik's kubernetesIngress provider: a "*." host is one more label
                name = re.escape(host.removeprefix("*.")) + "$"
                match = f"HostRegexp(`^[^.]+\\.{name}`)" if host.startswith("*.") else f"Host(`{host}`)"
                match += f" && PathPrefix(`{path['path']}`)"
            router = {
                "rule": match,
                "entryPoints": [entry_point],
                "middlewares": [m.removesuffix("@kubernetescrd").removeprefix(prefix) for m in chain.split(",") if m],
                "service": path["backend"]["service"]["name"],
            }
            if "traefik.ingress.kubernetes.io/router.priority" in annotations:
                router["priority"] = int(annotations["traefik.ingress.kubernetes.io/router.priority"])
            routers[f"{o['metadata']['name']}-{i}"] = router
    # A pod played again keeps its address here (on a cluster it gets a new one, and
    # Traefik a new connection): no connection is kept to be reused across a restart.
    services = {
        name: {"loadBalancer": {"servers": [{"url": url}], "serversTransport": "fresh"}}
        for name, url in addresses.items()
    }
    transports = {"fresh": {"maxIdleConnsPerHost": -1}}
    return {
        "http": {"routers": routers, "middlewares": middlewares, "services": services, "serversTransports": transports}
    }


class KubeGate:
    def __init__(self, settings: dict, base: Path):
        self.base = base
        self.play = KubePlay(settings, base, front=False)
        self.plan, self.user, rendered = self.play.plan, self.play.user, self.play.rendered
        self.api = KubeApi(rendered, secrets.token_urlsafe(24), base)
        self.sts = self.play.played("Pod")["metadata"]["name"]
        self.gate_port, self.http_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        (self.gate_name,) = [o["metadata"]["name"] for o in rendered["objects"] if o["kind"] == "Deployment"]
        self._traefik: subprocess.Popen | None = None
        self.stack = Stack(self.plan, base / "state", self.http_port)
        self._scaling = threading.Lock()
        try:
            self.api.on_scale = self._scale
            self.api.pod_status = self._status
            self._gate(rendered)
            self._start_traefik(rendered)
        except BaseException:
            self.close()
            raise

    # ---- the StatefulSet, as the kubelet would follow it ---------------------------
    def _scale(self, sts: str, replicas: int) -> None:
        # The API answers at once; the pod starts (or stops) meanwhile, as on a cluster.
        def work() -> None:
            with self._scaling:
                (self.play.play if replicas else self.play.down)()

        threading.Thread(target=work, daemon=True).start()

    def _status(self, sts: str) -> dict | None:
        if self._scaling.locked():
            return waiting_status()
        return ready_status() if self.play._healthy() else None

    # ---- the gate: the rendered ConfigMap's kube.json, addresses of this host -------
    def _gate(self, rendered: dict) -> None:
        (config,) = [o for o in rendered["objects"] if o["kind"] == "ConfigMap"]
        facts = json.loads(config["data"]["kube.json"])
        facts["port"] = self.gate_port
        facts["users"][self.user.name]["url"] = f"http://127.0.0.1:{self.play.host_port}"
        facts_file = self.base / "kube.json"
        facts_file.write_text(json.dumps(facts))
        with self.stack.lock():
            gate.ensure_accounts(self.plan)
            for d in self.plan.directories:
                files.ensure_directory(d)
            gate.write_credentials(self.stack.state_dir, self.plan)
            self.stack._record()
            args = ["--credentials", str(gate.credentials_dir(self.stack.state_dir)), "--kube", str(facts_file)]
            args += ["--api", self.api.url, "--service-account", str(self.api.account), "--host", "127.0.0.1"]
            state, account = self.stack.state_dir, self.plan.gate.user
            gate.SERVICE.start(state, self.plan, args, ready=self._gate_answers, user=account)

    def _gate_answers(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            url = f"http://127.0.0.1:{self.gate_port}{self.plan.gate.paths.health}"
            return requests.get(url, timeout=1).status_code == 200
        return False

    # ---- Traefik ----------------------------------------------------------------------
    def _start_traefik(self, rendered: dict) -> None:
        addresses = {
            self.gate_name: f"http://127.0.0.1:{self.gate_port}",
            self.sts: f"http://127.0.0.1:{self.play.host_port}",
        }
        # JSON is YAML: Traefik reads its files by their extension, and takes no .json.
        dynamic, static = self.base / "traefik-dynamic.yaml", self.base / "traefik.yaml"
        dynamic.write_text(json.dumps(traefik_config(rendered, addresses, "web")))
        static.write_text(
            json.dumps(
                {
                    "entryPoints": {"web": {"address": f"127.0.0.1:{self.http_port}"}},
                    "providers": {"file": {"filename": str(dynamic)}},
                    "log": {"level": "ERROR", "noColor": True},
                }
            )
        )
        self.traefik_log = self.base / "traefik.log"
        with open(self.traefik_log, "ab") as out:
            self._traefik = subprocess.Popen(
                [TRAEFIK, f"--configfile={static}"], stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )
        self._routed: object = "nothing"
        try:
            wait_until(self._routes, 30, "Traefik to route the user's host", interval=0.2)
        except TimeoutError as e:
            log = self.traefik_log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{e}; the gate's login page answered {self._routed}; Traefik's log: {log}") from None

    def _routes(self) -> bool:
        login = f"http://127.0.0.1:{self.http_port}{self.plan.gate.paths.login}"
        try:
            answer = requests.get(login, headers={"Host": self.user.hostname}, timeout=2)
        except requests.RequestException as e:
            self._routed = e
            return False
        self._routed = f"{answer.status_code} {answer.text[:200]!r}"
        return answer.status_code == 200

    def url(self) -> str:
        """The deployment's address, as `csm smoke` takes it."""
        return f"http://{self.plan.domain}:{self.http_port}"

    def user_url(self) -> str:
        return f"http://{self.user.hostname}:{self.http_port}"

    def wait_scaled(self, replicas: int, timeout: float) -> None:
        def settled() -> bool:
            return self.api.replicas[self.sts] == replicas and not self._scaling.locked()

        wait_until(settled, timeout, f"{self.sts} at {replicas} replicas", interval=0.5)

    # ---- nothing left behind ------------------------------------------------------------
    def leftovers(self) -> list[str]:
        left = [] if self._traefik is None or self._traefik.poll() is not None else ["traefik"]
        return left + (["gate"] if gate.SERVICE.running(self.stack.state_dir) else [])

    def close(self) -> None:
        if self._traefik:
            self._traefik.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._traefik.wait(10)
            if self._traefik.poll() is None:
                self._traefik.kill()
                self._traefik.wait()
        with contextlib.suppress(Exception):
            gate.stop(self.stack.state_dir)
        with self._scaling:  # a play under way finishes before the pod is taken down
            self.api.close()
            self.play.close()
