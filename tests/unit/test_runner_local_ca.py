"""The local CA (csm/runner/local_ca.py), the one recipe of `csm up --tls-port` and
the NixOS VM test: its certificate passes Python's strict X.509 verification for the
domain and its subdomains, and a second run keeps what the first made."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from csm.runner import local_ca

DOMAIN = "code.example.test"


def handshake(ca: Path, crt: Path, key: Path, name: str) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    client_ctx = ssl.create_default_context(cafile=str(ca))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default
    a, b = socket.socketpair()

    def serve() -> None:
        with contextlib.suppress(ssl.SSLError):  # the client's refusal is the client's to report
            server_ctx.wrap_socket(a, server_side=True).close()

    with a, b:
        server = threading.Thread(target=serve, daemon=True)
        server.start()
        with client_ctx.wrap_socket(b, server_hostname=name):
            pass
        server.join(10)


@pytest.mark.parametrize("name", [DOMAIN, f"ada.{DOMAIN}"])
def test_the_certificate_passes_strict_verification(tmp_path, name):
    tls = local_ca.ensure_certificate(tmp_path, DOMAIN, 8443)
    handshake(tmp_path / "tls" / "ca.crt", tls.certificate, tls.key, name)


def test_another_name_is_refused(tmp_path):
    tls = local_ca.ensure_certificate(tmp_path, DOMAIN, 8443)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path / "tls" / "ca.crt", tls.certificate, tls.key, "ada.example.org")


def test_made_once_and_private(tmp_path):
    first = local_ca.ensure_certificate(tmp_path, DOMAIN, 8443)
    made = {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    again = local_ca.ensure_certificate(tmp_path, DOMAIN, 8443)
    assert again == first
    assert {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()} == made
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "tls").iterdir() if p.suffix != ".srl"} == {
        "ca.key": 0o600,
        "ca.crt": 0o644,
        f"{DOMAIN}.key": 0o600,
        f"{DOMAIN}.crt": 0o644,
    }


def test_the_command_the_vm_test_runs(tmp_path):
    """nixos-tests/server.nix makes its certificate with this command."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "csm.runner.local_ca", str(out), DOMAIN], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    handshake(out / "ca.crt", out / f"{DOMAIN}.crt", out / f"{DOMAIN}.key", f"ada.{DOMAIN}")
