"""Policy over the rendered Kubernetes objects, for generated settings (hypothesis):
every user has limits, a PVC of the quota's size, a NetworkPolicy beside the
namespace's default deny, a host that matches, the plan's ports/paths/uids/image,
the hardening a restricted namespace demands on every pod template (the gate's and the
backup CronJobs' too); backups, when on, a CronJob per user reading the user's claim
read-only with no network; no secret's content anywhere; every core object valid under
Kubernetes 1.33 --strict."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_kube_schema import core_problems

from csm import kube
from csm import plan as planlib
from csm.plan_types import Plan, User

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = json.loads((ROOT / "image/contract.json").read_text())
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
MARKER = "s3cr3t-" + secrets.token_hex(8)  # in every secret file; never in the output

# Short names, and long ones (up to 63) whose object names must be shortened.
names = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9][a-z0-9-]{40,61}[a-z0-9]", fullmatch=True),
).filter(lambda s: s not in {"www", "mail", "admin", "api", "static", "ns", "mx", "ftp"})


@st.composite
def user_settings(draw, name):
    hard = draw(st.integers(512, 8192))
    u = {
        draw(st.sampled_from(["hashedPasswordFile", "passwordFile"])): f"@/{name}.pw",
        "memoryLimit": f"{hard}m",
        "memorySoftLimit": f"{draw(st.integers(256, hard))}m",
        "cpuLimit": draw(st.sampled_from(["0.05", "0.5", "1", "1.5", "4"])),
        "diskQuota": draw(st.sampled_from(["default", "1G", "5g", "20G", "100g"])),
        "idleStopAfter": draw(st.sampled_from(["default", None, "30m"])),
    }
    if draw(st.booleans()):
        u["environmentFiles"] = [f"@/{name}-keys.env"]
    return u


@st.composite
def team_settings(draw):
    users = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    s = {"domain": "class.example.org", "users": {n: draw(user_settings(n)) for n in users}}
    s["namePrefix"] = draw(st.sampled_from(["code-server", "c", "a-long-prefix-for-this-school-class-7b"]))
    tls = draw(st.sampled_from(["acme", "files", "none"]))
    if tls == "acme":
        s["acme"] = {"enable": True, "dnsProvider": "cloudflare", "credentialsFile": "@/dns.env"}
    elif tls == "files":
        s["tls"] = {"certificateFile": "@/cert.pem", "keyFile": "@/key.pem"}
    s["backup"] = {
        "enable": draw(st.booleans()),
        "schedule": draw(st.sampled_from(SCHEDULES)),
        "keep": draw(st.integers(1, 30)),
    }
    return s


# backup.schedule forms kube-schedule.nix translates (tests/unit/test_kube_backup.py: exactly how).
SCHEDULES = ["daily", "weekly", "*-*-* 03:00:00", "Mon..Fri 02:30", "*-*-* 01:15 Europe/Berlin"]


def with_secret_files(settings: dict, directory: Path) -> dict:
    """Settings whose files ("@/x") exist under `directory`, each holding MARKER."""
    text = json.dumps(settings)
    for f in set(re.findall(r'"@/([^"]+)"', text)):
        (directory / f).write_text(f"KEY={MARKER}\n")
    return json.loads(text.replace('"@/', f'"{directory}/'))


def assert_user_policy(objects: dict, u: User, plan: Plan, name: str) -> None:
    sts = objects["StatefulSet", name]
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    # The gate scales it; a re-apply that named replicas would wake (or conflict with) it.
    assert "replicas" not in sts["spec"], "the render must leave the replicas to the gate"
    assert sts["spec"]["selector"]["matchLabels"] == labels
    assert c["resources"]["limits"] == {"memory": str(u.limits.memoryBytes), "cpu": u.limits.cpus}
    assert c["resources"]["requests"]["memory"] == str(u.limits.memorySoftBytes)
    assert c["image"] == plan.image and c["ports"][0]["containerPort"] == CONTRACT["port"]
    assert c["livenessProbe"]["httpGet"]["path"] == u.container.healthPath
    assert (
        pod["securityContext"]["runAsUser"] == CONTRACT["uid"]
        and pod["securityContext"]["runAsGroup"] == CONTRACT["gid"]
    )
    assert (
        pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    assert pod["hostUsers"] is False and pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["subPath"] for m in c["volumeMounts"]}
    assert mounts == {CONTRACT["home"]: "config", CONTRACT["project"]: "workspace"}
    assert [a for a in c["args"] if a.startswith("--socket")] == [] and c["args"][-1] == f"0.0.0.0:{CONTRACT['port']}"
    pvc = objects["PersistentVolumeClaim", name]
    assert pvc["spec"]["resources"]["requests"]["storage"] == str(u.disk.quotaBytes)
    assert pod["volumes"] == [{"name": "home", "persistentVolumeClaim": {"claimName": name}}]
    policy = objects["NetworkPolicy", name]["spec"]
    assert policy["podSelector"]["matchLabels"] == labels and policy["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for p in policy["ingress"][0]["ports"]] == ["http"]
    assert objects["Service", name]["spec"]["selector"] == labels
    for ingress in (objects["Ingress", name], objects["Ingress", name + "-gate"]):
        assert [r["host"] for r in ingress["spec"]["rules"]] == [u.hostname]
        assert all(t["hosts"] == [u.hostname] for t in ingress["spec"].get("tls", []))
    assert objects["Middleware", name]["spec"]["headers"]["customRequestHeaders"] == {plan.gate.userHeader: u.name}


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(team_settings())
def test_generated_settings_render_objects_meeting_the_policy(tmp_path_factory, settings):
    directory = tmp_path_factory.mktemp("secrets")
    settings = with_secret_files(settings, directory)
    path = directory / "settings.json"
    path.write_text(json.dumps(settings))
    try:
        plan = planlib.from_settings(settings)
    except planlib.PlanError as e:
        assert "both get host id range" in str(e)  # two generated names on one uid range
        return
    try:
        rendered = kube.render(path)
    except planlib.PlanError as e:  # a generated "x" and "x-gate" (test_kube.py shows each case)
        assert "on Kubernetes this name gives" in str(e)
        return
    out = kube.yaml_stream(rendered["objects"])
    assert MARKER not in out and MARKER not in json.dumps(rendered)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered["objects"]}
    assert len(objects) == len(rendered["objects"]), "two objects of one kind share a name"
    assert objects["NetworkPolicy", "default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for kind, name in objects:
        assert kind == "Certificate" or DNS_1035.fullmatch(name), f"{kind} {name} is no DNS-1035 label"
    sts_names = sorted(n for k, n in objects if k == "StatefulSet")
    assert len(sts_names) == len(plan.users)
    for u in plan.users.values():
        (sts,) = [n for n in sts_names if objects["StatefulSet", n]["spec"]["template"]["spec"]["hostname"] == u.name]
        assert_user_policy(objects, u, plan, sts)
    # The front door may scale these StatefulSets and read pods and their metrics, nothing else.
    (role,) = [o for (k, _), o in objects.items() if k == "Role"]
    scale, pods, metrics = role["rules"]
    assert sorted(scale.pop("resourceNames")) == sts_names
    assert scale == {"apiGroups": ["apps"], "resources": ["statefulsets/scale"], "verbs": ["get", "patch"]}
    assert pods == {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    assert metrics == {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]}
    assert_gate_policy(objects, plan, sts_names)
    assert_backup_policy(objects, plan)
    for kind, name, pod, _ in pod_templates(rendered["objects"]):
        assert_restricted_pod(pod, f"{kind} {name}")
        assert_images_not_pulled(pod, f"{kind} {name}")
    assert core_problems(rendered["objects"]) == []


def pod_templates(objects: list[dict]) -> list[tuple[str, str, dict, dict]]:
    """(kind, name, pod spec, pod labels) of every object that makes pods."""
    found = []
    for o in objects:
        kind, name = o["kind"], o["metadata"]["name"]
        if kind in ("StatefulSet", "Deployment", "Job"):
            template = o["spec"]["template"]
        elif kind == "CronJob":
            template = o["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            template = o
        else:
            continue
        found.append((kind, name, template["spec"], template["metadata"].get("labels", {})))
    return found


def assert_restricted_pod(pod: dict, where: str) -> None:
    """What Pod Security `restricted` demands of a pod, and limits on every container."""
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc.get("runAsUser") != 0, f"{where} may run as root"
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, f"{where} has no RuntimeDefault seccomp"
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod), f"{where} shares a host namespace"
    assert all("hostPath" not in v for v in pod.get("volumes", [])), f"{where} mounts a host path"
    for c in pod["containers"] + pod.get("initContainers", []):
        limits = c.get("resources", {}).get("limits", {})
        assert limits.get("memory") and limits.get("cpu"), f"{where}: {c['name']} has no memory and CPU limit"
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False, f"{where}: {c['name']} may escalate privileges"
        assert csc["capabilities"] == {"drop": ["ALL"]}, f"{where}: {c['name']} keeps capabilities"
        assert csc.get("runAsUser") != 0 and csc.get("runAsNonRoot") is not False, f"{where}: {c['name']} as root"


def assert_images_not_pulled(pod: dict, where: str) -> None:
    """The images are imported into each node (docs/kubernetes.md), not pulled: a
    container left to the default policy, Always for a :latest tag, is pulled from
    `localhost` and its pod never starts (ErrImagePull)."""
    for c in pod["containers"] + pod.get("initContainers", []):
        assert c.get("imagePullPolicy") == "IfNotPresent", f"{where}: {c['name']} would pull {c['image']}"


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def assert_backup_policy(objects: dict, plan: Plan) -> None:
    """Backups on: one ReadWriteOnce claim with room for keep archives of every full
    disk, and per user a CronJob (never two runs at once, short history) whose hardened,
    limited pod reads the user's claim read-only, writes only the backups claim, and is
    selected by no NetworkPolicy but the default deny, nor by the gate's pod query.
    Backups off: none of it."""
    claim = f"{plan.namePrefix}-backups"
    jobs = [o for (k, _), o in objects.items() if k == "CronJob"]
    if not plan.backup.enable:
        assert jobs == [] and ("PersistentVolumeClaim", claim) not in objects
        return
    spec = objects["PersistentVolumeClaim", claim]["spec"]
    assert spec["accessModes"] == ["ReadWriteOnce"]
    need = sum(u.disk.quotaBytes * (plan.backup.keep + 1) for u in plan.users.values())  # + the one being written
    assert spec["resources"]["requests"]["storage"] == str(need)
    assert len(jobs) == len(plan.users)
    (gate,) = [o for (k, _), o in objects.items() if k == "Deployment"]
    facts = json.loads(objects["ConfigMap", gate["metadata"]["name"]]["data"]["kube.json"])
    policies = [o for (k, n), o in objects.items() if k == "NetworkPolicy" and n != "default-deny"]
    by_claim = {}
    for job in jobs:
        js = job["spec"]
        assert js["concurrencyPolicy"] == "Forbid"
        assert 1 <= js["successfulJobsHistoryLimit"] <= 3 and 1 <= js["failedJobsHistoryLimit"] <= 3
        assert len(js["schedule"].split()) == 5
        assert ("timeZone" in js) == (plan.backup.schedule.split()[-1] == "Europe/Berlin")
        template = js["jobTemplate"]["spec"]["template"]
        pod, labels = template["spec"], template["metadata"]["labels"]
        assert pod["restartPolicy"] in ("Never", "OnFailure") and pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsUser"] == CONTRACT["uid"] and pod["hostUsers"] is False
        (c,) = pod["containers"]
        assert c["image"] == plan.image and c["securityContext"]["readOnlyRootFilesystem"] is True
        volumes = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]}
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert set(volumes) == set(mounts) == {"home", "backups"}
        assert volumes["home"]["readOnly"] is True and mounts["home"]["readOnly"] is True
        assert volumes["backups"] == {"claimName": claim} and not mounts["backups"].get("readOnly")
        assert {e["name"]: e["value"] for e in c["env"]}["CSM_BACKUP_KEEP"] == str(plan.backup.keep)
        by_claim[volumes["home"]["claimName"]] = labels
        # No network: only the default deny selects the pod; and the gate never counts it
        # as the user's workspace.
        assert [p["metadata"]["name"] for p in policies if selects(p["spec"]["podSelector"], labels)] == []
        for user in facts["users"].values():
            key, value = user["selector"].split("=")
            assert labels.get(key) != value, f"the gate would take {job['metadata']['name']}'s pod for a workspace"
    users_claims = {
        v["persistentVolumeClaim"]["claimName"]
        for (k, _), o in objects.items()
        if k == "StatefulSet"
        for v in o["spec"]["template"]["spec"]["volumes"]
    }
    assert set(by_claim) == users_claims, "a CronJob per user, each reading that user's claim"


def assert_gate_policy(objects: dict, plan: Plan, sts_names: list[str]) -> None:
    """The gate: the plan it serves, a kube.json naming every user's StatefulSet, a
    hardened pod with limits, reachable only from Traefik, in front of every workspace."""
    (deployment,) = [o for (k, _), o in objects.items() if k == "Deployment"]
    name = deployment["metadata"]["name"]
    config = objects["ConfigMap", name]["data"]
    assert planlib.from_json(json.loads(config["plan.json"]), "the ConfigMap") == plan
    facts = json.loads(config["kube.json"])
    assert sorted(facts["users"]) == sorted(plan.users)
    assert sorted(f["statefulSet"] for f in facts["users"].values()) == sts_names
    pod = deployment["spec"]["template"]["spec"]
    (gate,) = pod["containers"]
    assert gate["resources"]["limits"]["memory"] and gate["resources"]["limits"]["cpu"]
    assert gate["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsUser"] != 0
    assert gate["command"][:3] == ["csm", "gate", "serve"] and "--kube" in gate["command"]
    assert {m["mountPath"] for m in gate["volumeMounts"]} >= {plan.gate.stateDir}
    assert gate["ports"][0]["containerPort"] == facts["port"]
    (allowed,) = objects["NetworkPolicy", name]["spec"]["ingress"]
    assert allowed["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
        }
    ]
    wake = objects["Middleware", f"{name}-wake"]["spec"]["errors"]
    assert wake["query"] == plan.gate.paths.wake and wake["service"]["name"] == name
    forward = objects["Middleware", name]["spec"]["forwardAuth"]
    assert forward["address"].endswith(f":{facts['port']}{plan.gate.paths.auth}")
    # Names no one is served on reach the gate's landing page, below every other route.
    landing = objects["Ingress", f"{name}-landing"]
    assert landing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.priority"] == "1"
    assert [r.get("host") for r in landing["spec"]["rules"]] == [f"*.{plan.domain}", plan.domain, None]
    assert {p["backend"]["service"]["name"] for r in landing["spec"]["rules"] for p in r["http"]["paths"]} == {name}
    # The gate takes the user from X-CSM-User: every route's first middleware sets it
    # (to a user, or to nothing on the landing route), never leaving the client's.
    prefix = deployment["metadata"]["namespace"] + "-"
    for (kind, ingress_name), o in objects.items():
        if kind == "Ingress":
            chain = o["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"].split(",")
            first = objects["Middleware", chain[0].removeprefix(prefix).removesuffix("@kubernetescrd")]
            named = first["spec"]["headers"]["customRequestHeaders"][plan.gate.userHeader]
            assert named == ("" if ingress_name == f"{name}-landing" else o["spec"]["rules"][0]["host"].split(".")[0])
    for (kind, ingress_name), o in objects.items():
        if (
            kind == "Ingress"
            and ingress_name != f"{name}-landing"
            and o["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/"
        ):
            chain = o["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"].split(",")
            prefix = deployment["metadata"]["namespace"] + "-"
            assert [c.removeprefix(prefix).removesuffix("@kubernetescrd") for c in chain][1:] == [f"{name}-wake", name]
