"""The image contract's live check of code-server's login rate limiter, as both image
recipes patch it (image/build-code-server.sh): failures are counted per client address."""
from __future__ import annotations

import secrets
import shlex

from .image import Podman, _saw, facts, password_env_file
from .image import _remove as remove


def login_limit_per_address(image: str, podman: Podman, *, burst: int = 14) -> str:
    """Wrong passwords are limited per client address (X-Real-IP, which nginx sets), never
    for everybody: after an address has used up its budget (2 a minute plus 12 an hour:
    `burst` at once) it is refused even the right password, while another address still
    logs in, and right passwords are never counted."""
    c = facts()
    name = f"csm-contract-login-{secrets.token_hex(4)}"
    env_file = password_env_file(podman)
    # The login forms, made from the env file on the host: the password is on no command line.
    right, wrong_form = f"{env_file}.right", f"{env_file}.wrong"
    options = ["--detach", "--name", name, "--env-file", env_file, "--publish", f"127.0.0.1::{c['port']}"]
    try:
        podman.host(f"umask 077; sed -n 's/^PASSWORD=/password=/p' {shlex.quote(env_file)} > {shlex.quote(right)}; "
                    f"sed -n 's/^PASSWORD=/password=not-/p' {shlex.quote(env_file)} > {shlex.quote(wrong_form)}")
        _saw("starting code-server", lambda: podman("run", "--pull=never", *podman.run_args, *options, image))
        port = _saw("podman port", lambda: podman("port", name, f"{c['port']}/tcp")).strip().rsplit(":", 1)[-1]
        base = f"http://127.0.0.1:{port}"
        _saw("waiting for code-server", lambda: podman.host(
            f"n=0; until curl -fsS -o /dev/null {base}{c['healthPath']}; do n=$((n+1)); "
            "[ $n -ge 100 ] && exit 1; sleep 0.1; done"))

        def attempts(address: str, form_file: str, times: int) -> list[str]:
            """One word per POST /login: ok (302), wrong, limited."""
            script = (f"for i in $(seq {times}); do curl -s -o /tmp/$$.body -w '%{{http_code}} ' "
                      f"-H {shlex.quote('X-Real-IP: ' + address)} --data @{shlex.quote(form_file)} {base}/login; "
                      "if grep -qi 'rate limit' /tmp/$$.body; then echo limited; "
                      "elif grep -qi 'incorrect password' /tmp/$$.body; then echo wrong; else echo other; fi; "
                      "done; rm -f /tmp/$$.body")
            out = _saw("POST /login", lambda: podman.host(script))
            return ["ok" if line.startswith("302") else line.split()[-1] for line in out.splitlines() if line]

        attacker, owner, classroom = "192.0.2.66", "192.0.2.10", "192.0.2.20"
        wrong = attempts(attacker, wrong_form, burst)
        if wrong != ["wrong"] * burst:
            raise AssertionError(f"{burst} wrong passwords from {attacker} gave {wrong}")
        still = attempts(attacker, right, 1)
        if still != ["limited"]:
            raise AssertionError(f"after {burst} wrong passwords, {attacker} is not limited: "
                                 f"its right password gave {still}")
        other = attempts(owner, right, 1)
        if other != ["ok"]:
            raise AssertionError(f"{attacker}'s wrong passwords lock out {owner}: its right password gave {other}")
        many = attempts(classroom, right, burst + 6)
        if many != ["ok"] * (burst + 6):
            raise AssertionError(f"{burst + 6} right passwords from {classroom} gave {many}")
        return (f"{burst} wrong passwords limit {attacker} only; {owner} logs in; "
                f"{burst + 6} right passwords from one address all pass")
    finally:
        remove(podman, name)
        podman.host(f"rm -f {' '.join(shlex.quote(f) for f in (env_file, right, wrong_form))}")
