"""One user's rendered Kubernetes pod, run for real under `podman kube play`, with the
project's gate and nginx in front (as Traefik and the gate's forward-auth would be on
a cluster). No control plane runs on these hosts: this proves the image, the volume,
the Secret's environment and the limits under the Kubernetes spec itself.

    play = KubePlay(settings)   # settings with one user; the stack's own directories
    ... play.url(), play.host_port, play.inspect() ...
    play.close()                # kube down, volume, secret, network, nginx, gate: gone

What this host needs and a cluster does not, each said where it is done:
- podman 4.3 publishes a containerPort on the same host port even without hostPort
  (it would take 8080): the played Pod gets hostIP 127.0.0.1 and a free hostPort.
- `hostUsers: false` is podman's --userns=auto, which takes host ids from the
  subordinate ranges of the user "containers": the plan's own id range is added to
  /etc/subuid and /etc/subgid while the pod runs, and the files restored after.
- Host.detect()'s runtime and rlimits (cgroup v1, no CAP_SYS_RESOURCE; FACTS.md) go
  to podman's global --runtime and a containers.conf of this play.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import subprocess
import time
from pathlib import Path

import requests

from csm import kube
from csm import plan as planlib
from csm.runner import files, gate
from csm.runner.host import Host
from csm.runner.stack import Stack

from .stacks import free_port

SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))


def env_file_secret(name: str, path: str) -> dict:
    """The Secret `kubectl create secret generic NAME --from-env-file=PATH` makes."""
    data = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            data[key.strip()] = base64.b64encode(value.encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data}


def played_objects(rendered: dict, host_port: int) -> list[dict]:
    """The user's PVC (not the gate's), their Secrets, and a Pod of their StatefulSet's template (podman
    4.3 cannot read back a Secret it played: _play creates them from files instead)."""
    (sts,) = [o for o in rendered["objects"] if o["kind"] == "StatefulSet"]
    name = sts["metadata"]["name"]
    template = json.loads(json.dumps(sts["spec"]["template"]))
    for port in template["spec"]["containers"][0]["ports"]:
        port.update(hostIP="127.0.0.1", hostPort=host_port)
    # podman 4.3 removes a finished "once" init container racily ("it is running"):
    # "always" keeps it in the pod (podman's own annotation; kube down removes it).
    annotations = {"io.podman.annotations.init.container.type": "always"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **template["metadata"], "annotations": annotations},
        "spec": template["spec"],
    }
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    pvcs = [o for o in rendered["objects"] if o["kind"] == "PersistentVolumeClaim"]
    (pvc,) = [o for o in pvcs if o["metadata"]["name"] in claims]
    secrets = [env_file_secret(s["name"], s["fromEnvFile"]) for s in rendered["secrets"] if "fromEnvFile" in s]
    return [{**pvc, "metadata": {"name": pvc["metadata"]["name"]}}, *secrets, pod]  # no namespace in podman


class KubePlay:
    def __init__(self, settings: dict, base: Path, front: bool = True):
        self.base, self.settings = base, settings
        self.plan = planlib.from_settings(settings)
        (self.user,) = self.plan.users.values()
        settings_file = base / "settings.json"
        settings_file.write_text(json.dumps(settings))
        self.rendered = kube.render(settings_file, namespace="csm-kube-test")
        self.host_port, self.http_port = free_port("127.0.0.1"), free_port()
        self.network = f"{self.plan.namePrefix}-kube"
        self.yaml = base / "play.yaml"
        objects = played_objects(self.rendered, self.host_port)
        files.write_private(self.yaml, kube.yaml_stream([o for o in objects if o["kind"] != "Secret"]), mode=0o600)
        self.host = Host.detect()
        self._subids = {p: p.read_text() for p in SUBID_FILES}
        self.stack: Stack | None = None
        try:
            self._prepare()
            self.play()
            if front:
                self._front()
        except BaseException:
            self.close()
            raise

    # ---- podman -----------------------------------------------------------------------
    def _podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        runtime = list(self.host.run_args[:2]) if self.host.run_args[:1] == ("--runtime",) else []
        ulimits = [self.host.run_args[i + 1] for i, a in enumerate(self.host.run_args) if a == "--ulimit"]
        conf = self.base / "containers.conf"
        conf.write_text(f"[containers]\ndefault_ulimits = {json.dumps(ulimits)}\n")
        env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        proc = subprocess.run(["podman", *runtime, *args], capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def _prepare(self) -> None:
        """What the pod needs that a cluster has: the id ranges, a network, the Secrets."""
        ids = self.user.ids
        for p in SUBID_FILES:
            p.write_text(self._subids[p] + f"containers:{ids.base}:{ids.size}\n")
        self._podman("network", "create", self.network)
        # Each Secret from a file (root's alone, deleted with base), never a command line;
        # podman 4.3 reads a Secret's data as the JSON map of its base64 values.
        for secret in (o for o in played_objects(self.rendered, self.host_port) if o["kind"] == "Secret"):
            path = self.base / f"{secret['metadata']['name']}.json"
            files.write_private(path, json.dumps(secret["data"]), mode=0o600)
            self._podman("secret", "create", secret["metadata"]["name"], str(path))

    def play(self) -> None:
        """The StatefulSet at one replica: its pod played, until code-server answers."""
        self._podman("kube", "play", "--network", self.network, str(self.yaml))
        deadline = time.monotonic() + 240
        while not self._healthy():
            if time.monotonic() > deadline:
                logs = self._podman("logs", self.container, check=False)
                raise AssertionError(
                    f"the played pod did not answer in 240 s: {logs.stdout[-2000:]}{logs.stderr[-2000:]}"
                )
            time.sleep(1)

    @property
    def pod(self) -> str:
        return self.played("Pod")["metadata"]["name"]

    @property
    def container(self) -> str:
        return f"{self.pod}-{self.played('Pod')['spec']['containers'][0]['name']}"

    def played(self, kind: str) -> dict:
        return next(o for o in played_objects(self.rendered, self.host_port) if o["kind"] == kind)

    def down(self) -> None:
        """The StatefulSet at zero replicas: the pod gone, the claim kept."""
        self._podman("kube", "down", str(self.yaml))

    def _healthy(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            url = f"http://127.0.0.1:{self.host_port}{self.user.container.healthPath}"
            return requests.get(url, timeout=2).status_code == 200
        return False

    def inspect(self) -> dict:
        return json.loads(self._podman("inspect", self.container).stdout)[0]

    # ---- the front: the gate and nginx, proxying to the pod ---------------------------------
    def _front(self) -> None:
        """The runner's gate and nginx for this plan, nginx sending the workspace's
        requests to the pod's port where the plan says its Unix socket."""
        plan = copy.deepcopy(self.plan)
        socket = f"http://unix:{self.user.socket}:"
        for loc in plan.users[self.user.name].nginx["locations"].values():
            if loc["proxyPass"] == socket:
                loc["proxyPass"] = f"http://127.0.0.1:{self.host_port}"
        self.stack = Stack(plan, self.base / "state", self.http_port)
        undo: list = []
        with self.stack.lock():
            gate.ensure_accounts(plan)
            for d in plan.directories:
                files.ensure_directory(d)
            gate.write_credentials(self.stack.state_dir, plan)
            self.stack._apply_nginx(undo)
            self.stack._record()
            gate.start(self.stack, undo)

    def url(self) -> str:
        return f"http://{self.plan.domain}:{self.http_port}"

    # ---- nothing left behind ----------------------------------------------------------------
    def leftovers(self) -> list[str]:
        left = []
        if self._podman("pod", "exists", self.pod, check=False).returncode == 0:
            left.append(f"pod {self.pod}")
        for kind, exists in (("PersistentVolumeClaim", "volume"), ("Secret", "secret")):
            for o in played_objects(self.rendered, self.host_port):
                if o["kind"] == kind and self._exists(exists, o["metadata"]["name"]):
                    left.append(f"{exists} {o['metadata']['name']}")
        if self._podman("network", "exists", self.network, check=False).returncode == 0:
            left.append(f"network {self.network}")
        left += [f"{p} changed" for p in SUBID_FILES if p.read_text() != self._subids[p]]
        return left

    def _exists(self, what: str, name: str) -> bool:
        if what == "volume":
            return self._podman("volume", "exists", name, check=False).returncode == 0
        return self._podman("secret", "inspect", name, check=False).returncode == 0

    def close(self) -> None:
        """Everything this play made, gone; each step runs even when one before failed."""
        if self.stack:
            with contextlib.suppress(Exception):
                self.stack.down()
        steps = [["kube", "down", str(self.yaml)], ["pod", "rm", "-f", "--ignore", self.pod]]
        for o in played_objects(self.rendered, self.host_port):
            if o["kind"] == "PersistentVolumeClaim":
                steps.append(["volume", "rm", "-f", o["metadata"]["name"]])
            if o["kind"] == "Secret":
                steps.append(["secret", "rm", o["metadata"]["name"]])
        steps.append(["network", "rm", "-f", self.network])
        for step in steps:
            self._podman(*step, check=False)
        for p, text in self._subids.items():
            if p.read_text() != text:
                p.write_text(text)
