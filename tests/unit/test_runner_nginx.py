"""The nginx.conf the runner renders from the plan: accepted by nginx and by gixy
(as NixOS would check it), and carrying exactly the plan's servers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.runner import local_ca, nginx

ROOT = Path(__file__).resolve().parents[2]
GIXY = Path(sys.executable).with_name("gixy")


def without_accounts(plan: dict) -> dict:
    """nginx -t looks up the workers' account, which `csm up` creates: this host may
    not have it yet (a fresh one running `make test-fast`), so root stands in."""
    plan.gate.proxyGroup = "root"
    return plan


@pytest.fixture(scope="module", params=["demo", "team"])
def plan(request):
    return without_accounts(planlib.load(ROOT / "examples" / f"{request.param}.nix"))


def test_nginx_takes_the_longest_names_the_plan_accepts(tmp_path):
    """A 63-character user under a long domain once made `nginx -t` fail
    ("could not build server_names_hash"): the plan sizes the bucket from the names."""
    longest = "a" + "b" * 61 + "c"
    domain = ".".join(["d" * 63, "e" * 63, "f" * 50])
    plan = without_accounts(
        planlib.from_settings(
            {"domain": domain, "users": {longest: {"passwordFile": "/s/a"}, "bo": {"passwordFile": "/s/b"}}}
        )
    )
    for tls in (False, True):
        conf = render(plan, tmp_path / str(tls), tls)
        proc = subprocess.run(
            [
                nginx.binary(),
                "-t",
                "-c",
                str(conf),
                "-p",
                f"{tmp_path / str(tls)}/",
                "-e",
                str(tmp_path / str(tls) / "logs" / "error.log"),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr


def render(plan, state: Path, tls: bool) -> Path:
    state.mkdir(exist_ok=True)
    nginx.prepare(state, plan)
    cert = local_ca.ensure_certificate(state, plan.domain, 8443) if tls else None
    conf = state / "nginx.conf"
    conf.write_text(nginx.render(plan, state, 8080, cert))
    return conf


def servers(text: str) -> list[str]:
    """The server blocks of a rendered config (one level of braces inside)."""
    return re.findall(r"^    server \{\n.*?^    \}$", text, re.S | re.M)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_nginx_accepts_the_config(plan, tmp_path, tls):
    conf = render(plan, tmp_path, tls)
    proc = subprocess.run(
        [nginx.binary(), "-t", "-c", str(conf), "-p", f"{tmp_path}/", "-e", str(tmp_path / "logs" / "error.log")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_gixy_finds_nothing(plan, tmp_path, tls):
    conf = render(plan, tmp_path, tls)
    proc = subprocess.run([str(GIXY), "-f", "json", str(conf)], capture_output=True, text=True)
    issues = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and issues == [], proc.stdout + proc.stderr


def test_one_server_per_user_with_the_plans_locations(plan, tmp_path):
    text = render(plan, tmp_path, tls=False).read_text()
    blocks = servers(text)
    assert len(blocks) == 1 + len(plan.users)
    for user in plan.users.values():
        (block,) = [b for b in blocks if f"server_name {user.nginx['serverName']};" in b]
        assert "listen 8080;" in block
        for line in user.nginx["config"]:
            assert line in block
        for location, loc in user.nginx["locations"].items():
            body = re.search(rf"location {re.escape(location)} \{{\n(.*?)\n        \}}", block, re.S).group(1)
            lines = [ln.strip() for ln in body.splitlines()]
            proxy = [f"proxy_pass {loc['proxyPass']};"] if loc["proxyPass"] else []
            assert lines == proxy + loc["config"]
    for line in plan.nginx["httpConfig"]:
        assert f"\n    {line}\n" in text


def test_default_server_serves_the_landing_page(plan, tmp_path):
    text = render(plan, tmp_path, tls=False).read_text()
    (default,) = [b for b in servers(text) if "default_server" in b]
    assert "listen 8080 default_server;" in default
    assert f'root "{tmp_path}/landing";' in default
    for line in plan.nginx["defaultServer"]["config"]:
        assert line in default
    page = tmp_path / "landing" / "index.html"
    assert page.read_text() == plan.nginx["defaultServer"]["landingHtml"]
    assert page.stat().st_mode & 0o777 == 0o644  # nginx's workers are not root


def test_tls_redirects_and_sends_hsts_everywhere(plan, tmp_path):
    text = render(plan, tmp_path, tls=True).read_text()
    blocks = servers(text)
    (redirect,) = [b for b in blocks if "listen 8080" in b]
    assert "listen 8080 default_server;" in redirect
    assert "return 301 https://$host:8443$request_uri;" in redirect
    tls_blocks = [b for b in blocks if "listen 8443 ssl" in b]
    assert len(tls_blocks) == 1 + len(plan.users)
    for block in tls_blocks:
        for line in plan.nginx["tlsConfig"]:
            assert line in block
    assert f'ssl_certificate "{tmp_path}/tls/{plan.domain}.crt";' in text


def test_certificate_covers_the_domain_and_its_subdomains(plan, tmp_path):
    render(plan, tmp_path, tls=True)
    crt = tmp_path / "tls" / f"{plan.domain}.crt"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(crt), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"DNS:*.{plan.domain}" in text and f"DNS:{plan.domain}" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "tls" / "ca.crt"), str(crt)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (tmp_path / "tls" / f"{plan.domain}.key").stat().st_mode & 0o077 == 0


def test_skeleton_points_everything_at_the_state_dir(plan, tmp_path):
    text = render(plan, tmp_path, tls=False).read_text()
    paths = re.findall(r'(?:pid|error_log|access_log|_temp_path) "([^"]+)";', text)
    assert len(paths) == 8
    assert all(p.startswith(f"{tmp_path}/") for p in paths)
    assert "server_tokens off;" in text


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_a_state_dir_with_a_space_and_a_semicolon_works(plan, tmp_path, tls):
    state = tmp_path / "state dir;x"
    conf = render(plan, state, tls)
    proc = subprocess.run(
        [nginx.binary(), "-t", "-c", str(conf), "-p", f"{state}/", "-e", str(state / "logs" / "error.log")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert f'pid "{state}/nginx.pid";' in conf.read_text()


def test_a_path_nginx_cannot_take_is_refused_by_name(plan, tmp_path):
    with pytest.raises(nginx.BadInput, match=r"holds a character nginx cannot take.*\$"):
        nginx.render(plan, tmp_path / "a$b", 8080)


def test_tls_servers_send_hsts_and_the_gate_reads_the_scheme(plan, tmp_path):
    """Over TLS every user's server sends HSTS, and the gate learns the scheme from nginx
    (X-Forwarded-Proto), which makes its session cookie __Host-, Secure and HttpOnly."""
    text = render(plan, tmp_path, tls=True).read_text()
    user_blocks = [b for b in servers(text) if "listen 8443 ssl;" in b and "auth_request" in b]
    assert user_blocks and all("Strict-Transport-Security" in b for b in user_blocks)
    assert all("proxy_set_header X-Forwarded-Proto $scheme;" in b for b in user_blocks)
    assert "Strict-Transport-Security" not in render(plan, tmp_path / "plain", tls=False).read_text()
