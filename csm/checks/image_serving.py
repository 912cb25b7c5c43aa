"""The image contract's checks that start code-server from the image: by the image's
own default command (/healthz within seconds), and as the plan runs it (on a Unix
socket, its own login off). csm/checks/image.py lists them with the others."""

from __future__ import annotations

import json
import secrets
import shlex
import time

from csm.checks.commands import Podman, password_env_file, saw
from csm.checks.facts import facts


def healthz(image: str, podman: Podman, *, within: float = 10.0) -> str:
    """code-server, started by the image's own default command, answers /healthz within seconds."""
    name = f"csm-contract-{secrets.token_hex(4)}"
    env_file = password_env_file(podman)
    options = ["--detach", "--name", name, "--env-file", env_file]
    started = time.monotonic()
    try:
        saw("starting code-server", lambda: podman("run", "--pull=never", *podman.run_args, *options, image))
    finally:
        podman.host(f"rm -f {shlex.quote(env_file)}")
    try:
        tries = int(within / 0.1)
        url = f"http://127.0.0.1:{facts()['port']}{facts()['healthPath']}"
        poll = f"n=0; until curl -fsS {url}; do n=$((n+1)); [ $n -ge {tries} ] && exit 1; sleep 0.1; done"
        try:
            body = podman("exec", name, "sh", "-c", poll)
        except Exception as e:
            logs = ""
            try:
                logs = podman("logs", "--tail", "20", name)
            except Exception:
                pass
            raise AssertionError(f"/healthz did not answer within {within:.0f} s ({e}); logs: {logs}") from e
        elapsed = time.monotonic() - started
        status = json.loads(body).get("status")
        if status not in ("alive", "expired"):
            raise AssertionError(f"/healthz answered {body!r}")
        if elapsed > within:
            raise AssertionError(f"/healthz answered only after {elapsed:.1f} s")
        return f"/healthz answered {status!r} {elapsed:.1f} s after start"
    finally:
        _remove(podman, name)


def _remove(podman: Podman, name: str) -> None:
    try:
        podman("rm", "--force", "--time", "0", name)
    except Exception:
        pass


SOCKET_CHECK = """
n=0; until curl -fsS --unix-socket "$1" http://localhost"$2"; do n=$((n+1)); [ $n -ge 100 ] && exit 1; sleep 0.1; done
"""


def socket_without_login(image: str, podman: Podman) -> str:
    """code-server as the plan runs it: on a Unix socket of the given mode, with its own
    login off (the gate in front does the login), answering its health path there."""
    c = facts()
    name = f"csm-contract-socket-{secrets.token_hex(4)}"
    sock = "/tmp/csm-contract/code-server.sock"
    try:
        saw(
            "starting code-server on a socket",
            lambda: podman(
                "run",
                "--pull=never",
                *podman.run_args,
                "--detach",
                "--name",
                name,
                image,
                "sh",
                "-c",
                f"mkdir -p /tmp/csm-contract && exec code-server --socket {sock} --socket-mode 666 --auth none "
                f"--extensions-dir {c['extensionsDir']} {c['project']}",
            ),
        )
        body = saw(
            "the health path on the socket",
            lambda: podman("exec", name, "sh", "-c", SOCKET_CHECK, "sh", sock, c["healthPath"]),
        )
        mode = saw("the socket's mode", lambda: podman("exec", name, "stat", "-c", "%a", sock)).strip()
        ports = saw("listening TCP ports", lambda: podman("exec", name, "cat", "/proc/net/tcp", "/proc/net/tcp6"))
    finally:
        _remove(podman, name)
    if json.loads(body).get("status") not in ("alive", "expired"):
        raise AssertionError(f"{c['healthPath']} on the socket answered {body!r}")
    if mode != "666":
        raise AssertionError(f"the socket has mode {mode}, not 666 (--socket-mode)")
    listening = [line for line in ports.splitlines()[1:] if line.split()[3:4] == ["0A"]]
    if listening:
        raise AssertionError(f"code-server on a socket still listens on TCP: {listening}")
    return f"{c['healthPath']} answers on the socket (mode 666), no TCP listener, no login"
