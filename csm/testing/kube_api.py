"""The part of the Kubernetes API the gate uses, for hosts where no API server runs:
the scale subresource of StatefulSets, listing pods by label, and pod metrics, over
HTTPS with a bearer token, allowed by the rendered Role's rules exactly as RBAC
would (a request the Role does not allow is 403, as on a cluster).

    api = KubeApi(rendered, token, tls_dir)        # rendered: csm.kube.render(...)
    api.on_scale = lambda sts, replicas: ...       # what scaling does (podman kube play)
    api.pod_status = lambda sts: {...} | None      # a running pod's status, None if none
    ... api.url, api.account (token + ca.crt), api.requests ...
    api.close()

scripts/kube-check runs the gate against a real cluster's API.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from csm.runner import local_ca

from .stacks import free_port

SCALE = re.compile(r"/apis/apps/v1/namespaces/([^/]+)/statefulsets/([^/]+)/scale")
PODS = re.compile(r"/api/v1/namespaces/([^/]+)/pods")
METRICS = re.compile(r"/apis/metrics.k8s.io/v1beta1/namespaces/([^/]+)/pods")


class KubeApi:
    def __init__(self, rendered: dict, token: str, directory: Path):
        self.namespace, self.token = rendered["namespace"], token
        (role,) = [o for o in rendered["objects"] if o["kind"] == "Role"]
        self.rules = role["rules"]
        statefulsets = [o for o in rendered["objects"] if o["kind"] == "StatefulSet"]
        # The render names no replicas: Kubernetes creates a StatefulSet with 1.
        self.replicas = {o["metadata"]["name"]: o["spec"].get("replicas", 1) for o in statefulsets}
        self.instance = {o["metadata"]["name"]: o["spec"]["selector"]["matchLabels"] for o in statefulsets}
        self.on_scale: Callable[[str, int], None] = lambda sts, replicas: None
        self.pod_status: Callable[[str], dict | None] = lambda sts: None
        self.metrics: dict[str, str] | None = None  # sts -> CPU quantity; None: no metrics-server
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self._lock = threading.Lock()
        crt, key = local_ca.issue(directory / "tls", "localhost")
        self.account = directory / "serviceaccount"
        self.account.mkdir(mode=0o755, exist_ok=True)
        (self.account / "token").write_text(token)
        (self.account / "ca.crt").write_bytes((directory / "tls" / "ca.crt").read_bytes())
        port = free_port("127.0.0.1")
        self.url = f"https://localhost:{port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", port), type("H", (_Handler,), {"api": self}))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(crt, key)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def allowed(self, group: str, resource: str, name: str | None, verb: str) -> bool:
        return any(
            group in r["apiGroups"]
            and resource in r["resources"]
            and verb in r["verbs"]
            and ("resourceNames" not in r or name in r["resourceNames"])
            for r in self.rules
        )

    def answer(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        if m := SCALE.fullmatch(path):
            ns, sts = m.groups()
            verb = {"GET": "get", "PATCH": "patch", "PUT": "update"}.get(method, "?")
            if ns != self.namespace or not self.allowed("apps", "statefulsets/scale", sts, verb):
                return 403, {"kind": "Status", "reason": "Forbidden"}
            if sts not in self.replicas:
                return 404, {"kind": "Status", "reason": "NotFound"}
            if method == "PATCH":
                replicas = int((body or {})["spec"]["replicas"])
                with self._lock:
                    changed, self.replicas[sts] = self.replicas[sts] != replicas, replicas
                if changed:
                    self.on_scale(sts, replicas)
            return 200, {"kind": "Scale", "spec": {"replicas": self.replicas[sts]}}
        for pattern, group, listing in ((PODS, "", self._pods), (METRICS, "metrics.k8s.io", self._metrics)):
            if (m := pattern.fullmatch(path)) and method == "GET":
                if m.group(1) != self.namespace or not self.allowed(group, "pods", None, "list"):
                    return 403, {"kind": "Status", "reason": "Forbidden"}
                return listing(query.get("labelSelector", ""))
        return 404, {"kind": "Status", "reason": "NotFound"}

    def _selected(self, selector: str) -> list[str]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [sts for sts, labels in self.instance.items() if wanted.items() <= labels.items()]

    def _pods(self, selector: str) -> tuple[int, dict]:
        items = []
        for sts in self._selected(selector):
            status = self.pod_status(sts) if self.replicas[sts] else None
            if status is not None:
                items.append({"metadata": {"name": f"{sts}-0", "labels": self.instance[sts]}, "status": status})
        return 200, {"kind": "PodList", "items": items}

    def _metrics(self, selector: str) -> tuple[int, dict]:
        if self.metrics is None:
            return 404, {"kind": "Status", "reason": "NotFound"}
        items = [
            {"metadata": {"name": f"{sts}-0"}, "containers": [{"name": "code-server", "usage": {"cpu": cpu}}]}
            for sts in self._selected(selector)
            if self.replicas[sts] and (cpu := self.metrics.get(sts)) is not None
        ]
        return 200, {"kind": "PodMetricsList", "items": items}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    api: KubeApi

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if self.headers.get("Authorization") != f"Bearer {self.api.token}":
            status, answer = 401, {"kind": "Status", "reason": "Unauthorized"}
        elif self.command == "PATCH" and self.headers.get("Content-Type") != "application/merge-patch+json":
            status, answer = 415, {"kind": "Status", "reason": "UnsupportedMediaType"}
        else:
            status, answer = self.api.answer(self.command, url.path, query, body)
        self.api.requests.append((self.command, self.path, status))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_PUT = _serve

    def log_message(self, *args) -> None:
        pass


def ready_status() -> dict:
    """What a kubelet reports of a pod whose readiness probe passes."""
    return {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


def waiting_status(reason: str = "ContainerCreating") -> dict:
    return {
        "phase": "Pending",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "code-server", "state": {"waiting": {"reason": reason}}}],
    }
