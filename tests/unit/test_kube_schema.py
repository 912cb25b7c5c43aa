"""Every object `csm kube render` writes, against the real schemas: the core ones with
kubernetes-validate --strict (unknown fields refused) for Kubernetes 1.33, the
oldest version the rendered pods run on (hostUsers: user namespaces on by default);
cert-manager's Issuer/Certificate and Traefik's Middlewares against their CRD schemas
(@kubernetes-models, pinned in tests/kube/package-lock.json, installed by
scripts/install-deps). CRD schemas allow unknown fields, so there only types and
required fields are checked."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

from csm import kube

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = "1.33.0"
CRDS = ("cert-manager.io/v1", "traefik.io/v1alpha1")


def core_problems(objects: list[dict]) -> list[str]:
    problems = []
    for o in objects:
        if o["apiVersion"] in CRDS:
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}")
    return problems


def crd_problems(objects: list[dict]) -> list[str]:
    crds = [o for o in objects if o["apiVersion"] in CRDS]
    proc = subprocess.run(
        ["node", "validate.mjs"], input=json.dumps(crds), capture_output=True, text=True, cwd=ROOT / "tests/kube"
    )
    assert proc.returncode == 0, f"tests/kube/validate.mjs failed (run scripts/install-deps): {proc.stderr}"
    results = json.loads(proc.stdout)
    assert len(results) == len(crds)
    return [f"{r['kind']}/{r['name']}: {r['error']}" for r in results if r["error"]]


@pytest.fixture(scope="module", params=["team", "demo"])
def rendered(request):
    return kube.render(ROOT / f"examples/{request.param}.nix")["objects"]


def test_core_objects_pass_kubernetes_validate_strict(rendered):
    assert core_problems(rendered) == []


def test_cert_manager_and_traefik_objects_pass_their_crd_schemas(rendered):
    assert crd_problems(rendered) == []


def test_the_validators_refuse_what_is_wrong():
    """Each validator fails on a field of the wrong type (and the core one on an
    unknown field), so the two tests above cannot pass by checking nothing."""
    objects = kube.render(ROOT / "examples/team.nix")["objects"]
    by_kind = {o["kind"]: o for o in objects}
    sts, issuer, middleware = (copy.deepcopy(by_kind[k]) for k in ("StatefulSet", "Issuer", "Middleware"))
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    assert "Additional properties are not allowed" in core_problems([sts])[0]
    sts = copy.deepcopy(by_kind["StatefulSet"])
    sts["spec"]["replicas"] = "one"
    assert "'one' is not of type 'integer'" in core_problems([sts])[0]
    issuer["spec"]["acme"]["server"] = 443
    middleware["spec"]["headers"]["customRequestHeaders"] = ["X-CSM-User"]
    assert crd_problems([issuer, middleware]) == [
        "Issuer/code-server-acme: data/spec/acme/server must be string",
        f"Middleware/{middleware['metadata']['name']}: data/spec/headers/customRequestHeaders must be object",
    ]
