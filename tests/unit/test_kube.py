"""`csm kube`: the plan as Kubernetes objects (modules/code-server-multi/kube.nix),
without a cluster: the command line, one validation with `csm up`, Secrets named
never inlined, deterministic output, and what one changed setting changes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from csm import kube
from csm import plan as planlib
from csm.testing.kube_play import played_objects

ROOT = Path(__file__).resolve().parents[2]
TEAM = ROOT / "examples/team.nix"


def csm(*args):
    return subprocess.run([sys.executable, "-m", "csm.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def key(o: dict) -> tuple[str, str]:
    return o["kind"], o["metadata"]["name"]


@pytest.fixture(scope="module")
def team():
    return kube.render(TEAM)


def test_render_prints_a_yaml_stream_of_every_object(team):
    proc = csm("kube", "render", TEAM)
    assert proc.returncode == 0, proc.stderr
    assert list(yaml.safe_load_all(proc.stdout)) == team["objects"]
    kinds = {o["kind"] for o in team["objects"]}
    assert {"StatefulSet", "Service", "PersistentVolumeClaim", "NetworkPolicy", "Ingress", "Certificate"} <= kinds
    # What is not rendered is said, and the Secrets to create first.
    assert 'users.linus.extraVolumes "/srv/datasets:/home/coder/datasets:ro"' in proc.stderr
    assert "create secret generic code-server-passwords" in proc.stderr


def test_two_renders_are_byte_for_byte_the_same():
    first, second = csm("kube", "render", TEAM), csm("kube", "render", TEAM)
    assert first.returncode == 0 and first.stdout == second.stdout


def test_keys_are_sorted_and_strings_stay_strings():
    doc = kube.to_yaml({"b": {"on": "on", "y": "1.5", "a": [], "n": None}, "a": [{"z": 1, "c": True}]})
    assert doc.splitlines()[0] == "a:" and doc.index("  - c: true") < doc.index("    z: 1")
    assert yaml.safe_load(doc) == {"a": [{"z": 1, "c": True}], "b": {"on": "on", "y": "1.5", "a": [], "n": None}}


def test_namespace_is_everywhere_and_checked():
    rendered = kube.render(TEAM, "class-7b")
    assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in rendered["objects"]} == {"class-7b"}
    assert "--namespace class-7b" in kube.secret_commands(rendered)[0]
    proc = csm("kube", "render", TEAM, "--namespace", "Class_7B")
    assert proc.returncode == 2 and 'namespace = "Class_7B" is not a Kubernetes namespace' in proc.stderr


def test_a_bad_setting_gives_the_same_message_as_csm_up(tmp_path):
    settings = tmp_path / "bad.nix"
    settings.write_text('{ domain = "c.test"; users.ada = { passwordFile = "/s/a"; memoryLimit = "lots"; }; }')
    with pytest.raises(planlib.PlanError) as plan_error:
        planlib.load(settings)
    proc = csm("kube", "render", settings)
    assert proc.returncode == 2
    assert proc.stderr == f"csm kube render: {plan_error.value}\n"
    assert 'users.ada.memoryLimit = "lots" is not a size' in proc.stderr
    assert (
        csm("kube", "render", tmp_path / "missing.nix")
        .stderr.strip()
        .endswith("does not exist; give a .nix file such as examples/demo.nix")
    )


def test_secrets_are_created_from_the_files_never_inlined(team):
    lines = "\n".join(kube.secret_commands(team))
    assert (
        "kubectl --namespace code-server-multi create secret generic code-server-passwords "
        "--from-file=ada=/run/secrets/code-server/ada --from-file=grace=/run/secrets/code-server/grace "
        "--from-file=linus=/run/secrets/code-server/linus --dry-run=client --output=yaml "
        "| kubectl --namespace code-server-multi apply --server-side --force-conflicts --filename=-"
    ) in lines
    assert "generic code-server-acme-dns --from-env-file=/run/secrets/acme-cloudflare.env" in lines
    assert "generic code-server-grace-env-0 --from-env-file=/run/secrets/code-server/openrouter.env" in lines
    assert not [o for o in team["objects"] if o["kind"] == "Secret"]
    (grace,) = [o for o in team["objects"] if key(o) == ("StatefulSet", "code-server-grace")]
    assert grace["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "code-server-grace-env-0"}}
    ]
    assert csm("kube", "secrets", TEAM).stdout.strip() == lines


def test_tls_files_become_a_tls_secret(tmp_path):
    settings = tmp_path / "tls.json"
    settings.write_text(
        '{"domain": "c.test", "users": {"ada": {"passwordFile": "/s/a"}},'
        ' "tls": {"certificateFile": "/s/cert.pem", "keyFile": "/s/key.pem"}}'
    )
    rendered = kube.render(settings)
    assert "create secret tls code-server-tls --cert=/s/cert.pem --key=/s/key.pem" in kube.secret_commands(rendered)[0]
    ingress = [o for o in rendered["objects"] if o["kind"] == "Ingress"]
    tls = {i["metadata"]["name"]: i["spec"]["tls"] for i in ingress}
    assert tls == {
        "code-server-ada": [{"hosts": ["ada.c.test"], "secretName": "code-server-tls"}],
        "code-server-ada-gate": [{"hosts": ["ada.c.test"], "secretName": "code-server-tls"}],
        "code-server-gate-landing": [{"hosts": ["*.c.test", "c.test"], "secretName": "code-server-tls"}],
    }


def test_one_users_memory_changes_their_statefulset_and_the_gates_plan(tmp_path):
    settings = planlib.nix_value(TEAM)
    changed = copy.deepcopy(settings)
    changed["users"]["grace"]["memoryLimit"] = "7g"
    (tmp_path / "a.json").write_text(json.dumps(settings))
    (tmp_path / "b.json").write_text(json.dumps(changed))
    before = {key(o): o for o in kube.render(tmp_path / "a.json")["objects"]}
    after = {key(o): o for o in kube.render(tmp_path / "b.json")["objects"]}
    assert before.keys() == after.keys()
    # The gate reads the plan it serves from its ConfigMap; the Deployment's pod carries
    # that plan's digest, so the gate restarts with it.
    assert sorted(k for k in before if before[k] != after[k]) == [
        ("ConfigMap", "code-server-gate"),
        ("Deployment", "code-server-gate"),
        ("StatefulSet", "code-server-grace"),
    ]
    limits = after["StatefulSet", "code-server-grace"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert limits["limits"]["memory"] == str(7 * 1024**3)


def test_out_writes_one_file_per_object_namespace_first(tmp_path, team):
    out = tmp_path / "objects"
    assert csm("kube", "render", TEAM, "--out", out).returncode == 0
    files = sorted(out.iterdir())
    assert len(files) == len(team["objects"])
    assert files[0].name == "00-namespace-code-server-multi.yaml"
    assert sorted(yaml.safe_load(f.read_text())["metadata"]["name"] for f in files) == sorted(
        o["metadata"]["name"] for o in team["objects"]
    )
    again = csm("kube", "render", TEAM, "--out", out)
    assert again.returncode == 2 and "is not an empty directory" in again.stderr


def test_the_played_pod_gets_its_users_claim_not_the_gates(tmp_path):
    # csm/testing/kube_play.py plays one user's pod: the gate's claim renders too.
    settings = planlib.nix_value(TEAM)
    settings["users"] = {"ada": settings["users"]["ada"]}
    del settings["acme"]  # env files the played pod would read
    (tmp_path / "one.json").write_text(json.dumps(settings))
    played = played_objects(kube.render(tmp_path / "one.json"), host_port=12345)
    claims = [o["metadata"]["name"] for o in played if o["kind"] == "PersistentVolumeClaim"]
    assert claims == ["code-server-ada"]


def test_the_pids_note_names_the_nodes_value_and_whom_it_leaves_unenforced(tmp_path, team):
    # team.nix: Grace has 4096, Ada and Linus the default 2048; one kubelet value per node.
    (note,) = [n for n in team["notes"] if "podPidsLimit" in n]
    assert "set it to 4096 on every node (k3s: --kubelet-arg=pod-max-pids=4096)" in note
    assert note.endswith("the lower pidsLimit of ada (2048), linus (2048) is not enforced on a cluster")
    settings = tmp_path / "same.json"
    settings.write_text(
        json.dumps({"domain": "c.test", "users": {n: {"passwordFile": f"/s/{n}"} for n in ("ada", "bo")}})
    )
    (note,) = [n for n in kube.render(settings)["notes"] if "podPidsLimit" in n]
    assert note.endswith("set it to 2048 on every node (k3s: --kubelet-arg=pod-max-pids=2048)")
    assert "csm kube render: note: the pids limit is the kubelet's podPidsLimit" in csm("kube", "render", TEAM).stderr


# kubectl's client-side apply keeps a copy of each object in an annotation, and all of an
# object's annotations together may hold at most this many bytes.
ANNOTATIONS_MAX = 262144


def test_the_render_is_applied_server_side_where_the_docs_and_kube_check_apply_it(tmp_path):
    """The gate's ConfigMap outgrows a client-side apply's annotation well before the
    ~60 people one render allows, so every apply of the render must be server-side."""
    users = {f"user{i:02d}": {"passwordFile": f"/s/{i}"} for i in range(60)}
    (tmp_path / "sixty.json").write_text(json.dumps({"domain": "c.test", "users": users}))
    (config,) = [o for o in kube.render(tmp_path / "sixty.json")["objects"] if o["kind"] == "ConfigMap"]
    assert len(json.dumps(config, separators=(",", ":"))) > ANNOTATIONS_MAX
    lines = [
        line
        for path in ("docs/kubernetes.md", "scripts/kube-check")
        for line in (ROOT / path).read_text().splitlines()
        if "kubectl apply" in line and ("objects" in line or "csm kube render" in line)
    ]
    assert len(lines) >= 4, lines  # the docs' three and kube-check's dry run
    assert [line for line in lines if "--server-side" not in line] == []


@pytest.mark.parametrize(
    ("users", "backup", "refused", "gives"),
    [
        (["ada", "gate"], False, ["gate"], "Middleware code-server-gate"),  # the forwardAuth itself
        (["ada", "gate-landing"], False, ["gate-landing"], "Ingress code-server-gate-landing"),
        (["ada", "gate-wake"], False, ["gate-wake"], "Middleware code-server-gate-wake"),
        (["ada", "code-server-gate"], False, ["code-server-gate"], "app.kubernetes.io/instance=code-server-gate"),
        (["ada", "ada-gate"], False, ["ada", "ada-gate"], "Ingress code-server-ada-gate"),
        (["ada", "backups"], True, ["backups"], "PersistentVolumeClaim code-server-backups"),
    ],
)
def test_a_name_that_would_replace_another_object_is_refused(tmp_path, users, backup, refused, gives):
    settings = {"domain": "c.test", "users": {n: {"passwordFile": f"/s/{n}"} for n in users}}
    if backup:
        settings["backup"] = {"enable": True, "target": "/b"}
    path = tmp_path / "clash.json"
    path.write_text(json.dumps(settings))
    assert planlib.from_settings(settings).users.keys() == set(users), "a host serves these names"
    out = tmp_path / "objects"
    proc = csm("kube", "render", path, "--out", out)
    assert proc.returncode == 2 and not out.exists(), proc.stderr
    problems = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
    assert [p.split(":")[0] for p in problems] == [f"  - users.{n}" for n in refused]
    assert all(gives in p and p.endswith("choose another name") for p in problems), problems
