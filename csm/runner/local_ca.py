"""The local certificate authority of a stack without a public certificate: a CA
(ca.crt, to trust in a browser or client) and a certificate for `domain` and
`*.domain` signed by it, made once with openssl.

The one recipe: `csm up --tls-port` makes them in <state>/tls, and the NixOS VM test
(nixos-tests/server.nix) runs `python -m csm.runner.local_ca DIR DOMAIN` in a build.
The certificate carries the extensions Python's strict X.509 verification (3.13's
default) asks for: key usage and the key identifiers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import HostNotReady, RunnerError

CA_SUBJECT = "/CN=code-server-multi local CA"
EXTENSIONS = (
    "subjectAltName=DNS:*.{domain},DNS:{domain}\n"
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid\n"
)


@dataclass(frozen=True)
class Tls:
    port: int
    certificate: Path
    key: Path


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise HostNotReady("openssl is not installed; run scripts/install-deps")
    proc = subprocess.run([openssl, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunnerError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _make_ca(key: Path, crt: Path) -> None:
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650"),
        *("-keyout", str(key), "-out", str(crt), "-subj", CA_SUBJECT),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )


def _sign(directory: Path, domain: str, key: Path, crt: Path) -> None:
    csr, extensions = directory / f"{domain}.csr", directory / f"{domain}.ext"
    # A CN holds 64 characters at most; browsers read the names from subjectAltName.
    common_name = f"*.{domain}" if len(domain) <= 62 else "code-server-multi"
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/CN={common_name}",
    )
    extensions.write_text(EXTENSIONS.format(domain=domain))
    _openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.crt"), "-CAkey", str(directory / "ca.key")),
        *("-CAcreateserial", "-days", "825", "-sha256", "-extfile", str(extensions), "-out", str(crt)),
    )
    csr.unlink()
    extensions.unlink()


def issue(directory: Path, domain: str) -> tuple[Path, Path]:
    """(certificate, key) for `domain` in `directory`, with the CA that signed them;
    what exists already is kept."""
    directory.mkdir(mode=0o700, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, crt = directory / f"{domain}.key", directory / f"{domain}.crt"
    if not (ca_key.exists() and ca_crt.exists()):
        _make_ca(ca_key, ca_crt)
    if not (key.exists() and crt.exists()):
        _sign(directory, domain, key, crt)
    for f in (ca_key, key):
        os.chmod(f, 0o600)
    os.chmod(ca_crt, 0o644)
    return crt, key


def ensure_certificate(state: Path, domain: str, port: int) -> Tls:
    """The stack's certificate in <state>/tls, served on `port`."""
    crt, key = issue(Path(state) / "tls", domain)
    return Tls(port=port, certificate=crt, key=key)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m csm.runner.local_ca DIRECTORY DOMAIN", file=sys.stderr)
        return 2
    issue(Path(argv[0]), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
